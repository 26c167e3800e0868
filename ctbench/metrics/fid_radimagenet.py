"""2.5D FID on RadImageNet ResNet-50 features: MAISI's ``compute_fid_2-5d_ct.py`` on the protocol's volumes.

Per plane the slices of every volume, taken and normalised as MAISI takes them
(:mod:`ctbench.extractors.radimagenet`: RAS array order, per-volume min-max, BGR means, no resize), go through
:class:`~ctbench.extractors.radimagenet.RadImageNetFeatures`; the Fréchet distance, its grouped-jackknife
interval, the ``_unbiased`` twin, KID and the reference-statistics cache are tri-planar FID's
(:class:`~ctbench.metrics.fid.TriPlanarFID`). ``fid_radimagenet_mean`` is the mean of the three planes, as MAISI's
"FID Avg". Precision/recall/density/coverage are not reported on these features.
``n`` is the number of slices per plane (``*_mean``: the number of volumes).

``center_slices``: MAISI's ``--enable_center_slices_ratio`` (1.0, every slice, is MAISI's default; its usage
example passes 0.4). ``slices``: ``all``, or ``body`` (slices that are pure padding left out on both sides, after
the min-max, as MAISI's ``drop_empty`` does; blank as for FID: every voxel below ``-1 + 1/255``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ctbench.extractors.batching import FeatureNetwork
from ctbench.extractors.radimagenet import PREPROCESSING, RadImageNetFeatures, minmax, plane_stack
from ctbench.extractors.slicing import quantise_uint8
from ctbench.metrics.base import MetricValue
from ctbench.metrics.contract import Key
from ctbench.metrics.feature import DEFAULT_GROUPS, StreamRows
from ctbench.metrics.fid import TriPlanarFID
from ctbench.stats import FeatureSetStats

_PLANES = (("xy", "axial"), ("xz", "coronal"), ("yz", "sagittal"))


class RadImageNetFID(TriPlanarFID):
    """FID and KID on RadImageNet ResNet-50 features of the three slice planes, MAISI's recipe.

    Options as :class:`TriPlanarFID` (``slice_step`` tests only, ``slices``, ``bf16``, ``tf32``, ``compile``, kernel
    options) and ``center_slices`` in (0, 1]: the centred fraction of each plane's slices that is used.
    """

    name = "fid-radimagenet"
    version = "1"
    summary = ("2.5D FID and KID on RadImageNet ResNet-50 features (MAISI's compute_fid_2-5d_ct.py): axial, coronal, "
               "sagittal slices")
    keys = (
        Key("fid_radimagenet_mean", "lower",
            description="mean of the three planes' RadImageNet FID (MAISI's 2.5D FID)"),
        Key("kid_radimagenet_mean", "lower", description="mean of the three planes' KID on RadImageNet features"),
        *(Key(f"fid_radimagenet_{p}", "lower", description=f"FID of {where} ({p}) slices on RadImageNet features")
          for p, where in _PLANES),
        *(Key(f"fid_radimagenet_{p}_unbiased", "lower",
              description=f"fid_radimagenet_{p} with its 1/N bias removed (grouped jackknife)")
          for p in ("mean", "xy", "xz", "yz")),
        *(Key(f"kid_radimagenet_{p}", "lower", description=f"KID (unbiased MMD², cubic kernel) of {where} ({p}) slices "
              "on RadImageNet features")
          for p, where in _PLANES),
    )
    weights = ("radimagenet-resnet50",)
    dim = RadImageNetFeatures.dim
    extractor_name = RadImageNetFeatures.name
    preprocessing = PREPROCESSING
    network = RadImageNetFeatures
    fid_key = "fid_radimagenet"
    kid_key = "kid_radimagenet"

    def __init__(
        self,
        groups: int = DEFAULT_GROUPS,
        slice_step: int = 1,
        compile: bool = False,
        bf16: bool = False,
        tf32: bool = False,
        slices: str = "all",
        center_slices: float = 1.0,
        **kernel_options: Any,
    ):
        super().__init__(groups, slice_step, compile, bf16, tf32, slices, **kernel_options)
        if not 0.0 < center_slices <= 1.0:
            raise ValueError(f"center_slices must be in (0, 1], got {center_slices}")
        self.center_slices = float(center_slices)

    def extraction_options(self) -> dict[str, Any]:
        return {**super().extraction_options(), "center_slices": self.center_slices}

    def features(self, extractor: FeatureNetwork, volumes: torch.Tensor) -> Iterator[StreamRows]:
        n = len(volumes)
        for plane in self.streams:
            stack, index = plane_stack(volumes, plane, self.center_slices, self.slice_step)  # (N, S, a, b)
            blank = (quantise_uint8(stack.flatten(2).amax(2)) == 0).flatten()
            images = minmax(stack).reshape(-1, 1, *stack.shape[2:])
            vol = torch.arange(n).repeat_interleave(len(index))
            position = index.repeat(n)
            if self.slices == "body":
                keep = ~blank
                images, vol, position = images[keep], vol[keep], position[keep]
            feats = extractor(images) if len(images) else torch.zeros(0, self.dim)
            yield StreamRows(plane, feats, vol, position, int(blank.sum()), len(blank))

    def manifold_distances(
        self, fake: FeatureSetStats, real: FeatureSetStats, common: dict, device: str | torch.device
    ) -> dict[str, MetricValue]:
        """None: precision, recall, density and coverage are reported on the Inception features only."""
        return {}
