"""Figures: radiological orientation of the mid slices, and PNGs written without pyplot state."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ctbench.figures import mid_slices, pairs_figure, triplanar_montage


def test_mid_slices_radiological_orientation():
    v = torch.zeros(1, 8, 10, 12)  # (1, D, H, W): D inferior→superior, H posterior→anterior, W patient left→right
    v[0, :, :, -1] = 1.0  # patient's right edge (largest x)
    v[0, :, -1, :] += 2.0  # anterior edge (largest y)
    v[0, -1, :, :] += 4.0  # superior edge (largest z)
    s = mid_slices(v)
    assert s["xy"].shape == (10, 12) and s["xz"].shape == (8, 12) and s["yz"].shape == (8, 10)
    assert np.all(s["xy"][:, 0] % 2 == 1)  # patient's right on the screen's left
    assert np.all(s["xy"][0, :] >= 2)  # anterior at the top
    assert np.all(s["xz"][0, :] >= 4) and np.all(s["xz"][:, 0] % 2 == 1)  # superior up, right on the left
    assert np.all(s["yz"][0, :] >= 4) and np.all(s["yz"][:, 0] % 4 >= 2)  # superior up, anterior on the left


def test_pngs_are_written_and_no_pyplot_figures_leak(tmp_path):
    before = plt.get_fignums()
    vols = [torch.rand(1, 64, 128, 128) * 2 - 1 for _ in range(2)]
    montage = triplanar_montage([("gen", vols, ["#0", "#1"]), ("real", vols[:1], ["c1"])], tmp_path / "m.png")
    pairs = pairs_figure([("a", vols[0], "b", vols[1])], tmp_path / "p.png")
    for path in (montage, pairs):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "p.png"]  # no temporary files left
