"""3D FID on MedicalNet features: the Fréchet distance of whole volumes' 2048-d MedicalNet (Med3D) ResNet-50
features (:mod:`ctbench.extractors.medicalnet`), its grouped-jackknife bias-corrected twin and KID on the same
features, as HA-GAN and WDM-3D report it.

One row per volume (stream ``volume``), so N is the number of volumes and the covariance is full rank only from
2048 volumes on (below that every value is marked rank-deficient). The fraction of blank (pure padding) axial
slices is recorded as for FVD's frames; they stay in the volume the network sees.
"""

from __future__ import annotations

from typing import Any

import torch

from ctbench.core.errors import MetricUnavailable
from ctbench.extractors.medicalnet import INPUT_RANGES, MedicalNetFeatures, preprocessing, require_monai
from ctbench.metrics.contract import Key
from ctbench.metrics.feature import DEFAULT_GROUPS
from ctbench.metrics.whole_volume import WholeVolumeMetric
from ctbench.weights import ResolvedWeights, how_to_get, resolve


class MedicalNetFID(WholeVolumeMetric):
    """3D FID and KID on MedicalNet ResNet-50 (23 datasets) features of whole volumes; ``n`` is the number of volumes.

    ``input_range``: ``unit`` (default; WDM-3D's ``(v + 1) / 2``) or ``signed`` (HA-GAN's ``v``). ``compile``
    (``torch.compile``), ``bf16`` (autocast) and ``tf32`` as for FID; ``input_range``, ``bf16`` and ``tf32`` change
    values and are recorded in :meth:`options`.
    """

    name = "fid3d-medicalnet"
    version = "1"
    summary = "3D FID and KID: MedicalNet (Med3D) ResNet-50 features of whole volumes, as HA-GAN and WDM-3D report"
    keys = (
        Key("fid3d_medicalnet", "lower", description="Fréchet distance on MedicalNet ResNet-50 features of volumes"),
        Key("fid3d_medicalnet_unbiased", "lower", description="fid3d_medicalnet with its 1/N bias removed (grouped "
            "jackknife)"),
        Key("kid3d_medicalnet", "lower", description="kernel distance (unbiased MMD², cubic kernel) on MedicalNet "
            "ResNet-50 features of volumes", n_independent=True),
    )
    streams = ("volume",)
    frechet_key = "fid3d_medicalnet"
    kernel_key = "kid3d_medicalnet"
    dim = MedicalNetFeatures.dim
    weights = ("medicalnet-resnet50-23",)
    extractor_name = MedicalNetFeatures.name

    def __init__(
        self,
        groups: int = DEFAULT_GROUPS,
        input_range: str = "unit",
        compile: bool = False,
        bf16: bool = False,
        tf32: bool = False,
        **kernel_options: Any,
    ):
        super().__init__(groups, **kernel_options)
        if input_range not in INPUT_RANGES:
            raise ValueError(f"fid3d-medicalnet input_range must be one of {', '.join(INPUT_RANGES)}; "
                             f"got {input_range!r}")
        self.input_range = input_range
        self.compile = compile
        self.bf16 = bf16
        self.tf32 = tf32
        self.preprocessing = preprocessing(input_range)

    def extraction_options(self) -> dict[str, Any]:
        return {"input_range": self.input_range, "bf16": self.bf16, "tf32": self.tf32}

    def resolve_weights(self, unverified_ok: bool = False) -> ResolvedWeights:
        require_monai()
        return resolve(self.weights[0], unverified_ok=unverified_ok)

    def build_extractor(self, weights: ResolvedWeights, device: str | torch.device, batch_size: int | None) -> Any:
        dev = torch.device(device)
        try:
            return MedicalNetFeatures(weights.path, self.input_range, dev, batch_size, compile=self.compile,
                                      channels_last=dev.type == "cuda", bf16=self.bf16, tf32=self.tf32)
        except ValueError as exc:  # a file of another network under this name
            raise MetricUnavailable(f"{exc}. Replace it: {how_to_get(weights.spec)}.") from exc
