"""`ctbench data info` and the preview's radiological display convention."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from ctbench.cli import main
from ctbench.data.prepared import manifest_sha256
from ctbench.data.preview import PLANE_NAMES
from ctbench.protocol import central_planes


def test_planes_put_patient_right_on_image_left_and_anterior_up():
    vol = np.zeros((64, 128, 128), np.float32)  # (D, H, W): W = patient x (right is high), H = anterior
    vol[:, 60:68, 120:] = 1.0  # a rod on the patient's far right
    vol[:, 120:, 60:68] = 2.0  # a rod at the front
    vol[60:, 60:68, 60:68] = 3.0  # a rod near the top (superior)
    planes = {PLANE_NAMES[k]: img for k, img in central_planes(vol).items()}
    axial = planes["axial"]
    assert axial.shape == (128, 128)
    assert np.all(axial[:, :8][60:68] == 1.0)  # right -> image left
    assert np.all(axial[:8, 60:68] == 2.0)  # anterior -> image top
    assert np.all(planes["coronal"][:4, 60:68] == 3.0)  # superior -> image top
    assert np.all(planes["sagittal"][:, :8][30] == 2.0)  # anterior -> image left


def test_info_prints_summary_and_writes_preview(prepared_dir, tmp_path):
    png = tmp_path / "p.png"
    r = CliRunner().invoke(main, ["data", "info", str(prepared_dir), "--preview", str(png), "--cases", "2"])
    assert r.exit_code == 0, r.output
    assert f"manifest_sha256 {manifest_sha256(prepared_dir)}" in r.output
    assert "cases: train 6, val 1, test 1" in r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = CliRunner().invoke(main, ["data", "info", str(tmp_path)])
    assert r.exit_code == 1 and "no manifest" in r.output
