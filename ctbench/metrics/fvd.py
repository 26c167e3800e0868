"""FVD: I3D Fréchet distance of volumes seen as 64-frame videos (:mod:`ctbench.extractors.i3d`), its
grouped-jackknife bias-corrected twin ``fvd_unbiased``, and KVD, the kernel distance on the same features (the FVD
paper's kernel video distance; :mod:`ctbench.metrics.kernel`). Every frame is kept (a video with frames dropped
would change its time axis); the fraction of blank (pure padding) frames is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ctbench.extractors.i3d import PREPROCESSING, I3DFeatures, import_tensorflow
from ctbench.extractors.slicing import quantise_uint8
from ctbench.metrics.contract import Key
from ctbench.metrics.feature import (
    DEFAULT_GROUPS,
    FeatureMetric,
    StreamRows,
    interval_note,
    kernel_note,
    kernel_value,
    make_value,
    unbiased_value,
)
from ctbench.metrics.frechet import FrechetEstimate
from ctbench.metrics.kernel import KernelEstimate
from ctbench.stats import FeatureSetStats
from ctbench.weights import ResolvedWeights, resolve, tfhub_module_dir


class FVD(FeatureMetric):
    """Fréchet video distance with the TF-Hub I3D (Kinetics-400) logits; ``n`` is the number of volumes.

    ``tf32``: let TensorFlow run I3D in TensorFloat-32 on CUDA (off otherwise; recorded in :meth:`options`).
    """

    name = "fvd"
    version = "2"
    summary = "FVD and KVD: I3D (Kinetics-400) Fréchet distance of volumes read as 64-frame videos of axial slices"
    keys = (
        Key("fvd", "lower", description="Fréchet video distance on I3D logits", rank=3),
        Key("fvd_unbiased", "lower", description="fvd with its 1/N bias removed (grouped jackknife)"),
        Key("kvd", "lower", description="kernel video distance (unbiased MMD², cubic kernel) on I3D logits",
            n_independent=True),
    )
    streams = ("video",)
    dim = I3DFeatures.dim
    weights = ("i3d-kinetics-400",)
    extractor_name = I3DFeatures.name
    preprocessing = PREPROCESSING

    def __init__(self, groups: int = DEFAULT_GROUPS, tf32: bool = False, **kernel_options: Any):
        super().__init__(groups, **kernel_options)
        self.tf32 = tf32

    def extraction_options(self) -> dict[str, Any]:
        return {"tf32": self.tf32}

    def resolve_weights(self, unverified_ok: bool = False) -> ResolvedWeights:
        weights = resolve(self.weights[0], unverified_ok=unverified_ok)
        import_tensorflow()
        return weights

    def build_extractor(
        self, weights: ResolvedWeights, device: str | torch.device, batch_size: int | None
    ) -> I3DFeatures:
        handle = weights.spec.handle
        # Found in TFHUB_CACHE_DIR: load through the handle so tensorflow_hub resolves it itself.
        module: str | Path = handle if handle and weights.path == tfhub_module_dir(handle) else weights.path
        return I3DFeatures(module, device, batch_size, tf32=self.tf32)

    def features(self, extractor: I3DFeatures, volumes: torch.Tensor) -> Iterator[StreamRows]:
        n, depth = volumes.shape[0], volumes.shape[2]
        blank = int((quantise_uint8(volumes).flatten(3).amax(3) == 0).sum())  # (N, 1, D) frames entirely 0
        yield StreamRows("video", extractor(volumes), torch.arange(n), torch.zeros(n, dtype=torch.long), blank,
                         n * depth)

    def frechet_values(self, estimates: dict[str, FrechetEstimate], fake: FeatureSetStats, common: dict) -> dict:
        e = estimates["video"]
        return {
            "fvd": make_value(e.value, e.n, e.interval(), common, interval_note(e)),
            "fvd_unbiased": unbiased_value(e, common, interval_note(e)),
        }

    def kernel_values(self, estimates: dict[str, KernelEstimate], fake: FeatureSetStats, common: dict) -> dict:
        e = estimates["video"]
        return {"kvd": kernel_value(e, common, kernel_note(e, "volumes"))}
