"""Seconds per FLARE22-size scan (512 × 512 × 100 at 0.74 × 0.74 × 2.5 mm) on one core, end to end.

Paths compared on the same files, in the same run (read .nii.gz → flare22-v1 → write .nii.gz):

* ``ctbench``: the shipped pipeline (fused sparse tent-kernel resample, crop and resize in one step).
* ``scipy zoom o3, two-step``: the protocol read literally: ``scipy.ndimage.zoom`` (cubic spline) to
  0.72 × 0.72 × 2.5 mm, crop/pad the box, ``zoom`` again by 0.4 (no anti-aliasing filter).
* ``scipy gauss + trilinear``: Gaussian pre-filter (sigma = (shrink - 1) / 2 voxels) on the whole scan,
  then ``map_coordinates`` order 1 at the output voxel centres.
* ``SimpleITK two-step``: ``Resample`` (linear) onto the 0.72 mm box, recursive Gaussian, ``Resample``
  onto the 128 × 128 × 64 grid.

Each alternative's output is compared with ctbench's (mean |Δ| in HU over the scanned field) to show
they compute the same thing. Run: ``python benchmarks/bench_prepare.py [--scans 3]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
    os.environ[_var] = "1"  # one core for every path; must precede the numeric imports

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from scipy import ndimage  # noqa: E402

from ctbench.data.pipeline import load_checked, prepare_scan  # noqa: E402
from ctbench.data.prepared import from_hu, to_hu, write_volume  # noqa: E402
from ctbench.data.resample import body_centre, plan_geometry  # noqa: E402
from ctbench.data.synth import phantom, reorient  # noqa: E402
from ctbench.protocol import FLARE22_V1 as P  # noqa: E402

FLARE_GRID = ((0.74, 2.5), (512, 512, 100))


def make_scans(folder: Path, n: int) -> list[Path]:
    """``n`` phantoms on the FLARE22 grid, stored LPS like most FLARE22 files."""
    paths = []
    for i in range(n):
        ph = phantom(1000 + i, grid=FLARE_GRID)
        data, affine = reorient(ph.hu, ph.affine, "LPS")
        path = folder / f"flare_{i}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), path)
        paths.append(path)
    return paths


def _finish(hu_xyz: np.ndarray, inside: np.ndarray, affine: np.ndarray, out: Path) -> np.ndarray:
    lo, hi = np.percentile(hu_xyz[inside], P.clip_percentiles)
    write_volume(out, from_hu(hu_xyz, lo, hi).transpose(2, 1, 0), (lo, hi), affine)
    return hu_xyz


def run_ctbench(path: Path, out: Path, stages: dict[str, list[float]]) -> tuple[np.ndarray, object]:
    t0 = time.perf_counter()
    scan = load_checked(path)
    t1 = time.perf_counter()
    r = prepare_scan(scan)
    t2 = time.perf_counter()
    write_volume(out, r.volume, (r.hu_lo, r.hu_hi), r.affine)
    t3 = time.perf_counter()
    for name, dt in (("read + checks", t1 - t0), ("box + resample + clip", t2 - t1), ("write", t3 - t2)):
        stages.setdefault(name, []).append(dt)
    return to_hu(r.volume, r.hu_lo, r.hu_hi).transpose(2, 1, 0), r.geometry


def _canonical(path: Path):
    img = nib.as_closest_canonical(nib.load(path))
    data = img.get_fdata(dtype=np.float32)
    spacing = tuple(float(s) for s in np.sqrt((img.affine[:3, :3] ** 2).sum(0)))
    return img, data, spacing


def run_scipy_zoom(path: Path, out: Path) -> np.ndarray:
    img, data, spacing = _canonical(path)
    res = ndimage.zoom(data, [s / t for s, t in zip(spacing, P.spacing_mm, strict=True)], order=3, mode="nearest")
    geo = plan_geometry(data.shape, spacing, body_centre(data, spacing, P.body_threshold_hu), P)
    box = np.full(P.crop_shape, P.pad_value_hu, np.float32)
    src = [slice(max(0, s), min(n, s + c)) for s, n, c in zip(geo.start, res.shape, P.crop_shape, strict=True)]
    dst = [slice(a.start - s, a.stop - s) for a, s in zip(src, geo.start, strict=True)]
    box[tuple(dst)] = res[tuple(src)]
    hu = ndimage.zoom(box, [o / c for o, c in zip(P.output_shape, P.crop_shape, strict=True)], order=3)
    return _finish(hu, geo.inside_source(), geo.output_affine(img.affine), out)


def run_scipy_gauss(path: Path, out: Path) -> np.ndarray:
    img, data, spacing = _canonical(path)
    geo = plan_geometry(data.shape, spacing, body_centre(data, spacing, P.body_threshold_hu), P)
    sigma = [max(0.0, (s - 1) / 2) for s in geo.scale]
    smooth = ndimage.gaussian_filter(data, sigma, mode="nearest")
    grid = np.meshgrid(*[geo.positions(a) for a in range(3)], indexing="ij")
    hu = ndimage.map_coordinates(smooth, grid, order=1, mode="constant", cval=P.pad_value_hu).astype(np.float32)
    return _finish(hu, geo.inside_source(), geo.output_affine(img.affine), out)


def run_sitk(path: Path, out: Path) -> np.ndarray:
    image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    mask = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.BinaryThreshold(image, P.body_threshold_hu, 1e9)))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    x0, y0, z0, sx, sy, sz = stats.GetBoundingBox(1)
    centre = image.TransformContinuousIndexToPhysicalPoint([x0 + (sx - 1) / 2, y0 + (sy - 1) / 2, z0 + (sz - 1) / 2])
    ras = np.diag([-1.0, -1.0, 1.0])  # build the box axis-aligned in RAS, like the protocol
    extent = np.asarray(P.spacing_mm) * (np.asarray(P.crop_shape) - 1)
    origin_lps = ras @ (ras @ np.asarray(centre) - extent / 2)
    box = sitk.Resample(
        image, [int(c) for c in P.crop_shape], sitk.Transform(), sitk.sitkLinear, origin_lps.tolist(),
        list(P.spacing_mm), ras.ravel().tolist(), P.pad_value_hu,
    )
    out_sp = np.asarray(P.output_spacing_mm)
    smooth = sitk.SmoothingRecursiveGaussian(box, (out_sp / 2).tolist())
    origin_out = ras @ (ras @ origin_lps - np.asarray(P.spacing_mm) / 2 + out_sp / 2)
    small = sitk.Resample(
        smooth, [int(o) for o in P.output_shape], sitk.Transform(), sitk.sitkLinear, origin_out.tolist(),
        out_sp.tolist(), ras.ravel().tolist(), P.pad_value_hu,
    )
    hu = sitk.GetArrayFromImage(small).transpose(2, 1, 0)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(out_sp)
    affine[:3, 3] = ras @ origin_out
    return _finish(hu, hu > P.pad_value_hu + 1, affine, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        paths = make_scans(tmp, args.scans)
        size = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
        print(f"{args.scans} phantom scans 512x512x100 @ 0.74x0.74x2.5 mm, {size:.0f} MB .nii.gz each "
              f"(made in {time.perf_counter() - t:.0f} s); one thread everywhere\n")
        methods = {
            "ctbench (fused tent kernel)": None,
            "scipy zoom o3, two-step": run_scipy_zoom,
            "scipy gauss + trilinear": run_scipy_gauss,
            "SimpleITK two-step": run_sitk,
        }
        times: dict[str, list[float]] = {m: [] for m in methods}
        diffs: dict[str, list[float]] = {m: [] for m in methods}
        stages: dict[str, list[float]] = {}
        for i, path in enumerate(paths):
            t = time.perf_counter()
            ref, geo = run_ctbench(path, tmp / f"ct_{i}.nii.gz", stages)
            times["ctbench (fused tent kernel)"].append(time.perf_counter() - t)
            inside = geo.inside_source()
            for name, fn in methods.items():
                if fn is None:
                    continue
                t = time.perf_counter()
                hu = fn(path, tmp / f"alt_{i}.nii.gz")
                times[name].append(time.perf_counter() - t)
                diffs[name].append(float(np.abs(hu - ref)[inside].mean()))
        base = np.mean(times["ctbench (fused tent kernel)"])
        print(f"| {'path':30s} | s/scan | x ctbench | mean abs diff vs ctbench (HU) |")
        print(f"|{'-' * 32}|-------:|----------:|------------------------------:|")
        for name in methods:
            s = float(np.mean(times[name]))
            d = f"{np.mean(diffs[name]):.1f}" if diffs[name] else "-"
            print(f"| {name:30s} | {s:6.2f} | {s / base:9.1f} | {d:>29s} |")
        print("\n| ctbench stage         | s/scan |\n|-----------------------|-------:|")
        for name, ts in stages.items():
            print(f"| {name:21s} | {np.mean(ts):6.2f} |")
        print(f"\nctbench: {base:.2f} s/scan on one core -> 2,050 FLARE22 scans in "
              f"{2050 * base / 2 / 60:.0f} min on 2 cores (target < 2 s/scan).")


if __name__ == "__main__":
    main()
