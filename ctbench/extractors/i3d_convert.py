"""TF-Hub I3D SavedModel → converted PyTorch weights, checked against the module itself. The only I3D step that
needs TensorFlow (the ``fvd`` extra).

1. Read every variable of the SavedModel's checkpoint (``variables/variables``) by name, without running the graph.
2. Map them onto :class:`~ctbench.extractors.i3d_net.InceptionI3D`
   (:func:`~ctbench.extractors.i3d_net.tf_variable_name`; convolution kernels ``(t, h, w, in, out)`` →
   ``(out, in, t, h, w)``, batch-norm vectors flattened). A module lacking any of the 230 variables below
   ``RGB/inception_i3d/``, or holding others there, is not this network: the error names them.
3. Run the module's ``default`` signature (TensorFlow, CPU, no TF32) and the port on the same two fixed videos
   (:data:`CHECK_FRAMES` frames of 224×224: sizes at which strided layers pad unevenly, in time and space); the
   logits must agree to :data:`PARITY_TOLERANCE` of their largest magnitude, or nothing is written.
4. Write ``{"format", "source_sha256", "state_dict"}`` with ``torch.save`` into memory, then atomically to the file:
   the same module gives the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ctbench.core.atomic import write_bytes_atomic
from ctbench.core.hashing import file_sha256
from ctbench.extractors.i3d import import_tensorflow
from ctbench.extractors.i3d_net import InceptionI3D, tf_variable_name
from ctbench.extractors.i3d_torch import FORMAT
from ctbench.extractors.tf32 import tensorflow_tf32

SCOPE = "RGB/inception_i3d/"
"""Variable scope of the network inside the TF-Hub module."""

PARITY_TOLERANCE = 1e-4
"""Largest accepted ``max|torch - tf| / max|tf|`` over the check videos' logits."""

CHECK_FRAMES = 10


@dataclass(frozen=True)
class Conversion:
    """A written converted-weights file: its path and sha256, the SavedModel's hash, the measured parity error."""

    path: Path
    sha256: str
    source_sha256: str
    parity_error: float


def read_variables(module_dir: Path) -> dict[str, np.ndarray]:
    """Every variable in the SavedModel's checkpoint, by name (``ValueError`` naming the folder if it has none)."""
    tf = import_tensorflow()[0]
    prefix = module_dir / "variables" / "variables"
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except (ValueError, tf.errors.OpError) as exc:
        raise ValueError(f"{module_dir}: no readable variables/ checkpoint in this SavedModel ({exc})") from exc
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def state_dict_from(variables: dict[str, np.ndarray], module_dir: Path) -> dict[str, torch.Tensor]:
    """The port's state dict from the module's variables; ``ValueError`` naming what is missing, extra or misshapen."""
    found = {name.split(SCOPE, 1)[1]: value for name, value in variables.items() if SCOPE in name}
    target = InceptionI3D().state_dict()
    wanted = {tf_variable_name(key): key for key in target}
    missing = sorted(set(wanted) - set(found))
    extra = sorted(set(found) - set(wanted))
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"{len(missing)} of I3D's {len(wanted)} variables missing: {_names(missing)}")
        if extra:
            problems.append(f"{len(extra)} variables I3D does not have: {_names(extra)}")
        raise ValueError(f"{module_dir}: not the I3D Kinetics-400 module ({'; '.join(problems)})")
    out = {}
    for name, key in wanted.items():
        value = torch.from_numpy(np.ascontiguousarray(found[name], dtype=np.float32))
        kernel = key.endswith("conv.weight")
        if kernel and value.ndim == 5:  # (t, h, w, in, out) -> (out, in, t, h, w)
            value = value.permute(4, 3, 0, 1, 2)
        if value.shape != target[key].shape and (kernel or value.numel() != target[key].numel()):
            raise ValueError(f"{module_dir}: variable {SCOPE}{name} has shape {tuple(found[name].shape)}, "
                             f"I3D needs {tuple(target[key].shape)}")
        out[key] = value.reshape(target[key].shape).contiguous()
    return out


def _names(names: list[str], shown: int = 6) -> str:
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(SCOPE + n for n in names[:shown]) + more


def check_videos() -> np.ndarray:
    """Two fixed smooth videos ``(2, CHECK_FRAMES, 224, 224, 3)`` in [-1, 1] with different colour channels."""
    g = torch.Generator().manual_seed(20170522)
    coarse = torch.rand(2, 3, 4, 8, 8, generator=g) * 2 - 1
    video = torch.nn.functional.interpolate(coarse, size=(CHECK_FRAMES, 224, 224), mode="trilinear")
    return video.permute(0, 2, 3, 4, 1).contiguous().numpy()


def parity_error(module_dir: Path, net: InceptionI3D, videos: np.ndarray) -> float:
    """``max|torch - tf| / max|tf|`` of the logits of ``videos`` ``(N, T, 224, 224, 3)`` (TensorFlow on the CPU)."""
    tf, hub = import_tensorflow()
    with tf.device("/CPU:0"), tensorflow_tf32(tf, False):
        reference = hub.load(str(module_dir)).signatures["default"](tf.constant(videos))["default"].numpy()
    with torch.inference_mode():
        ours = net(torch.from_numpy(videos).permute(0, 4, 1, 2, 3)).numpy()
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def convert(module_dir: str | Path, dest: str | Path, source_sha256: str | None = None) -> Conversion:
    """Convert the SavedModel at ``module_dir`` into the file ``dest`` (steps in the module docstring).

    ``source_sha256``: the folder's content hash if already known (computed otherwise). ``ValueError`` when the
    module is not I3D or the port does not reproduce it.
    """
    module_dir = Path(module_dir)
    source_sha256 = source_sha256 or file_sha256(module_dir)
    state = state_dict_from(read_variables(module_dir), module_dir)
    net = InceptionI3D().eval()
    net.load_state_dict(state)
    error = parity_error(module_dir, net, check_videos())
    if not error <= PARITY_TOLERANCE:
        raise ValueError(f"{module_dir}: the PyTorch I3D differs from this module by {error:.2e} of the largest logit "
                         f"(tolerance {PARITY_TOLERANCE:g}); nothing written")
    path = write_bytes_atomic(dest, serialise(state, source_sha256))
    return Conversion(path, file_sha256(path), source_sha256, error)


def serialise(state: dict[str, torch.Tensor], source_sha256: str) -> bytes:
    """The converted-weights file's bytes (``torch.save`` into memory: no file name inside, the same bytes for the
    same weights)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "source_sha256": source_sha256, "state_dict": state}, buffer)
    return buffer.getvalue()


def write_random_converted(path: str | Path, source_sha256: str, seed: int = 3) -> Path:
    """A converted-weights file with seeded random values, for tests and benchmarks without the real module:
    He-normal kernels, moving means and offsets ~ N(0, 0.05), variances ~ U(0.5, 2); it records ``source_sha256``."""
    torch.manual_seed(seed)
    net = InceptionI3D()
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("conv.weight"):
                torch.nn.init.kaiming_normal_(tensor, nonlinearity="relu")
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            else:
                tensor.normal_(0, 0.05)
    Path(path).write_bytes(serialise(net.state_dict(), source_sha256))
    return Path(path)
