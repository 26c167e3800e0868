"""`ctbench data prepare` on phantoms with known ground truth: geometry, values, manifest, resume."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from ctbench.cli import main
from ctbench.core.hashing import file_sha256
from ctbench.data import batch
from ctbench.data.batch import prepare
from ctbench.data.pipeline import load_checked, prepare_scan
from ctbench.data.prepared import (
    cases,
    load_manifest,
    manifest_sha256,
    read_hu_range,
    read_volume,
    to_hu,
    volume_sha256,
)
from ctbench.data.resample import resample_labels
from ctbench.data.scan_io import read_nifti
from ctbench.data.synth import LABELS, ORIENTATIONS, phantom, reorient
from ctbench.protocol import FLARE22_V1


def test_manifest_records_every_case(prepared_dir, synth_dir):
    m = load_manifest(prepared_dir)
    assert m.protocol == FLARE22_V1.to_dict() and len(m.cases) == 8
    assert {s: len(m.select(s)) for s in ("train", "val", "test")} == {"train": 6, "val": 1, "test": 1}
    raw = json.loads((prepared_dir / "manifest.json").read_text())
    assert raw["manifest_sha256"] == manifest_sha256(prepared_dir)
    for i, c in enumerate(m.cases):
        assert c.status == "ok" and c.error is None and c.id == f"Case_{i + 1:05d}"
        assert c.source_sha256 == file_sha256(synth_dir / "images" / f"{c.id}_0000.nii.gz")
        assert c.volume_sha256 == volume_sha256(prepared_dir / c.output)
        assert c.original_orientation == ORIENTATIONS[i % 4]
        assert c.original_spacing_mm == [1.0, 1.0, 5.0] and c.original_shape[2] >= 20
        assert c.crop_box["shape_resampled_vox"] == [320, 320, 160]
        extent = np.subtract(c.crop_box["ras_mm_max"], c.crop_box["ras_mm_min"])
        np.testing.assert_allclose(extent, (230.4, 230.4, 400.0), atol=0.02)  # 320 x 0.72, 160 x 2.5 mm
        centre_mm = (np.add(c.crop_box["ras_mm_max"], c.crop_box["ras_mm_min"])) / 2
        assert np.abs(centre_mm[:2]).max() < 25  # phantoms are built around the world origin in-plane
        assert -1030 < c.hu_lo < -900 and 300 < c.hu_hi < 1200
        assert read_hu_range(prepared_dir / c.output) == pytest.approx((c.hu_lo, c.hu_hi), abs=1e-3)
    assert sorted(p.name for p in (prepared_dir / "volumes").iterdir()) == [f"{c.id}.nii.gz" for c in m.cases]


def _case_truth(synth_dir, case_id):
    """Prepared volume recomputed, and the phantom's label map resampled through the same geometry."""
    scan = load_checked(synth_dir / "images" / f"{case_id}_0000.nii.gz")
    result = prepare_scan(scan)
    labels = read_nifti(synth_dir / "labels" / f"{case_id}.nii.gz").data
    return result, resample_labels(np.asarray(labels), result.geometry)


@pytest.mark.parametrize("index", [0, 1, 2, 3])  # RAS, LPS, RAI (feet-first), LPI
def test_liver_right_air_minus_one_and_organ_values(prepared_dir, synth_dir, index):
    case = cases(prepared_dir, None)[index]
    vol = read_volume(case.path)
    assert vol.shape == (64, 128, 128) and vol.dtype == np.float32 and vol.min() == -1.0 and vol.max() == 1.0
    result, labels = _case_truth(synth_dir, case.id)
    np.testing.assert_allclose(vol, result.volume, atol=1 / 32767)  # the file holds what the pipeline made
    liver = np.argwhere(labels == LABELS["liver"]).mean(axis=0)  # (x, y, z) output voxels
    spleen = np.argwhere(labels == LABELS["spleen"]).mean(axis=0)
    assert liver[0] > 64 + 10 and spleen[0] < 64 - 10  # +x (W, last tensor axis) is the patient's right
    hu = to_hu(vol, *case.hu_range).transpose(2, 1, 0)
    assert 45 < np.median(hu[labels == LABELS["liver"]]) < 80
    # air at the anterior corners of the box (outside the elliptic body, inside the scanned field) is about -1
    inside = result.geometry.inside_source()
    ras = vol.transpose(2, 1, 0)
    air = np.concatenate([ras[:6, -6:][inside[:6, -6:]], ras[-6:, -6:][inside[-6:, -6:]]])
    assert air.size > 500 and np.median(air) < -0.95 and air.max() < -0.9
    # the NIfTI affine puts each output voxel at its world position: the right kidney (wholly inside the
    # crop box, unlike the liver) has the same centroid in world mm as in the output grid
    kidney = LABELS["right_kidney"]
    raw_lab = nib.load(synth_dir / "labels" / f"{case.id}.nii.gz")
    world = nib.affines.apply_affine(raw_lab.affine, np.argwhere(np.asarray(raw_lab.dataobj) == kidney).mean(0))
    out_aff = nib.load(case.path).affine
    np.testing.assert_allclose(np.sqrt((out_aff[:3, :3] ** 2).sum(0)), (1.8, 1.8, 6.25))
    in_output = nib.affines.apply_affine(np.linalg.inv(out_aff), world)
    np.testing.assert_allclose(in_output, np.argwhere(labels == kidney).mean(axis=0), atol=0.5)


def test_same_phantom_in_any_orientation_prepares_identically(tmp_path):
    ph = phantom(21, small=True)
    outs = []
    for codes in ORIENTATIONS:
        data, aff = reorient(ph.hu, ph.affine, codes)
        nib.save(nib.Nifti1Image(data, aff), tmp_path / f"{codes}.nii.gz")
        result = prepare_scan(load_checked(tmp_path / f"{codes}.nii.gz"))
        outs.append((result.volume, result.affine))
    for vol, aff in outs[1:]:
        np.testing.assert_allclose(vol, outs[0][0], atol=1e-5)
        np.testing.assert_allclose(aff, outs[0][1], atol=1e-6)


def test_parallel_rerun_is_byte_identical(prepared_dir, synth_dir, tmp_path):
    result = prepare(synth_dir, tmp_path / "p2", workers=2, progress=False)
    assert len(result.prepared) == 8 and not result.failed
    assert manifest_sha256(tmp_path / "p2") == manifest_sha256(prepared_dir)
    for a, b in zip(load_manifest(prepared_dir).cases, load_manifest(tmp_path / "p2").cases, strict=True):
        assert (a.id, a.split, a.volume_sha256) == (b.id, b.split, b.volume_sha256)
        assert file_sha256(prepared_dir / a.output) == file_sha256(tmp_path / "p2" / b.output)  # same bytes too


def test_resume_after_interruption_and_changed_sources(prepared_dir, synth_dir, tmp_path, monkeypatch):
    src = tmp_path / "src"
    shutil.copytree(synth_dir / "images", src / "images")
    out = tmp_path / "out"
    real = batch.prepare_case
    calls = []

    def interrupted(*args):
        calls.append(args[0].id)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(batch, "prepare_case", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, progress=False)
    done = [c.id for c in load_manifest(out).cases if c.status == "ok"]
    assert done == calls[:3]  # the manifest was saved on the way out
    assert not [p for p in (out / "volumes").iterdir() if not p.name.endswith(".nii.gz")]  # no temp files left

    monkeypatch.setattr(batch, "prepare_case", real)
    again = prepare(src, out, progress=False)
    assert sorted(again.skipped) == done and len(again.prepared) == 5
    assert manifest_sha256(out) == manifest_sha256(prepared_dir)

    # a changed source and a deleted output are redone; nothing else is
    shutil.copy(src / "images" / "Case_00002_0000.nii.gz", src / "images" / "Case_00001_0000.nii.gz")
    (out / "volumes" / "Case_00005.nii.gz").unlink()
    third = prepare(src, out, progress=False)
    assert sorted(third.prepared) == ["Case_00001", "Case_00005"] and len(third.skipped) == 6
    assert manifest_sha256(out) != manifest_sha256(prepared_dir)


def test_cli_synth_then_prepare(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["data", "synth", str(tmp_path / "raw"), "--n", "2", "--seed", "3", "--small"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "raw" / "images").glob("*.nii.gz"))) == 2
    r = runner.invoke(main, ["data", "prepare", str(tmp_path / "raw"), str(tmp_path / "prep")])
    assert r.exit_code == 0, r.output
    assert "2 prepared, 0 already done, 0 failed" in r.output
    r = runner.invoke(main, ["data", "prepare", str(tmp_path / "raw"), str(tmp_path / "prep")])
    assert r.exit_code == 0 and "0 prepared, 2 already done" in r.output
