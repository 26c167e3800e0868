"""Synthetic phantoms: anatomy in the right place, the issue's ranges, orientations, determinism."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from ctbench.data import synth
from ctbench.data.synth import LABELS, ORIENTATIONS, SLICE_SPACINGS_MM, _anatomy, phantom, sample_grid


def _world_centroid(label_img: nib.Nifti1Image, label: int) -> np.ndarray:
    idx = np.argwhere(np.asarray(label_img.dataobj) == label)
    return nib.affines.apply_affine(label_img.affine, idx.mean(axis=0))


def test_files_orientations_and_organ_sides(synth_dir):
    images = sorted((synth_dir / "images").glob("Case_*_0000.nii.gz"))
    assert [p.name for p in images][:2] == ["Case_00001_0000.nii.gz", "Case_00002_0000.nii.gz"] and len(images) == 8
    for i, path in enumerate(images):
        img = nib.load(path)
        lab = nib.load(synth_dir / "labels" / path.name.replace("_0000.nii.gz", ".nii.gz"))
        assert "".join(nib.aff2axcodes(img.affine)) == ORIENTATIONS[i % 4]
        np.testing.assert_allclose(img.affine, lab.affine)
        assert img.get_data_dtype() == np.int16 and img.shape == lab.shape
        # world RAS: +x is the patient's right
        liver, spleen = _world_centroid(lab, LABELS["liver"]), _world_centroid(lab, LABELS["spleen"])
        assert liver[0] > 30 > -30 > spleen[0], (path.name, liver, spleen)
        assert _world_centroid(lab, LABELS["aorta"])[0] < 0 < _world_centroid(lab, LABELS["ivc"])[0]


def test_phantom_contents_in_hu():
    ph = phantom(11, small=True)
    hu, lab = ph.hu.astype(np.float32), ph.labels
    dxy = ph.affine[0, 0]
    mid = hu[:, :, hu.shape[2] // 2]
    body_rows = np.nonzero((mid > -500).any(axis=1))[0]
    width_mm = (body_rows.max() - body_rows.min() + 1) * dxy  # includes the table (wider than the body)
    assert 300 <= width_mm <= 450
    assert 50 <= np.median(hu[lab == LABELS["liver"]]) <= 75
    assert hu.max() >= 1000  # dense cortical rim of the vertebra
    air_outside = hu[:5, -5:, :]  # anterior corner, away from the table
    assert abs(float(air_outside.mean()) + 1000) < 10
    body = (ph.hu > -500).any(axis=2)
    gas_inside = (ph.hu < -900) & body[:, :, None]
    assert gas_inside[40:-40, 40:-40].sum() > 100  # bowel or stomach gas


def test_determinism():
    a, b = phantom(5, small=True), phantom(5, small=True)
    np.testing.assert_array_equal(a.hu, b.hu)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(phantom(6, small=True).hu, a.hu)


def test_grid_and_body_ranges_over_many_seeds():
    seen_dz = set()
    for seed in range(300):
        rng = np.random.default_rng([seed, 0x5EED])
        a, b, _ = _anatomy(rng)
        assert 300 <= 2 * a <= 350 and 200 <= 2 * b <= 250
        (dxy, dz), (nx, ny, nz) = sample_grid(rng, a, b)
        assert 0.6 <= dxy <= 1.0 and dz in SLICE_SPACINGS_MM and 20 <= nz <= 300 and nx == ny == 512
        assert nx * dxy >= 2 * a + 40  # the field of view holds the whole body
        seen_dz.add(dz)
        (sdxy, sdz), (_, _, snz) = sample_grid(rng, a, b, small=True)
        assert (sdxy, sdz) == (1.0, 5.0) and 20 <= snz <= 32
    assert seen_dz == set(SLICE_SPACINGS_MM)


def test_synthesize_resumes_and_redoes_on_new_settings(tmp_path, monkeypatch):
    synth.synthesize(tmp_path, 2, 7, small=True, progress=False)
    first = (tmp_path / "images" / "Case_00002_0000.nii.gz").read_bytes()
    calls = []
    real = synth.phantom
    monkeypatch.setattr(synth, "phantom", lambda seed, **kw: calls.append(seed) or real(seed, **kw))
    (tmp_path / "labels" / "Case_00001.nii.gz").unlink()  # an unfinished case
    paths = synth.synthesize(tmp_path, 3, 7, small=True, progress=False)
    assert calls == [7 * 100003 + 0, 7 * 100003 + 2]  # case 2 was finished: skipped
    assert [p.name for p in paths] == [f"Case_0000{k}_0000.nii.gz" for k in (1, 2, 3)]
    assert (tmp_path / "images" / "Case_00002_0000.nii.gz").read_bytes() == first
    calls.clear()
    synth.synthesize(tmp_path, 2, 8, small=True, progress=False)  # another seed: everything again
    assert calls == [8 * 100003, 8 * 100003 + 1]
