"""The feature networks' weights ctbench knows: where each comes from and its pin.

These networks' weights are known (:data:`WEIGHTS`):

* ``inception-v3-compat``: the TensorFlow FID InceptionV3 (``pt_inception-2015-12-05``) converted to PyTorch,
  one ``.pth`` file, as torch-fidelity and pytorch-fid distribute it. Verified by its sha256.
* ``i3d-kinetics-400``: the TF-Hub module ``deepmind/i3d-kinetics-400/1``, a SavedModel folder. Verified by the
  content hash of the folder (the folder rule of :mod:`ctbench.core.hashing`: sorted relative paths, each with
  its file's sha256): the tarball is served through redirects (tfhub.dev → Kaggle) with no published hash, and
  its bytes may change when re-packed, while the unpacked files are what TensorFlow loads.
* ``i3d-kinetics-400-torch``: that module's weights converted for the PyTorch I3D (FVD without TensorFlow), one
  file made on the spot by ``ctbench weights convert i3d-kinetics-400`` (:func:`convert`; TensorFlow is needed for
  that step only) and recording the module's hash inside. The same module converts to the same bytes, so the file
  has its own pin next to the module's. :func:`resolve_converted` also checks the recorded module hash against the
  pin and against the module installed here, if any.
* ``radimagenet-resnet50``: RadImageNet's ResNet-50 (no top) ported to PyTorch, the file MAISI's 2.5D FID loads
  through ``torch.hub`` (``Warvito/radimagenet-models``), hosted on Google Drive with no published hash: unpinned,
  like the I3D module. Import and fetch check that a file holds that network before installing it.
* ``vgg16-imagenet``: torchvision's VGG16 ImageNet checkpoint, the LPIPS trunk of the reference generator's
  perceptual loss (training only; no metric uses it). Verified by its sha256.
* ``medicalnet-resnet50-23``: MedicalNet's 3D ResNet-50 pretrained on 23 datasets
  (``resnet_50_23dataset.pth``), the network of ``fid3d-medicalnet``. No hash is published: unpinned, like I3D.
  Import and fetch check that the file loads into that network (a spec's ``check``) before keeping it.

Fetching, importing, converting and resolving them is :mod:`ctbench.weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

I3D_HANDLE = "https://tfhub.dev/deepmind/i3d-kinetics-400/1"
"""The TF-Hub handle of the FVD network; tensorflow_hub caches it under ``sha1(handle)`` in ``TFHUB_CACHE_DIR``."""


@dataclass(frozen=True)
class WeightSpec:
    """One pinned network: a single file (``kind='file'``) or a SavedModel folder (``kind='savedmodel'``)."""

    name: str
    kind: str
    filename: str
    """File or folder name inside the weights cache."""
    url: str
    """Canonical download URL (for ``savedmodel``: a ``.tar.gz`` of the folder)."""
    sha256: str | None
    """Pinned sha256 of the file, or content hash of the folder; None = not pinned yet (never verified)."""
    size_bytes: int | None = None
    handle: str | None = None
    """TF-Hub handle, for folders that tensorflow_hub can also find in ``TFHUB_CACHE_DIR``."""
    description: str = ""
    source: str | None = None
    """For ``kind='converted'``: the weights this file is converted from (``ctbench weights convert SOURCE``)."""
    check: str | None = None
    """``module:function`` raising ``ValueError`` when a file is not this network's weights (run on import and
    fetch, before anything is written)."""


WEIGHTS: dict[str, WeightSpec] = {
    "inception-v3-compat": WeightSpec(
        name="inception-v3-compat",
        kind="file",
        filename="weights-inception-2015-12-05-6726825d.pth",
        url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        size_bytes=95_628_359,
        description="TF FID InceptionV3 (pt_inception-2015-12-05) as used by torch-fidelity and pytorch-fid",
        check="ctbench.extractors.inception:check_weights",
    ),
    "i3d-kinetics-400": WeightSpec(
        name="i3d-kinetics-400",
        kind="savedmodel",
        filename="i3d-kinetics-400-1",
        url=I3D_HANDLE + "?tf-hub-format=compressed",
        # No hash of the module is published, and none could be recorded here (no internet).
        # Fill this in from `ctbench weights status` on a machine that fetched it; until then FVD is unverified.
        sha256=None,
        handle=I3D_HANDLE,
        description="TF-Hub deepmind/i3d-kinetics-400/1 (SavedModel, default signature: 400 logits)",
    ),
    "i3d-kinetics-400-torch": WeightSpec(
        name="i3d-kinetics-400-torch",
        kind="converted",
        filename="i3d-kinetics-400-1-torch.pt",
        url="",
        # Pinned together with i3d-kinetics-400: the sha256 `ctbench weights convert` prints for the pinned module.
        sha256=None,
        source="i3d-kinetics-400",
        description="i3d-kinetics-400 converted for ctbench's PyTorch I3D (made by `ctbench weights convert`)",
    ),
    "medicalnet-resnet50-23": WeightSpec(
        name="medicalnet-resnet50-23",
        kind="file",
        filename="resnet_50_23dataset.pth",
        # The file MONAI's MedicalNet loader downloads; Tencent's own release is a Google Drive / Weiyun archive.
        url="https://huggingface.co/TencentMedicalNet/MedicalNet-Resnet50/resolve/main/resnet_50_23dataset.pth",
        # No hash is published by Tencent or MONAI, and none could be recorded here (no internet): unpinned, like I3D.
        sha256=None,
        check="ctbench.extractors.medicalnet:check_weights_file",
        description="MedicalNet (Med3D) 3D ResNet-50 pretrained on 23 datasets: fid3d-medicalnet's network",
    ),
    # MAISI's 2.5D FID network: what torch.hub.load("Warvito/radimagenet-models", "radimagenet_resnet50") downloads
    # (Google Drive file 1VOWHgOq0rm7OkE_JxlWXhMAH4CvcXUHT, the URL below being its direct-download form) and caches
    # as $TORCH_HOME/hub/checkpoints/RadImageNet-ResNet50_notop.pth, where it is found too. No hash is published.
    "radimagenet-resnet50": WeightSpec(
        name="radimagenet-resnet50",
        kind="file",
        filename="RadImageNet-ResNet50_notop.pth",
        url="https://drive.usercontent.google.com/download?id=1VOWHgOq0rm7OkE_JxlWXhMAH4CvcXUHT&export=download&confirm=t",
        sha256=None,
        description="RadImageNet ResNet-50 (no top), Keras weights ported to PyTorch (Warvito/radimagenet-models); "
                    "the network of MAISI's 2.5D FID",
        check="ctbench.extractors.radimagenet:check_weights",
    ),
    # The reference generator's LPIPS trunk (vqgan-ddpm's vqgan.perceptual_weight); not a metric's weights.
    "vgg16-imagenet": WeightSpec(
        name="vgg16-imagenet",
        kind="file",
        filename="vgg16-397923af.pth",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        size_bytes=553_433_881,
        description="torchvision VGG16 ImageNet (IMAGENET1K_V1): the LPIPS trunk of vqgan-ddpm's perceptual loss",
    ),
}
