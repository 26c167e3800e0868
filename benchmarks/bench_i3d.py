"""Throughput of FVD's I3D: the PyTorch port (fp32, compiled, bf16) against the TensorFlow reference, same run.

Videos per second for volumes ``(N, 1, frames, 128, 128)`` through the whole FVD extractor (quantisation, TF1
resize to 224×224, network), and for each variant the largest logit difference to the port's fp32 logits, as a
fraction of the largest logit:

* ``torch fp32``: :class:`ctbench.extractors.i3d_torch.I3DTorchFeatures` (channels-last 3D on CUDA);
* ``torch compile`` (``--compile``; on CUDA by default) and ``torch bf16`` (``--bf16``; on CUDA by default);
* ``tensorflow`` (``--tf``): :class:`ctbench.extractors.i3d.I3DFeatures` running the SavedModel (TF32 off), the
  reference; the port then uses weights converted from that same module, so the difference column is the parity.

Weights: the installed converted weights (and module, for ``--tf``) when present; otherwise random ones, the
random SavedModel of ``tests/i3d_reference_graph.py`` for ``--tf`` (throughput does not depend on the values).

    python benchmarks/bench_i3d.py                          # CPU: 1 video of 16 frames, 2 repeats
    python benchmarks/bench_i3d.py --tf --frames 10         # CPU, against TensorFlow on the same weights
    python benchmarks/bench_i3d.py --device cuda --videos 64 --frames 64 --tf --json i3d.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def random_converted(path: Path) -> Path:
    """Converted-weights file with random values (He-normal kernels, batch-norm statistics near identity)."""
    from ctbench.extractors.i3d_convert import write_random_converted

    return write_random_converted(path, "0" * 64)


def weights(tmp: Path, with_tf: bool) -> tuple[Path, Path | None, str]:
    """(converted weights, SavedModel or None, what they are)."""
    from ctbench.weights import locate

    module, converted = locate("i3d-kinetics-400"), locate("i3d-kinetics-400-torch")
    if not with_tf:
        return (converted, None, "installed") if converted else (random_converted(tmp / "i3d.pt"), None, "random")
    if module is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from i3d_reference_graph import save_random_i3d

        module = save_random_i3d(tmp / "i3d-random")
    from ctbench.extractors.i3d_convert import convert

    return convert(module, tmp / "i3d-converted.pt").path, module, "converted from " + str(module)


def timed(extract, volumes: torch.Tensor, repeats: int, device: torch.device) -> tuple[float, torch.Tensor]:
    """Best videos/s over ``repeats`` runs after one warm-up, and the logits."""
    logits = extract(volumes)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        logits = extract(volumes)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return volumes.shape[0] / best, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--videos", type=int, default=None, help="default 1 on CPU, 64 on CUDA")
    parser.add_argument("--frames", type=int, default=None, help="frames per video (>= 9); default 16 CPU, 64 CUDA")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (default on CUDA)")
    parser.add_argument("--bf16", action="store_true", help="also bf16 autocast (default on CUDA)")
    parser.add_argument("--tf", action="store_true", help="also the TensorFlow reference (needs the fvd extra)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from ctbench.extractors.i3d_torch import I3DTorchFeatures

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    n = args.videos or (64 if cuda else 1)
    frames = args.frames or (64 if cuda else 16)
    coarse = torch.rand(n, 1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    volumes = torch.nn.functional.interpolate(coarse, size=(frames, 128, 128), mode="trilinear")
    with tempfile.TemporaryDirectory() as tmp:
        converted, module, what = weights(Path(tmp), args.tf)
        variants = [("torch fp32", {})]
        if args.compile or cuda:
            variants.append(("torch compile", {"compile": True}))
        if args.bf16 or cuda:
            variants.append(("torch bf16", {"bf16": True}))
            if args.compile or cuda:
                variants.append(("torch compile bf16", {"compile": True, "bf16": True}))
        rows = []
        reference = None
        for name, options in variants:
            extractor = I3DTorchFeatures(converted, device, args.batch_size, channels_last=cuda, **options)
            rate, logits = timed(extractor, volumes, args.repeats, device)
            reference = logits if reference is None else reference
            rows.append({"variant": name, "videos_per_s": rate, "logits": logits})
        if module is not None:
            from ctbench.extractors.i3d import I3DFeatures

            extractor = I3DFeatures(module, device, args.batch_size)
            rate, logits = timed(extractor, volumes, args.repeats, device)
            rows.append({"variant": "tensorflow", "videos_per_s": rate, "logits": logits})
    assert reference is not None
    scale = reference.abs().max().item()
    baseline = next((r["videos_per_s"] for r in rows if r["variant"] == "tensorflow"), rows[0]["videos_per_s"])
    versus = "tensorflow" if module is not None else "torch fp32"
    print(f"device {device} ({torch.cuda.get_device_name(device) if cuda else 'cpu'}), torch {torch.__version__}, "
          f"{n} videos of {frames} frames, weights: {what}")
    print(f"{'variant':20s} {'videos/s':>9s} {'x ' + versus:>14s} {'max |dlogit| / max|logit|':>26s}")
    for r in rows:
        r["error_vs_torch_fp32"] = (r.pop("logits") - reference).abs().max().item() / scale
        r["ratio"] = r["videos_per_s"] / baseline
        print(f"{r['variant']:20s} {r['videos_per_s']:9.2f} {r['ratio']:14.2f} {r['error_vs_torch_fp32']:26.1e}")
    if args.json:
        info = {"device": str(device), "torch": torch.__version__, "videos": n, "frames": frames, "weights": what}
        args.json.write_text(json.dumps({**info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
