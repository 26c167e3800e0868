"""Fixtures for the metrics tests: a private CTBENCH_CACHE, random InceptionV3 weights, a tiny I3D stand-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own CTBENCH_CACHE, TFHUB_CACHE_DIR and TORCH_HOME; home caches are never touched."""
    root = tmp_path_factory.mktemp("ctbench-cache")
    monkeypatch.setenv("CTBENCH_CACHE", str(root))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(root / "tfhub"))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    return root


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory) -> Path:
    """An InceptionV3 state dict in torch-fidelity's format with random weights and calibrated BatchNorm.

    torchvision's Inception3 (1008 classes, no aux head) has the same parameter names; BatchNorm running
    statistics are set from one batch of random images so activations stay in a realistic range.
    """
    import torchvision

    torch.manual_seed(1234)
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, 299, 299) * 2 - 1)
    path = tmp_path_factory.mktemp("weights") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def installed_inception(inception_weights, private_cache):
    """The random weights imported into the private cache (unverified: their hash is not the pinned one)."""
    from ctbench.weights import import_weights

    return import_weights(inception_weights, "inception-v3-compat", unverified_ok=True)


def make_i3d_standin(path: Path, seed: int = 0) -> Path:
    """Save a tiny SavedModel with I3D's ``default`` signature: ``(N, T, 224, 224, 3)`` float → ``(N, 400)``.

    Per frame it pools 4×4 blocks of the frame, applies a random linear map and a ReLU, then averages over
    time, so it is nonlinear, sensitive to spatial content and to every input channel.
    """
    from ctbench.extractors.i3d import import_tensorflow

    tf = import_tensorflow()[0]  # imports torchvision first: the other order crashes
    rng = np.random.default_rng(seed)
    w = tf.constant(rng.normal(size=(3 * 56 * 56 // 16, 400)).astype(np.float32) * 0.05)

    class StandIn(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, 224, 224, 3], tf.float32)])
        def default(self, video):
            n, t = tf.shape(video)[0], tf.shape(video)[1]
            frames = tf.reshape(video, [n * t, 224, 224, 3])
            pooled = tf.nn.avg_pool2d(frames, ksize=16, strides=16, padding="VALID")  # (n*t, 14, 14, 3)
            h = tf.nn.relu(tf.reshape(pooled, [n * t, 14 * 14 * 3]) @ w + 0.1)
            return {"default": tf.reduce_mean(tf.reshape(h, [n, t, 400]), axis=1)}

    module = StandIn()
    tf.saved_model.save(module, str(path), signatures={"default": module.default})
    return path


@pytest.fixture(scope="session")
def i3d_standin(tmp_path_factory) -> Path:
    return make_i3d_standin(tmp_path_factory.mktemp("i3d") / "i3d-standin")


@pytest.fixture
def volumes() -> torch.Tensor:
    """Three smooth random volumes ``(3, 1, 64, 128, 128)`` in [-1, 1]."""
    g = torch.Generator().manual_seed(7)
    coarse = torch.rand(3, 1, 8, 16, 16, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(64, 128, 128), mode="trilinear", align_corners=False)
