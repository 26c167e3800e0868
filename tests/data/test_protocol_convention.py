"""The array and display conventions and the prepared-volume file format (round trips with known values)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from ctbench.data.prepared import Q_MAX, default_affine, from_hu, read_hu_range, read_volume, to_hu, write_volume
from ctbench.extractors.slicing import axial_frames, plane_slices
from ctbench.protocol import FLARE22_V1, central_planes, get_protocol, radiological


def test_protocol_shapes_and_output_spacing():
    assert FLARE22_V1.tensor_shape == (1, 64, 128, 128)
    np.testing.assert_allclose(FLARE22_V1.output_spacing_mm, (1.8, 1.8, 6.25))
    assert get_protocol("flare22-v1") is FLARE22_V1
    with pytest.raises(KeyError, match="flare22-v1"):
        get_protocol("flare99")


def test_central_planes_radiological_orientation():
    v = torch.zeros(1, 8, 10, 12)  # (1, D, H, W): D inferior→superior, H posterior→anterior, W patient left→right
    v[0, :, :, -1] = 1.0  # patient's right edge (largest x)
    v[0, :, -1, :] += 2.0  # anterior edge (largest y)
    v[0, -1, :, :] += 4.0  # superior edge (largest z)
    s = central_planes(v.numpy())
    assert s["xy"].shape == (10, 12) and s["xz"].shape == (8, 12) and s["yz"].shape == (8, 10)
    assert np.all(s["xy"][:, 0] % 2 == 1)  # patient's right on the screen's left
    assert np.all(s["xy"][0, :] >= 2)  # anterior at the top
    assert np.all(s["xz"][0, :] >= 4) and np.all(s["xz"][:, 0] % 2 == 1)  # superior up, right on the left
    assert np.all(s["yz"][0, :] >= 4) and np.all(s["yz"][:, 0] % 4 >= 2)  # superior up, anterior on the left
    assert central_planes(v[0].numpy()).keys() == s.keys()


def test_extractor_slices_follow_the_display_convention():
    """The slices the feature networks see are the slices the figures show (one convention, one function)."""
    v = torch.randint(0, 256, (1, 1, 6, 8, 10), dtype=torch.uint8)
    shown = central_planes(v[0].numpy())
    for plane, centre in (("xy", 3), ("xz", 4), ("yz", 5)):
        np.testing.assert_array_equal(plane_slices(v, plane)[0][centre, 0].numpy(), shown[plane])
    np.testing.assert_array_equal(axial_frames(v)[0, 3].numpy(), shown["xy"])
    image = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(radiological(image), [[5, 4, 3], [2, 1, 0]])
    assert torch.equal(radiological(torch.from_numpy(image)), torch.from_numpy(radiological(image).copy()))


def test_hu_mapping_known_values_and_inverse():
    lo, hi = -1000.0, 1000.0
    np.testing.assert_allclose(from_hu(np.array([-2000.0, -1000.0, 0.0, 500.0, 3000.0]), lo, hi), [-1, -1, 0, 0.5, 1])
    hu = np.linspace(lo, hi, 101)
    np.testing.assert_allclose(to_hu(from_hu(hu, lo, hi), lo, hi), hu, atol=1e-3)
    with pytest.raises(ValueError, match="hi > lo"):
        from_hu(hu, 5.0, 5.0)


def _ramp_volume() -> np.ndarray:
    """(D, H, W) = (64, 128, 128) with v = distinct functions of each axis, in [-1, 1]."""
    d, h, w = np.meshgrid(np.linspace(-1, 0, 64), np.linspace(0, 0.5, 128), np.linspace(0, 0.5, 128), indexing="ij")
    return (d + h + w).astype(np.float32)


def test_write_read_round_trip_and_axis_order(tmp_path):
    vol = _ramp_volume()
    path = write_volume(tmp_path / "v.nii.gz", vol, hu_range=(-1024.0, 1476.0))
    back = read_volume(path)
    assert back.shape == (64, 128, 128) and back.dtype == np.float32
    np.testing.assert_allclose(back, vol, atol=0.5 / Q_MAX + 1e-7)
    # On disk: RAS array (x, y, z) = (W, H, D), tensor = ras.transpose(2, 1, 0)
    img = nib.load(path)
    assert img.shape == (128, 128, 64)
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    ras_v = np.asarray(img.dataobj.get_unscaled()) / Q_MAX
    np.testing.assert_allclose(ras_v.transpose(2, 1, 0), back)
    # a viewer applying the NIfTI scaling sees HU: v=-1 -> -1024, v=1 -> 1476
    np.testing.assert_allclose(img.get_fdata(), to_hu(back, -1024.0, 1476.0).transpose(2, 1, 0), atol=0.05)
    assert read_hu_range(path) == pytest.approx((-1024.0, 1476.0))


def test_write_accepts_tensor_with_channel_and_clips(tmp_path):
    t = torch.zeros(1, 64, 128, 128)
    t[0, 0, 0, 0], t[0, 0, 0, 1] = 3.0, -7.0
    back = read_volume(write_volume(tmp_path / "t.nii", t))
    assert back[0, 0, 0] == 1.0 and back[0, 0, 1] == -1.0 and np.count_nonzero(back) == 2
    assert read_hu_range(tmp_path / "t.nii") == pytest.approx((-1.0, 1.0))  # no HU pair: scaling shows v


def test_write_refuses_nan_and_bad_shape(tmp_path):
    vol = np.zeros((64, 128, 128), np.float32)
    vol[3, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"v\.nii\.gz.*NaN"):
        write_volume(tmp_path / "v.nii.gz", vol)
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        write_volume(tmp_path / "v.nii.gz", np.zeros((2, 64, 128, 128)))
    with pytest.raises(ValueError, match="must keep RAS"):
        write_volume(tmp_path / "v.nii.gz", np.zeros((64, 128, 128)), affine=np.diag([-1.8, 1.8, 6.25, 1]))
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_default_affine_has_true_voxel_size_and_is_centred():
    aff = default_affine()
    np.testing.assert_allclose(np.sqrt((aff[:3, :3] ** 2).sum(0)), (1.8, 1.8, 6.25))
    centre = aff @ np.array([63.5, 63.5, 31.5, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)


def test_read_volume_names_file_on_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        read_volume(tmp_path / "missing.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "float.nii.gz")
    with pytest.raises(ValueError, match="float.nii.gz: not a ctbench volume"):
        read_volume(tmp_path / "float.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.diag([-1.8, -1.8, 6.25, 1])), tmp_path / "lps.nii.gz")
    with pytest.raises(ValueError, match="lps.nii.gz: .*axes are LPS, want RAS"):
        read_volume(tmp_path / "lps.nii.gz")


def test_package_exports_resolve_lazily():
    import ctbench.data as data

    assert data.read_volume is read_volume and callable(data.prepare) and callable(data.synthesize)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        data.nope  # noqa: B018


def test_volume_hash_follows_content_not_compression(tmp_path):
    from ctbench.core.hashing import file_sha256
    from ctbench.data.prepared import volume_sha256

    vol = _ramp_volume()
    a = write_volume(tmp_path / "a.nii.gz", vol, hu_range=(-1000.0, 1000.0))
    img = nib.load(a)
    b = tmp_path / "b.nii"  # the same image stored uncompressed
    copy = nib.Nifti1Image(np.asarray(img.dataobj.get_unscaled()), img.affine)
    copy.header.set_slope_inter(img.dataobj.slope, img.dataobj.inter)  # nibabel resets scaling on creation
    nib.save(copy, b)
    assert file_sha256(a) != file_sha256(b)
    assert volume_sha256(a) == volume_sha256(b)
    vol[10, 20, 30] += 0.01
    assert volume_sha256(write_volume(tmp_path / "c.nii.gz", vol, hu_range=(-1000.0, 1000.0))) != volume_sha256(a)
    assert volume_sha256(write_volume(tmp_path / "d.nii.gz", _ramp_volume(), hu_range=(-1000.0, 999.0))) != (
        volume_sha256(a)
    )
