"""Figures: PNGs written without pyplot state (their orientation is tested with the protocol convention)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest
import torch

from ctbench.figures import pairs_figure, triplanar_montage


def test_pngs_are_written_and_no_pyplot_figures_leak(tmp_path):
    before = plt.get_fignums()
    vols = [torch.rand(1, 64, 128, 128) * 2 - 1 for _ in range(2)]
    montage = triplanar_montage([("gen", vols, ["#0", "#1"]), ("real", vols[:1], ["c1"])], tmp_path / "m.png")
    pairs = pairs_figure([("a", vols[0], "b", vols[1])], tmp_path / "p.png", flagged=[True], note="why")
    for path in (montage, pairs):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "p.png"]  # no temporary files left


def test_side_markers_match_the_display_convention():
    """Each plane's R/L/A/P/S/I letters sit where the protocol's display puts that side of the patient."""
    import numpy as np

    from ctbench.figures import SIDES
    from ctbench.protocol import central_planes

    vol = np.zeros((64, 128, 128), np.float32)  # (D, H, W): W = patient x (right is high), H = anterior
    vol[:, 60:68, 120:] = 1.0  # the patient's far right
    vol[:, 120:, 60:68] = 2.0  # the front
    vol[60:, 60:68, 60:68] = 3.0  # the top (superior)
    planes = central_planes(vol)
    edges = {"left": lambda img: img[:, :4], "right": lambda img: img[:, -4:], "top": lambda img: img[:4],
             "bottom": lambda img: img[-4:]}
    rods = {"R": 1.0, "A": 2.0, "S": 3.0}
    for plane, letters in SIDES.items():
        for edge, letter in zip(edges, letters, strict=True):
            if letter in rods:
                assert (edges[edge](planes[plane]) == rods[letter]).any(), (plane, edge, letter)


def test_soft_tissue_window_on_the_prepared_scale():
    from ctbench.data.preview import SOFT_TISSUE, window_limits

    assert window_limits((-1000.0, 1000.0), *SOFT_TISSUE) == pytest.approx((-0.16, 0.24))
    assert window_limits((-160.0, 240.0), *SOFT_TISSUE) == pytest.approx((-1.0, 1.0))


def test_memorisation_figure_marks_flagged_samples_and_states_the_threshold(prepared_dir, tmp_path, monkeypatch):
    import numpy as np

    from ctbench.data.prepared import load_manifest
    from ctbench.metrics.memorisation import Memorisation, MemorisationAudit, Pair

    drawn = {}

    def fake_pairs_figure(pairs, path, *, title, flagged, note):
        drawn.update(labels=[p[0] for p in pairs], title=title, flagged=flagged, note=note)
        return Path(path)

    monkeypatch.setattr("ctbench.figures.pairs_figure", fake_pairs_figure)
    audit = MemorisationAudit(None)
    audit.corr = {0: 0.9, 1: 0.7, 2: 0.85}
    vol = torch.zeros(1, 64, 128, 128)
    audit.worst = [Pair(0.9, 0, 0, vol), Pair(0.85, 2, 1, vol)]
    ctx = SimpleNamespace(out_dir=tmp_path, manifest=load_manifest(prepared_dir))
    metric = Memorisation()
    values = metric.score(audit, np.array([0.5, 0.87]), ctx)
    assert values["memorised"].value == 1
    out = metric.artifacts(audit, ctx, "run", "gen")
    assert out["memorisation_pairs"] == "run.memorisation.png"
    assert drawn == {
        "labels": ["sample 0 (r=0.900)", "sample 2 (r=0.850)"],
        "title": "gen: the samples nearest a training scan (r: correlation with it)",
        "flagged": [True, False],
        "note": "flagged: r > 0.870, the highest r of 2 held-out real scans (1 of the 2 shown; 1 in all)",
    }
