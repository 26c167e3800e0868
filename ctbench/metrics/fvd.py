"""FVD: I3D Fréchet distance of volumes seen as 64-frame videos, its grouped-jackknife bias-corrected twin
``fvd_unbiased``, and KVD, the kernel distance on the same features (the FVD paper's kernel video distance;
:mod:`ctbench.metrics.kernel`). Every frame is kept (a video with frames dropped would change its time axis); the
fraction of blank (pure padding) frames is recorded.

Two implementations of the same network give the same statistics (to float rounding; tested):

* ``torch``: the PyTorch port (:mod:`ctbench.extractors.i3d_torch`) with the converted weights
  ``i3d-kinetics-400-torch`` (``ctbench weights convert i3d-kinetics-400``); TensorFlow is not imported.
* ``tensorflow``: the TF-Hub SavedModel run by TensorFlow (:mod:`ctbench.extractors.i3d`), the reference.

``backend="auto"`` (the default) takes ``torch`` when converted weights are installed, else ``tensorflow``. Both
record the SavedModel's hash as ``weights_sha256`` and the backend is not an option, so statistics from either are
compared with each other (reference statistics cached by one are used by the other).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ctbench.extractors.i3d import PREPROCESSING, I3DFeatures, import_tensorflow
from ctbench.metrics.contract import Key
from ctbench.metrics.feature import DEFAULT_GROUPS
from ctbench.metrics.whole_volume import WholeVolumeMetric
from ctbench.weights import ResolvedWeights, converted_from, locate, resolve, resolve_converted, tfhub_module_dir

BACKENDS = ("auto", "torch", "tensorflow")


class FVD(WholeVolumeMetric):
    """Fréchet video distance with the TF-Hub I3D (Kinetics-400) logits; ``n`` is the number of volumes.

    ``backend``: ``auto``, ``torch`` or ``tensorflow`` (module docstring). ``compile`` (``torch.compile``) and
    ``bf16`` (autocast) apply to the torch backend; ``tf32`` lets either run in TensorFloat-32 on CUDA (off
    otherwise). ``bf16`` and ``tf32`` change values and are recorded in :meth:`options`.
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
    frechet_key = "fvd"
    kernel_key = "kvd"
    dim = I3DFeatures.dim
    weights = ("i3d-kinetics-400",)
    extractor_name = I3DFeatures.name
    preprocessing = PREPROCESSING

    def __init__(
        self,
        groups: int = DEFAULT_GROUPS,
        backend: str = "auto",
        compile: bool = False,
        bf16: bool = False,
        tf32: bool = False,
        **kernel_options: Any,
    ):
        super().__init__(groups, **kernel_options)
        if backend not in BACKENDS:
            raise ValueError(f"fvd backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        if backend == "tensorflow" and (compile or bf16):
            raise ValueError("fvd: compile and bf16 need the torch backend")
        self.backend = backend
        self.compile = compile
        self.bf16 = bf16
        self.tf32 = tf32

    def extraction_options(self) -> dict[str, Any]:
        return {"bf16": self.bf16, "tf32": self.tf32}

    def chosen_backend(self) -> str:
        """``torch`` or ``tensorflow``: ``auto`` is ``torch`` when the converted weights are installed
        (or bf16/compile are asked for)."""
        if self.backend != "auto":
            return self.backend
        if self.bf16 or self.compile or locate(converted_from(self.weights[0]).name) is not None:
            return "torch"
        return "tensorflow"

    def resolve_weights(self, unverified_ok: bool = False) -> ResolvedWeights:
        if self.chosen_backend() == "torch":
            return resolve_converted(converted_from(self.weights[0]).name, unverified_ok=unverified_ok)
        weights = resolve(self.weights[0], unverified_ok=unverified_ok)
        import_tensorflow()
        return weights

    def build_extractor(self, weights: ResolvedWeights, device: str | torch.device, batch_size: int | None) -> Any:
        if weights.spec.kind == "converted":
            from ctbench.extractors.i3d_torch import I3DTorchFeatures

            dev = torch.device(device)
            return I3DTorchFeatures(weights.path, dev, batch_size, compile=self.compile,
                                    channels_last=dev.type == "cuda", bf16=self.bf16, tf32=self.tf32)
        handle = weights.spec.handle
        # Found in TFHUB_CACHE_DIR: load through the handle so tensorflow_hub resolves it itself.
        module: str | Path = handle if handle and weights.path == tfhub_module_dir(handle) else weights.path
        return I3DFeatures(module, device, batch_size, tf32=self.tf32)
