"""I3D logits (400-d) of a volume seen as a video, through the TF-Hub module ``deepmind/i3d-kinetics-400/1`` run by
TensorFlow: FVD's reference backend (the PyTorch port, :mod:`ctbench.extractors.i3d_torch`, shares the preprocessing).

Preprocessing, as in the FVD reference implementation: the volume is quantised to uint8
(:func:`ctbench.extractors.slicing.quantise_uint8`), its 64 axial slices become 64 frames (time = z,
inferior → superior), each frame is resized to 224×224 with TensorFlow-1 bilinear resizing
(``align_corners=False``; torch-fidelity's exact port), scaled by ``2·x/255 - 1`` to [-1, 1], and the grey
channel is repeated to RGB. The module's ``default`` signature maps ``(N, T, 224, 224, 3)`` to ``(N, 400)``
logits averaged over time. TensorFlow is imported only here, and told to grow GPU memory on demand so it
can share a GPU with torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ctbench.core.errors import MetricUnavailable
from ctbench.extractors.slicing import axial_frames, quantise_uint8, resize_like_tf1
from ctbench.extractors.tf32 import tensorflow_tf32

FRAME_SIZE = 224
PREPROCESSING = (
    "uint8=clamp(round((v+1)*127.5),0,255); frames=axial slices, z inferior->superior; "
    "TF1 bilinear resize to 224x224 (align_corners=False); 2*x/255-1; grey->RGB; I3D default signature 400-d"
)


def import_tensorflow() -> tuple[Any, Any]:
    """Import TensorFlow and tensorflow_hub (``MetricUnavailable`` if missing); enable GPU memory growth.

    triton (loaded by ``torch._dynamo``, which torchvision and torch.compile import) segfaults the process
    when first loaded after TensorFlow's LLVM symbols, so it is loaded here first; any later import order is
    then safe. A user who imports TensorFlow before ctbench or torchvision must do the same.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import torch._dynamo  # noqa: F401  (load order: see above)

    try:
        import tensorflow as tf
        import tensorflow_hub as hub
    except ImportError as exc:
        raise MetricUnavailable(
            f"FVD needs TensorFlow and tensorflow-hub ({exc}); install them with `pip install 'ctbench[fvd]'`"
        ) from exc
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # TF already initialised its GPUs (memory growth was set then, or cannot be now)
            pass
    return tf, hub


def preprocess_frames(volumes: torch.Tensor) -> torch.Tensor:
    """Volumes ``(N, 1, D, H, W)`` in [-1, 1] → grey videos ``(N, 1, D, 224, 224)`` float32 in [-1, 1] (NCDHW), on
    the volumes' device."""
    frames = axial_frames(quantise_uint8(volumes))  # (N, D, H, W) uint8
    n, d, h, w = frames.shape
    x = frames.reshape(n * d, 1, h, w).float()
    x = resize_like_tf1(x, FRAME_SIZE)
    return (2.0 * x / 255.0 - 1.0).reshape(n, 1, d, FRAME_SIZE, FRAME_SIZE)


def preprocess_videos(volumes: torch.Tensor) -> torch.Tensor:
    """Volumes ``(N, 1, D, H, W)`` in [-1, 1] → videos ``(N, D, 224, 224, 3)`` float32 in [-1, 1] (NDHWC, the
    TF-Hub module's layout)."""
    return preprocess_frames(volumes).permute(0, 2, 3, 4, 1).expand(-1, -1, -1, -1, 3)


class I3DFeatures:
    """Callable: volumes ``(N, 1, 64, 128, 128)`` in [-1, 1] → I3D logits ``(N, 400)`` float32 on the CPU.

    ``module`` is a SavedModel folder, or a TF-Hub handle that tensorflow_hub resolves (from
    ``TFHUB_CACHE_DIR`` when it is cached there; nothing is downloaded by ctbench's metrics). TensorFlow's
    TF32 execution is off while the module runs unless ``tf32`` (:mod:`ctbench.extractors.tf32`).
    """

    name = "i3d-kinetics-400"
    dim = 400

    def __init__(
        self, module: str | Path, device: str | torch.device = "cpu", batch_size: int | None = None, tf32: bool = False
    ):
        self.tf, hub = import_tensorflow()
        self.tf32 = tf32
        self.device = torch.device(device)
        self.batch_size = batch_size or 8
        # same GPU as torch (e.g. this rank's under torchrun); TF numbers visible GPUs as CUDA does
        self.tf_device = f"/GPU:{self.device.index or 0}" if self.device.type == "cuda" else "/CPU:0"
        try:
            self._fn = hub.load(str(module)).signatures["default"]
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{module}: not usable as the I3D TF-Hub module ({exc})") from exc

    def __call__(self, volumes: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in volumes.split(self.batch_size):
            videos = preprocess_videos(chunk.cpu()).contiguous().numpy()
            with self.tf.device(self.tf_device), tensorflow_tf32(self.tf, self.tf32):
                logits = self._fn(self.tf.constant(videos))["default"]
            out.append(torch.from_numpy(logits.numpy()).float())
        if not out:
            return torch.zeros(0, self.dim)
        return torch.cat(out)
