"""Every bad input of issue 2, section 4: one clear message naming the file, the batch goes on."""

from __future__ import annotations

import gzip
import re
import struct

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from ctbench.cli import main
from ctbench.data.batch import PrepareError, prepare
from ctbench.data.prepared import load_manifest
from ctbench.data.synth import phantom

PIXDIM_OFFSET = 76  # byte offset of pixdim[0] in a NIfTI-1 header (8 float32)


def _save(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 5.0, 1.0]) if affine is None else affine), path)


def _with_pixdim(path, good_nii_bytes: bytes, axis: int, value: float) -> None:
    """A .nii.gz whose stored pixdim[axis] is ``value`` (nibabel itself refuses to write such a header)."""
    raw = bytearray(good_nii_bytes)
    raw[PIXDIM_OFFSET + 4 * axis : PIXDIM_OFFSET + 4 * axis + 4] = struct.pack("<f", value)
    path.write_bytes(gzip.compress(bytes(raw)))


# file name -> regex the error must match (after the file name)
EXPECTED = {
    "truncated_0000.nii.gz": r"corrupt or truncated",
    "corrupt_0000.nii.gz": r"cannot read NIfTI header",
    "flat2d_0000.nii.gz": r"not a 3D image: shape \(96, 80\) is 2D",
    "multi4d_0000.nii.gz": r"not a 3D image: shape \(96, 80, 20, 2\) holds 2 volumes",
    "nan_0000.nii.gz": r"1 NaN or infinite voxels",
    "inf_0000.nii.gz": r"2 NaN or infinite voxels",
    "mr_0000.nii.gz": r"not a CT scan in HU",
    "zerospacing_0000.nii.gz": r"invalid voxel spacing .* pixdim",
    "negspacing_0000.nii.gz": r"invalid voxel spacing .* pixdim",
    "absurdspacing_0000.nii.gz": r"absurd voxel spacing .*> 10.0 mm",
    "fiveslices_0000.nii.gz": r"scan too small: shape \(346, 301, 5\)",
    "onlyair_0000.nii.gz": r"no body found: no voxel above -500 HU",
}


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    img_dir = root / "images"
    img_dir.mkdir()
    ph = phantom(1, small=True)
    _save(img_dir / "good_0000.nii.gz", ph.hu, ph.affine)
    _save(img_dir / "single4d_0000.nii.gz", ph.hu[..., None], ph.affine)  # trailing singleton: fine
    good = (img_dir / "good_0000.nii.gz").read_bytes()
    (img_dir / "truncated_0000.nii.gz").write_bytes(good[: len(good) // 2])
    (img_dir / "corrupt_0000.nii.gz").write_bytes(np.random.default_rng(0).bytes(5000))
    small = ph.hu[:96, :80, :20]
    _save(img_dir / "flat2d_0000.nii.gz", small[:, :, 0])
    _save(img_dir / "multi4d_0000.nii.gz", np.stack([small, small], axis=-1))
    f = ph.hu.astype(np.float32)
    f[10, 10, 10] = np.nan
    _save(img_dir / "nan_0000.nii.gz", f)
    f = ph.hu.astype(np.float32)
    f[1, 1, 1], f[2, 2, 2] = np.inf, -np.inf
    _save(img_dir / "inf_0000.nii.gz", f)
    mr = (np.clip(ph.hu.astype(np.float32) + 1000, 0, None) * 0.4).astype(np.int16)  # MR-like: no air at -1000
    _save(img_dir / "mr_0000.nii.gz", mr)
    nii = nib.Nifti1Image(ph.hu, np.diag([1.0, 1.0, 5.0, 1.0])).to_bytes()
    _with_pixdim(img_dir / "zerospacing_0000.nii.gz", nii, 3, 0.0)
    _with_pixdim(img_dir / "negspacing_0000.nii.gz", nii, 1, -1.0)
    _save(img_dir / "absurdspacing_0000.nii.gz", ph.hu, np.diag([1.0, 1.0, 12.0, 1.0]))
    _save(img_dir / "fiveslices_0000.nii.gz", ph.hu[:, :, :5])
    _save(img_dir / "onlyair_0000.nii.gz", np.full((64, 64, 20), -1000, np.int16))
    (img_dir / "README.txt").write_text("not a scan; ignored")
    return root


def test_each_bad_file_fails_with_its_reason_and_the_batch_goes_on(bad_dir, tmp_path):
    result = prepare(bad_dir, tmp_path / "out", progress=False)
    assert sorted(result.prepared) == ["good", "single4d"]
    failed = {r.id: r.error for r in result.failed}
    assert sorted(failed) == sorted(name.replace("_0000.nii.gz", "") for name in EXPECTED)
    for name, reason in EXPECTED.items():
        err = failed[name.replace("_0000.nii.gz", "")]
        assert err.startswith(str(bad_dir / "images" / name) + ": "), err
        assert re.search(reason, err), (name, err)
    m = load_manifest(tmp_path / "out")
    rows = {c.id: c for c in m.cases}
    assert rows["mr"].status == "failed" and rows["mr"].split is None and rows["mr"].output is None
    assert [c.id for c in m.select(None)] == ["good", "single4d"]


def test_cli_prints_failure_summary_and_exits_nonzero(bad_dir, tmp_path):
    r = CliRunner().invoke(main, ["data", "prepare", str(bad_dir), str(tmp_path / "out")])
    assert r.exit_code == 1
    assert f"2 prepared, 0 already done, {len(EXPECTED)} failed" in r.output
    assert f"{len(EXPECTED)} scan(s) failed:" in r.output and "mr_0000.nii.gz: not a CT scan" in r.output


def test_empty_or_missing_source_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="empty: no scans found"):
        prepare(tmp_path / "empty", tmp_path / "out", progress=False)
    r = CliRunner().invoke(main, ["data", "prepare", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert r.exit_code != 0 and "nope: source folder does not exist" in r.output


def test_output_folder_that_cannot_be_written(bad_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(PrepareError, match="a_file/out: output folder cannot be written"):
        prepare(bad_dir, blocker / "out", progress=False)
    r = CliRunner().invoke(main, ["data", "prepare", str(bad_dir), str(blocker / "out")])
    assert r.exit_code == 1 and "output folder cannot be written" in r.output
