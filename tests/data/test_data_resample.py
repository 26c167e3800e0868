"""The fused resample / crop / resize step: kernels, anti-aliasing, geometry against world coordinates."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from ctbench.data.pipeline import prepare_scan
from ctbench.data.prepared import to_hu
from ctbench.data.resample import body_centre, plan_geometry, resample, resample_labels, tent_weights
from ctbench.data.scan_io import read_nifti
from ctbench.data.synth import reorient
from ctbench.protocol import FLARE22_V1


def test_tent_weights_partition_of_unity_and_centroid():
    pos = np.linspace(50, 350, 77) + 0.123
    for ratio in (0.6, 1.0, 2.43, 2.5, 4.1):
        w, j0, j1 = tent_weights(pos, 400, ratio)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(w @ np.arange(j0, j1), pos, atol=0.03)  # no shift of the sampling point


def test_upsampling_is_linear_interpolation():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=50)
    pos = np.linspace(0, 49, 131)
    w, j0, j1 = tent_weights(pos, 50, 0.4)
    np.testing.assert_allclose(w @ signal[j0:j1], np.interp(pos, np.arange(50), signal), atol=1e-5)


def test_parity_with_torch_antialiased_bilinear_resize():
    """Away from the borders the separable tent equals torch's ``antialias=True`` bilinear resize (at the
    borders torch renormalises over the voxels inside, where the protocol pads with air instead)."""
    import torch

    img = np.random.default_rng(0).normal(size=(200, 160)).astype(np.float32)
    for factor in (1.7, 2.4, 2.5, 3.0):
        oh, ow = int(200 / factor), int(160 / factor)
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(img)[None, None], size=(oh, ow), mode="bilinear", antialias=True, align_corners=False
        )[0, 0].numpy()
        sh, sw = 200 / oh, 160 / ow
        wy, y0, y1 = tent_weights(sh * (np.arange(oh) + 0.5) - 0.5, 200, sh)
        wx, x0, x1 = tent_weights(sw * (np.arange(ow) + 0.5) - 0.5, 160, sw)
        ours = wy @ img[y0:y1, x0:x1] @ wx.T
        np.testing.assert_allclose(ours[3:-3, 3:-3], ref[3:-3, 3:-3], atol=5e-5)


def test_kernel_outside_the_scan_counts_as_pad():
    w, j0, j1 = tent_weights(np.array([-10.0, -0.5, 5.0]), 10, 2.0)
    assert w[0].sum() == 0.0  # entirely outside: output is pure padding
    assert 0.4 < w[1].sum() < 0.6  # half the kernel inside
    assert w[2].sum() == np.float32(1.0)


def _stripes(spacing: float) -> tuple[np.ndarray, np.ndarray, object]:
    n = int(260 / spacing)
    data = np.broadcast_to((500.0 * (-1.0) ** np.arange(n))[:, None, None], (n, 60, 60)).astype(np.float32)
    geometry = plan_geometry(data.shape, (spacing, spacing, 2.5), np.array([n / 2, 30, 30]), FLARE22_V1)
    return data, resample(data, geometry, -1024.0), geometry


def test_anti_aliasing_removes_stripes_that_naive_interpolation_folds_back():
    """±500 HU stripes at the source's Nyquist frequency are far above the output's (3.6 mm period)."""
    for spacing in (0.6, 0.74, 1.0):
        data, out, geometry = _stripes(spacing)
        ours = out[5:-5, 64, 32]
        naive = ndimage.map_coordinates(data[:, 30, 30], [geometry.positions(0)[5:-5]], order=1)
        assert np.abs(ours).max() < 50.0, spacing  # < 10 % of the amplitude survives
        assert naive.std() > 200.0, spacing  # plain trilinear sampling aliases: the test can tell


def _field(x, y, z):
    """A smooth HU field over RAS world mm."""
    return 200 * np.sin(2 * np.pi * x / 150) + 100 * np.cos(2 * np.pi * y / 120) + 0.5 * z


@pytest.mark.parametrize("tilt_deg", [0.0, 12.0])  # 12 degrees: an oblique (gantry-tilted) scan
def test_output_matches_world_field_through_the_affine(tmp_path, tilt_deg):
    """A scan stored LPS feet-first: each output voxel holds the field at its affine's world position."""
    shape, spacing = (300, 280, 60), (0.8, 0.8, 3.0)
    t = np.deg2rad(tilt_deg)
    tilt = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    affine = np.eye(4)
    affine[:3, :3] = tilt @ np.diag(spacing)
    affine[:3, 3] = (-120.0, -110.0, -90.0)
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).astype(np.float64)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    hu = _field(*np.moveaxis(world, -1, 0)).astype(np.float32)
    stored, stored_affine = reorient(hu, affine, "LPI")
    nib.save(nib.Nifti1Image(stored, stored_affine), tmp_path / "lpi.nii.gz")
    scan = read_nifti(tmp_path / "lpi.nii.gz")
    assert scan.original_orientation == "LPI"
    np.testing.assert_array_equal(scan.data, hu)  # reoriented back to RAS exactly, no interpolation

    result = prepare_scan(scan)
    out_hu = to_hu(result.volume, result.hu_lo, result.hu_hi).transpose(2, 1, 0)  # (x, y, z)
    np.testing.assert_allclose(np.sqrt((result.affine[:3, :3] ** 2).sum(0)), (1.8, 1.8, 6.25))
    oijk = np.stack(np.meshgrid(*[np.arange(s) for s in out_hu.shape], indexing="ij"), axis=-1).astype(np.float64)
    expect = _field(*np.moveaxis(oijk @ result.affine[:3, :3].T + result.affine[:3, 3], -1, 0))
    # compare where the kernel lies wholly inside the scan and the value was not clipped
    g = result.geometry
    inner = [(g.positions(a) > 3) & (g.positions(a) < shape[a] - 4) for a in range(3)]
    inside = inner[0][:, None, None] & inner[1][None, :, None] & inner[2][None, None, :]
    ok = inside & (expect > result.hu_lo + 5) & (expect < result.hu_hi - 5)
    assert ok.sum() > 100_000
    np.testing.assert_allclose(out_hu[ok], expect[ok], atol=3.0)
    # output voxels whose kernel misses the scan are air padding
    assert np.all(result.volume.transpose(2, 1, 0)[:, :, ~(g.positions(2) > -8)] == -1.0)


def test_labels_nearest_neighbour_and_zero_outside():
    labels = np.zeros((100, 100, 40), np.uint8)
    labels[60:90, 40:60, 10:30] = 5
    geometry = plan_geometry(labels.shape, (1.0, 1.0, 2.5), np.array([50.0, 50.0, 20.0]), FLARE22_V1)
    out = resample_labels(labels, geometry)
    assert out.shape == (128, 128, 64) and set(np.unique(out)) == {0, 5}
    xs = geometry.positions(0)
    got = np.nonzero(out.any(axis=(1, 2)))[0]
    np.testing.assert_array_equal(got, np.nonzero((np.rint(xs) >= 60) & (np.rint(xs) < 90))[0])
    assert out[:, :, geometry.positions(2) < -0.5].max() == 0


def test_body_centre_ignores_table_and_air():
    data = np.full((200, 160, 30), -1000, np.int16)
    data[100:180, 40:120, :] = 40  # the body, off-centre in x
    data[20:190, 10:14, :] = 300  # the table, a separate component below it
    centre = body_centre(data, (1.5, 1.5, 5.0), -500.0)
    np.testing.assert_allclose(centre[:2], (139.5, 79.5), atol=3.0)
    assert body_centre(np.full((20, 20, 20), -1000, np.int16), (1.0, 1.0, 1.0), -500.0) is None


def test_values_below_air_outside_the_reconstruction_circle_become_air(tmp_path):
    """Some scanners store -3024 HU outside the circular field of view; it must not set the clip range."""
    ph_hu = np.full((300, 300, 40), -1000, np.int16)
    yy, xx = np.meshgrid(np.arange(300) - 149.5, np.arange(300) - 149.5, indexing="ij")
    ph_hu[(xx / 120) ** 2 + (yy / 90) ** 2 <= 1] = 40
    ph_hu[xx**2 + yy**2 > 150**2] = -3024
    nib.save(nib.Nifti1Image(ph_hu, np.diag([0.8, 0.8, 2.5, 1.0])), tmp_path / "circle.nii.gz")
    result = prepare_scan(read_nifti(tmp_path / "circle.nii.gz"))
    assert result.hu_lo >= -1024.0
    air = result.volume.transpose(2, 1, 0)[:3, :3][result.geometry.inside_source()[:3, :3]]
    assert air.size > 0 and np.all(air == -1.0)
