"""Where the evaluated volumes come from: a generator plugin, or a folder of NIfTI files.

Generated volumes carry no HU pair of their own: they are read as HU with :func:`generated_hu_range`
(the median training (lo, hi)), both when saved as NIfTI and in the intensity metric.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctbench.api import REGISTRY, Generator, LoadContext, check_info, check_samples, parse_spec, plugin_errors
from ctbench.core.hashing import file_sha256, json_sha256
from ctbench.data.prepared import Manifest, from_hu
from ctbench.data.streaming import READ_WORKERS
from ctbench.evaluate.options import EvalOptions, EvaluationError
from ctbench.protocol import Protocol


def generated_hu_range(manifest: Manifest) -> tuple[float, float]:
    """The (lo, hi) HU pair used for generated volumes: the median of the training cases' pairs."""
    train = manifest.select("train") or manifest.select(None)
    if not train:
        raise EvaluationError(f"{manifest.root}: the prepared folder has no finished cases")
    los, his = zip(*(c.hu_range for c in train), strict=True)
    return float(np.median(los)), float(np.median(his))


class SampleSource:
    """The samples of one run: ``batch(indices)`` returns volumes ``(len, 1, D, H, W)`` in [-1, 1], validated.

    ``block`` is the record's ``generator`` entry (name, variant, config hash, checkpoint, plugin package...).
    """

    def __init__(self, opts: EvalOptions, manifest: Manifest, protocol: Protocol, hu_range: tuple[float, float]):
        self.opts = opts
        self.protocol = protocol
        self.hu_range = hu_range
        self.files: list[Path] = []
        self.generator: Generator | None = None
        if opts.samples:
            self.block = self._folder(Path(opts.samples))
        else:
            self.block = self._plugin(manifest)

    def _folder(self, folder: Path) -> dict[str, Any]:
        self.files = sorted(p for p in folder.glob("*.nii*") if p.name.endswith((".nii", ".nii.gz")))
        if not self.files:
            raise EvaluationError(f"{folder}: no .nii or .nii.gz files to score")
        if self.opts.n > len(self.files):
            raise EvaluationError(f"{folder}: --n {self.opts.n} but only {len(self.files)} NIfTI files")
        return {
            "source": "samples",
            "name": "samples:" + folder.name,
            "variant": "default",
            "samples_dir": str(folder.resolve()),
            "config": {},
            "config_hash": json_sha256(sorted(file_sha256(p) for p in self.files[: self.opts.n])),
        }

    def _plugin(self, manifest: Manifest) -> dict[str, Any]:
        opts = self.opts
        assert opts.generator is not None
        name, _ = parse_spec(opts.generator)
        context = LoadContext(device=torch.device(opts.device), data_dir=manifest.root, protocol=self.protocol)
        ckpt = Path(opts.checkpoint) if opts.checkpoint else None
        if ckpt is not None and not ckpt.exists():
            raise EvaluationError(f"{ckpt}: checkpoint not found")
        cls = REGISTRY.status(name).cls
        if ckpt is not None and ckpt.is_dir() and cls is not None and cls.trainable:
            inside = Path(cls.checkpoint_path(ckpt))
            if inside.is_file():  # `ctbench train`'s --out folder
                raise EvaluationError(f"--checkpoint {ckpt}: is a run folder; pass its checkpoint file, {inside}")
        self.generator = REGISTRY.load(opts.generator, ckpt, overrides=opts.overrides, context=context)
        with plugin_errors(name, "info"):
            info = check_info(self.generator.info(), name)
        st = REGISTRY.status(name)
        return {
            "source": "generator",
            "spec": opts.generator,
            "name": info.name,
            "variant": info.variant,
            "version": info.version,
            "overrides": info.overrides or opts.overrides,
            "config": info.config,
            "config_hash": info.config_hash,
            "parameters": info.parameters,
            "checkpoint": str(ckpt.resolve()) if ckpt else None,
            "checkpoint_sha256": info.checkpoint_sha256 or (file_sha256(ckpt) if ckpt and ckpt.is_file() else None),
            "plugin_package": info.plugin_package or st.package,
            "plugin_version": info.plugin_version or st.package_version,
        }

    @property
    def label(self) -> str:
        """``name@variant`` of a generator; ``samples:FOLDER`` for a folder."""
        b = self.block
        return b["name"] if b["source"] == "samples" else f"{b['name']}@{b['variant']}"

    def batch(self, indices: range) -> torch.Tensor:
        """Samples ``indices`` as ``(len, 1, D, H, W)`` float32 in [-1, 1], validated."""
        if self.generator is None:
            with ThreadPoolExecutor(max_workers=READ_WORKERS, thread_name_prefix="ctbench-read") as pool:
                arrays = list(pool.map(self._read, (self.files[i] for i in indices)))  # decoded in parallel, in order
            return torch.from_numpy(np.stack(arrays))[:, None]
        opts = self.opts
        with plugin_errors(self.label, "sample"):
            x = self.generator.sample(len(indices), opts.seed, offset=indices.start, batch_size=opts.batch_size)
        return check_samples(x, len(indices), self.label, self.protocol)

    def _read(self, path: Path) -> np.ndarray:
        import nibabel as nib

        try:
            img = nib.load(path)
            if not isinstance(img, nib.Nifti1Image):  # NIfTI-2 derives from it
                raise TypeError(f"nibabel read it as {type(img).__name__}")
            hu = np.asarray(img.dataobj, dtype=np.float32)
        except Exception as exc:
            raise EvaluationError(f"{path}: cannot read NIfTI ({exc})") from exc
        if hu.shape != self.protocol.output_shape:
            raise EvaluationError(f"{path}: shape {hu.shape}, expected RAS (x, y, z) = {self.protocol.output_shape}")
        if not np.isfinite(hu).all():
            raise EvaluationError(f"{path}: NaN or infinite values")
        return from_hu(hu, *self.hu_range).transpose(2, 1, 0)
