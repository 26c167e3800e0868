"""Figures: PNGs written without pyplot state (their orientation is tested with the protocol convention)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ctbench.figures import pairs_figure, triplanar_montage


def test_pngs_are_written_and_no_pyplot_figures_leak(tmp_path):
    before = plt.get_fignums()
    vols = [torch.rand(1, 64, 128, 128) * 2 - 1 for _ in range(2)]
    montage = triplanar_montage([("gen", vols, ["#0", "#1"]), ("real", vols[:1], ["c1"])], tmp_path / "m.png")
    pairs = pairs_figure([("a", vols[0], "b", vols[1])], tmp_path / "p.png")
    for path in (montage, pairs):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "p.png"]  # no temporary files left
