"""Tri-planar FID: InceptionV3 Fréchet distance on xy, xz and yz slices, and their mean.

Per plane the slices of every volume (:mod:`ctbench.extractors.slicing`) go through
:class:`~ctbench.extractors.inception.InceptionFeatures`; ``fid_mean`` is the mean of the three planes (the
"average slice FID" of the literature), its jackknife replicates the mean of the planes' replicates.
Each ``fid_*`` has a ``fid_*_unbiased`` twin: the grouped-jackknife bias-corrected distance
(:meth:`~ctbench.metrics.frechet.FrechetEstimate.unbiased`), with its interval, and a ``kid_*`` twin: the kernel
inception distance on the same features (:mod:`ctbench.metrics.kernel`; ``kid_mean`` the mean of the planes).
From the same feature samples: ``precision_*``, ``recall_*`` (k = 3), ``density_*``, ``coverage_*`` (k = 5) per
plane and their mean (:mod:`ctbench.metrics.manifold`).
``n`` is the number of slices per plane (``fid_mean``, ``kid_mean``: the number of volumes).

``slices``: ``all`` (the protocol's: every slice) or ``body`` (blank slices — pure padding, see
:mod:`ctbench.metrics.feature` — left out on both sides, before the network).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctbench.extractors.batching import FeatureNetwork
from ctbench.extractors.inception import PREPROCESSING, InceptionFeatures
from ctbench.extractors.slicing import PLANES, plane_slices, quantise_uint8
from ctbench.metrics.base import MetricValue
from ctbench.metrics.contract import Key
from ctbench.metrics.feature import DEFAULT_GROUPS, FeatureMetric, StreamRows
from ctbench.metrics.feature_values import interval_note, kernel_note, kernel_value, make_value, unbiased_value
from ctbench.metrics.frechet import FrechetEstimate
from ctbench.metrics.kernel import KernelEstimate
from ctbench.metrics.manifold import (
    K_DENSITY_COVERAGE,
    K_PRECISION_RECALL,
    MANIFOLD_METHOD,
    NAMES,
    ManifoldEstimate,
    ManifoldSizeError,
    prdc,
)
from ctbench.stats import FeatureSetStats
from ctbench.weights import ResolvedWeights


class TriPlanarFID(FeatureMetric):
    """FID and KID on the three slice planes. ``slice_step`` > 1 keeps every k-th slice (tests only; recorded);
    ``slices`` ``all`` or ``body`` (blank slices left out); kernel options: :class:`FeatureMetric`.

    ``bf16`` (autocast) and ``tf32`` (TensorFloat-32 convolutions and matmuls on CUDA; off otherwise) are speed
    options, recorded in :meth:`options` and so never compared with fp32 statistics.
    """

    name = "fid"
    version = "2"
    summary = "tri-planar FID and KID: InceptionV3 Fréchet distance on axial (xy), coronal (xz), sagittal (yz) slices"
    keys = (
        Key("fid_mean", "lower", description="mean of the three planes' FID (the literature's slice FID)", rank=2),
        Key("kid_mean", "lower", description="mean of the three planes' KID (its drift with N is far below FID's, "
            "not zero: slices of a volume are not independent)", rank=1),
        Key("fid_xy", "lower", description="FID of axial (xy) slices"),
        Key("fid_xz", "lower", description="FID of coronal (xz) slices"),
        Key("fid_yz", "lower", description="FID of sagittal (yz) slices"),
        Key("fid_mean_unbiased", "lower", description="fid_mean with its 1/N bias removed (grouped jackknife)"),
        Key("fid_xy_unbiased", "lower", description="fid_xy with its 1/N bias removed (grouped jackknife)"),
        Key("fid_xz_unbiased", "lower", description="fid_xz with its 1/N bias removed (grouped jackknife)"),
        Key("fid_yz_unbiased", "lower", description="fid_yz with its 1/N bias removed (grouped jackknife)"),
        Key("kid_xy", "lower", description="kernel inception distance (unbiased MMD², cubic kernel) of xy slices"),
        Key("kid_xz", "lower", description="kernel inception distance (unbiased MMD², cubic kernel) of xz slices"),
        Key("kid_yz", "lower", description="kernel inception distance (unbiased MMD², cubic kernel) of yz slices"),
        *(Key(f"{name}_{plane}", "higher", description=f"{what} ({where})")
          for name, what in (
              ("precision", f"fraction of generated slices inside the real k-NN manifold, k = {K_PRECISION_RECALL}"),
              ("recall", f"fraction of real slices inside the generated k-NN manifold, k = {K_PRECISION_RECALL}"),
              ("density", f"real k-NN balls holding a generated slice, per slice / k, k = {K_DENSITY_COVERAGE}"),
              ("coverage", f"fraction of real slices whose k-NN ball holds a generated one, k = {K_DENSITY_COVERAGE}"),
          )
          for plane, where in (("xy", "axial"), ("xz", "coronal"), ("yz", "sagittal"), ("mean", "mean of the planes"))),
    )
    streams = PLANES
    dim = InceptionFeatures.dim
    weights = ("inception-v3-compat",)
    extractor_name = InceptionFeatures.name
    preprocessing = PREPROCESSING
    network: type[FeatureNetwork] = InceptionFeatures
    """The feature extractor of every slice (a subclass on another network sets its own)."""
    fid_key = "fid"
    """Prefix of the Fréchet keys (``fid_xy``, ``fid_mean``, ``fid_xy_unbiased``); a subclass on another network
    sets its own, as it sets :attr:`kid_key` for the kernel keys."""
    kid_key = "kid"

    def __init__(
        self,
        groups: int = DEFAULT_GROUPS,
        slice_step: int = 1,
        compile: bool = False,
        bf16: bool = False,
        tf32: bool = False,
        slices: str = "all",
        **kernel_options: Any,
    ):
        super().__init__(groups, **kernel_options)
        if slice_step < 1:
            raise ValueError("slice_step must be >= 1")
        if slices not in SLICES:
            raise ValueError(f"slices must be one of {', '.join(SLICES)}; got {slices!r}")
        self.slice_step = slice_step
        self.slices = slices
        self.compile = compile
        self.bf16 = bf16
        self.tf32 = tf32

    def extraction_options(self) -> dict[str, Any]:
        return {"slice_step": self.slice_step, "slices": self.slices, "bf16": self.bf16, "tf32": self.tf32}

    def build_extractor(
        self, weights: ResolvedWeights, device: str | torch.device, batch_size: int | None
    ) -> FeatureNetwork:
        """The network, built once per process for each weights file (by sha256), device and option set."""
        # a class is hashable; mypy reads FeatureNetwork's instance __hash__ into the type object
        return _network(self.network, weights.path, weights.sha256,  # type: ignore[arg-type]
                        torch.device(device), batch_size, self.compile, self.bf16, self.tf32)

    def features(self, extractor: FeatureNetwork, volumes: torch.Tensor) -> Iterator[StreamRows]:
        u8 = quantise_uint8(volumes)
        for plane in self.streams:
            images, vol = plane_slices(u8, plane, self.slice_step)
            per_volume = len(images) // max(len(volumes), 1)
            position = torch.arange(per_volume).repeat(len(volumes)) * self.slice_step
            blank = images.flatten(1).amax(1) == 0
            if self.slices == "body":
                keep = ~blank
                images, vol, position = images[keep], vol[keep], position[keep]
            feats = extractor(images) if len(images) else torch.zeros(0, self.dim)
            yield StreamRows(plane, feats, vol, position, int(blank.sum()), len(blank))

    def frechet_values(self, estimates: dict[str, FrechetEstimate], fake: FeatureSetStats, common: dict) -> dict:
        step = f"; slices subsampled (step {self.slice_step}): not comparable" if self.slice_step > 1 else ""
        out = {}
        for plane in self.streams:
            e = estimates[plane]
            out[f"{self.fid_key}_{plane}"] = make_value(e.value, e.n, e.interval(), common, interval_note(e) + step)
            out[f"{self.fid_key}_{plane}_unbiased"] = unbiased_value(e, common, interval_note(e) + step)
        mean = mean_estimate([estimates[p] for p in self.streams], fake.n_volumes)
        per_plane = ", ".join(f"{p}={estimates[p].n}" for p in self.streams)
        note = f"n = volumes; slices per plane: {per_plane}{step}"
        out[f"{self.fid_key}_mean"] = make_value(mean.value, mean.n, mean.interval(), common, note)
        out[f"{self.fid_key}_mean_unbiased"] = unbiased_value(mean, common, note)
        return out

    def kernel_values(self, estimates: dict[str, KernelEstimate], fake: FeatureSetStats, common: dict) -> dict:
        step = f"; slices subsampled (step {self.slice_step}): not comparable" if self.slice_step > 1 else ""
        out = {f"{self.kid_key}_{p}": kernel_value(e, common, kernel_note(e, "slices") + step)
               for p, e in estimates.items()}
        planes = [estimates[p] for p in self.streams]
        value, replicates = mean_of(planes)
        mean = KernelEstimate(value, fake.n_volumes, replicates, planes[0].subsets, planes[0].sizes)
        per_plane = ", ".join(f"{p}={estimates[p].n}" for p in self.streams)
        out[f"{self.kid_key}_mean"] = kernel_value(mean, common, f"n = volumes; slices per plane: {per_plane}{step}")
        return out

    def manifold_distances(
        self, fake: FeatureSetStats, real: FeatureSetStats, common: dict, device: str | torch.device
    ) -> dict[str, MetricValue]:
        """Precision, recall, density and coverage per plane and their mean, from both sides' feature samples;
        missing with the reason when a side has no sample or too few rows."""
        keys = [f"{name}_{p}" for name in NAMES for p in (*self.streams, "mean")]
        reason = self.missing_samples(fake, real)
        estimates = {}
        try:
            for p in self.streams if reason is None else ():
                x, y = fake.samples[p], real.samples[p]
                estimates[p] = prdc(x.features, x.volume, y.features, fake.streams[p].k, device,
                                    label=f"{self.name} ({p})")
        except ManifoldSizeError as exc:  # the other values stand; these say why they are missing
            reason = str(exc)
        if reason is not None:
            return {key: MetricValue(None, note=reason, **common) for key in keys}
        step = f"; slices subsampled (step {self.slice_step}): not comparable" if self.slice_step > 1 else ""
        per_plane = ", ".join(f"{p}={estimates[p]['precision'].n}" for p in self.streams)
        out = {}
        for name in NAMES:
            k = K_PRECISION_RECALL if name in ("precision", "recall") else K_DENSITY_COVERAGE
            for p in self.streams:
                e = estimates[p][name]
                out[f"{name}_{p}"] = manifold_value(e, common, manifold_note(e, k) + step)
            planes = [estimates[p][name] for p in self.streams]
            value, replicates = mean_of(planes)
            mean = ManifoldEstimate(value, fake.n_volumes, replicates, planes[0].sizes, planes[0].upper)
            out[f"{name}_mean"] = manifold_value(mean, common, f"n = volumes; k = {k}; generated slices per plane: "
                                                 f"{per_plane}{step}")
        self.note_row_samples(out, fake, real)
        return out


def manifold_note(estimate: ManifoldEstimate, k: int) -> str:
    """The record note of a precision/recall/density/coverage value: k, the rows used, the replicates."""
    m, n = estimate.sizes
    return f"k = {k}; {m} generated / {n} real slices; " + (
        f"jackknife replicates={len(estimate.replicates)}" if estimate.replicates else "interval needs >= 2 groups")


def manifold_value(estimate: ManifoldEstimate, common: dict, note: str) -> MetricValue:
    """One k-NN key's :class:`MetricValue`: value, N, 95% interval (clipped to the statistic's range), ``note``."""
    interval = estimate.interval()
    return MetricValue(value=float(estimate.value), n=int(estimate.n), interval=interval,
                       interval_method=MANIFOLD_METHOD if interval is not None else None, note=note, **common)


@functools.lru_cache(maxsize=4)
def _network(
    network: type[FeatureNetwork], path: Path, sha256: str, device: torch.device, batch_size: int | None,
    compile: bool, bf16: bool, tf32: bool,
) -> FeatureNetwork:
    """A ``network`` on ``path``'s weights (an evaluation's reference and generated sides share it); ``sha256`` keys
    the file's content, so a replaced weights file at the same path is loaded anew."""
    return network(path, device, batch_size, compile=compile, channels_last=device.type == "cuda", bf16=bf16,
                   tf32=tf32)


SLICES = ("all", "body")
"""FID's slice selections: every slice (the protocol's), or only slices that are not pure padding."""


def mean_estimate(planes: list[FrechetEstimate], n_volumes: int) -> FrechetEstimate:
    """The mean of the planes' distances as one estimate of ``n_volumes`` (see :func:`mean_of`)."""
    value, replicates = mean_of(planes)
    return FrechetEstimate(value, n_volumes, replicates)


def mean_of(planes: Sequence[FrechetEstimate | KernelEstimate | ManifoldEstimate]) -> tuple[float, list[float]]:
    """The mean of the planes' values; its replicates are the means of the planes' replicates (the same groups
    of volumes left out), or none unless every plane has the same number of replicates."""
    reps = [e.replicates for e in planes]
    same = all(reps) and len({len(r) for r in reps}) == 1
    mean_reps = [float(r) for r in np.mean(np.asarray(reps), axis=0)] if same else []
    return float(np.mean([e.value for e in planes])), mean_reps
