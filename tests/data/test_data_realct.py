"""The protocol on real scans (../shared/data/real-ct): orientation, air, shape, MR refused, DICOM."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ctbench.data.batch import discover, prepare
from ctbench.data.checks import ScanError
from ctbench.data.pipeline import load_checked, prepare_scan
from ctbench.data.prepared import load_manifest, read_volume, to_hu
from ctbench.data.resample import resample_labels
from ctbench.data.scan_io import read_dicom_series, read_nifti

pytestmark = pytest.mark.realdata
LIVER, SPLEEN, R_KIDNEY, L_KIDNEY = 5, 1, 2, 3  # TotalSegmentator v2 ids in example_seg


def test_liver_lands_on_patient_right_and_air_near_minus_one(real_ct_dir):
    scan = load_checked(real_ct_dir / "example_ct_sm.nii.gz")
    result = prepare_scan(scan)
    assert result.volume.shape == (64, 128, 128) and result.volume.dtype == np.float32
    assert result.volume.min() == -1.0 and result.volume.max() == 1.0
    seg = read_nifti(real_ct_dir / "example_seg.nii.gz").data
    labels = resample_labels(np.asarray(seg), result.geometry)  # (x, y, z), +x = patient right
    liver, spleen = (np.argwhere(labels == k).mean(axis=0) for k in (LIVER, SPLEEN))
    assert liver[0] > 64 > spleen[0]
    hu = to_hu(result.volume, result.hu_lo, result.hu_hi).transpose(2, 1, 0)
    assert 20 < np.median(hu[labels == LIVER]) < 200  # soft tissue where the label says liver
    # air: the 230 mm box lies inside this body in-plane, so air is the stomach gas and the padding
    inside = result.geometry.inside_source()
    ras = result.volume.transpose(2, 1, 0)
    scanned = np.nonzero(inside.any(axis=(0, 1)))[0]
    far = np.r_[0 : scanned.min() - 1, scanned.max() + 2 : 64]
    assert len(far) > 30 and np.all(ras[:, :, far] == -1.0)  # padded with air (-1024 HU) beyond the slab
    assert np.count_nonzero(ras[inside] < -0.95) > 200  # gas, scanned
    stomach_gas = hu[inside] < -900
    assert np.median(ras[inside][stomach_gas]) < -0.97
    # the output affine places each kidney (wholly inside the box, unlike the liver) where the label
    # map's own affine does, in world mm
    seg_img = nib.load(real_ct_dir / "example_seg.nii.gz")
    for kidney in (R_KIDNEY, L_KIDNEY):
        world = nib.affines.apply_affine(seg_img.affine, np.argwhere(np.asarray(seg_img.dataobj) == kidney).mean(0))
        in_output = nib.affines.apply_affine(np.linalg.inv(result.affine), world)
        np.testing.assert_allclose(in_output, np.argwhere(labels == kidney).mean(axis=0), atol=0.5)
    assert np.argwhere(labels == R_KIDNEY).mean(axis=0)[0] > 64 > np.argwhere(labels == L_KIDNEY).mean(axis=0)[0]


def test_mr_scan_is_refused(real_ct_dir):
    with pytest.raises(ScanError, match=r"example_mr_sm\.nii\.gz: not a CT scan in HU"):
        load_checked(real_ct_dir / "example_mr_sm.nii.gz")


def test_dicom_series_is_read_in_hu_and_lps_becomes_ras(real_ct_dir):
    import SimpleITK as sitk

    folder = real_ct_dir / "example_ct_dicom"
    scan = read_dicom_series(folder)
    assert scan.original_orientation == "LPS" and scan.original_shape == (512, 512, 20)
    np.testing.assert_allclose(scan.original_spacing_mm, (0.977, 0.977, 2.0), atol=1e-3)
    assert scan.data.min() == -1024 and scan.data.max() == 1839  # HU, rescale applied (README)
    # same voxel, same place: SimpleITK's LPS physical point equals our RAS affine with x, y negated
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    arr = sitk.GetArrayFromImage(image)  # (z, y, x) in the stored order
    for idx in [(0, 0, 0), (511, 3, 7), (100, 400, 19)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(idx))
        ras = lps * np.array([-1.0, -1.0, 1.0])
        ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(scan.affine), ras)).astype(int)
        assert scan.data[tuple(ijk)] == arr[idx[2], idx[1], idx[0]]
    result = prepare_scan(scan)
    assert result.volume.shape == (64, 128, 128)
    assert [s.id for s in discover(folder)] == ["example_ct_dicom"]  # a series folder given as SRC is one case


def test_prepare_folder_of_real_scans(real_ct_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("example_ct.nii.gz", "example_ct_sm.nii.gz", "example_mr_sm.nii.gz"):
        (src / name).symlink_to(real_ct_dir / name)
    (src / "patient7" / "study1").mkdir(parents=True)  # a hospital export: PATIENT/STUDY/SERIES
    (src / "patient7" / "study1" / "ct").symlink_to(real_ct_dir / "example_ct_dicom")
    (src / "patient7" / "study1" / "loop").symlink_to(src / "patient7")  # must not hang the search
    result = prepare(src, tmp_path / "out", progress=False)
    assert sorted(result.prepared) == ["example_ct", "example_ct_sm", "patient7_study1_ct"]
    assert [r.id for r in result.failed] == ["example_mr_sm"]
    rows = {c.id: c for c in load_manifest(tmp_path / "out").cases}
    assert rows["patient7_study1_ct"].original_orientation == "LPS"
    assert rows["example_ct"].original_shape == [122, 101, 112]
    for cid in result.prepared:
        vol = read_volume(tmp_path / "out" / rows[cid].output)
        assert vol.shape == (64, 128, 128) and -1.0 <= vol.min() < vol.max() <= 1.0
        assert rows[cid].hu_lo < -900  # the clip range starts in air
