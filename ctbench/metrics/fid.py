"""Tri-planar FID: InceptionV3 Fréchet distance on xy, xz and yz slices, and their mean.

Per plane the slices of every volume (:mod:`ctbench.extractors.slicing`) go through
:class:`~ctbench.extractors.inception.InceptionFeatures`; ``fid_mean`` is the mean of the three planes (the
"average slice FID" of the literature), its jackknife replicates the mean of the planes' replicates.
Each ``fid_*`` has a ``fid_*_unbiased`` twin: the grouped-jackknife bias-corrected distance
(:meth:`~ctbench.metrics.frechet.FrechetEstimate.unbiased`), with its interval.
``n`` is the number of slices per plane (``fid_mean``: the number of volumes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ctbench.extractors.inception import PREPROCESSING, InceptionFeatures
from ctbench.extractors.slicing import PLANES, plane_slices, quantise_uint8
from ctbench.metrics.contract import Key
from ctbench.metrics.feature import DEFAULT_GROUPS, FeatureMetric, interval_note, make_value, unbiased_value
from ctbench.metrics.frechet import FrechetEstimate
from ctbench.stats import FeatureSetStats
from ctbench.weights import ResolvedWeights


class TriPlanarFID(FeatureMetric):
    """FID on the three slice planes. ``slice_step`` > 1 keeps every k-th slice (tests only; recorded).

    ``bf16`` (autocast) and ``tf32`` (TensorFloat-32 convolutions and matmuls on CUDA; off otherwise) are speed
    options, recorded in :meth:`options` and so never compared with fp32 statistics.
    """

    name = "fid"
    version = "1"
    summary = "tri-planar FID: InceptionV3 Fréchet distance on axial (xy), coronal (xz), sagittal (yz) slices"
    keys = (
        Key("fid_mean", "lower", description="mean of the three planes' FID (the literature's slice FID)", rank=1),
        Key("fid_xy", "lower", description="FID of axial (xy) slices"),
        Key("fid_xz", "lower", description="FID of coronal (xz) slices"),
        Key("fid_yz", "lower", description="FID of sagittal (yz) slices"),
        Key("fid_mean_unbiased", "lower", description="fid_mean with its 1/N bias removed (grouped jackknife)"),
        Key("fid_xy_unbiased", "lower", description="fid_xy with its 1/N bias removed (grouped jackknife)"),
        Key("fid_xz_unbiased", "lower", description="fid_xz with its 1/N bias removed (grouped jackknife)"),
        Key("fid_yz_unbiased", "lower", description="fid_yz with its 1/N bias removed (grouped jackknife)"),
    )
    streams = PLANES
    dim = InceptionFeatures.dim
    weights = ("inception-v3-compat",)
    extractor_name = InceptionFeatures.name
    preprocessing = PREPROCESSING

    def __init__(
        self,
        groups: int = DEFAULT_GROUPS,
        slice_step: int = 1,
        compile: bool = False,
        bf16: bool = False,
        tf32: bool = False,
    ):
        super().__init__(groups)
        if slice_step < 1:
            raise ValueError("slice_step must be >= 1")
        self.slice_step = slice_step
        self.compile = compile
        self.bf16 = bf16
        self.tf32 = tf32

    def options(self) -> dict[str, Any]:
        return {"slice_step": self.slice_step, "bf16": self.bf16, "tf32": self.tf32}

    def build_extractor(
        self, weights: ResolvedWeights, device: str | torch.device, batch_size: int | None
    ) -> InceptionFeatures:
        dev = torch.device(device)
        return InceptionFeatures(
            weights.path,
            dev,
            batch_size,
            compile=self.compile,
            channels_last=dev.type == "cuda",
            bf16=self.bf16,
            tf32=self.tf32,
        )

    def features(self, extractor: InceptionFeatures, volumes: torch.Tensor) -> Iterator:
        u8 = quantise_uint8(volumes)
        for plane in self.streams:
            images, vol = plane_slices(u8, plane, self.slice_step)
            yield plane, extractor(images), vol

    def values(self, estimates: dict[str, FrechetEstimate], fake: FeatureSetStats, common: dict) -> dict:
        step = f"; slices subsampled (step {self.slice_step}): not comparable" if self.slice_step > 1 else ""
        out = {}
        for plane in self.streams:
            e = estimates[plane]
            out[f"fid_{plane}"] = make_value(e.value, e.n, e.interval(), common, interval_note(e) + step)
            out[f"fid_{plane}_unbiased"] = unbiased_value(e, common, interval_note(e) + step)
        mean = mean_estimate([estimates[p] for p in self.streams], fake.n_volumes)
        per_plane = ", ".join(f"{p}={estimates[p].n}" for p in self.streams)
        note = f"n = volumes; slices per plane: {per_plane}{step}"
        out["fid_mean"] = make_value(mean.value, mean.n, mean.interval(), common, note)
        out["fid_mean_unbiased"] = unbiased_value(mean, common, note)
        return out


def mean_estimate(planes: list[FrechetEstimate], n_volumes: int) -> FrechetEstimate:
    """The mean of the planes' distances; its replicates are the means of the planes' replicates (the same groups
    of volumes left out), or none unless every plane has the same number of replicates."""
    reps = [e.replicates for e in planes]
    same = all(reps) and len({len(r) for r in reps}) == 1
    mean_reps = [float(r) for r in np.mean(np.asarray(reps), axis=0)] if same else []
    return FrechetEstimate(float(np.mean([e.value for e in planes])), n_volumes, mean_reps)
