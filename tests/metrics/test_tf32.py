"""TF32 is off while the feature networks run (the fp32 reference), restored after, and the ``tf32`` option is
recorded: it changes the metric options, the provenance and the reference-statistics cache key."""

from __future__ import annotations

import pytest
import torch

from ctbench.core.hashing import json_sha256
from ctbench.extractors.inception import InceptionFeatures
from ctbench.extractors.tf32 import tensorflow_tf32, torch_tf32
from ctbench.metrics import get_metric


def flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.fixture
def saved_flags():
    before = flags()
    yield before
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("enabled", [False, True])
def test_torch_switches_are_set_inside_and_restored_after_even_on_error(saved_flags, enabled):
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (not enabled, not enabled)
    with torch_tf32(enabled):
        assert flags() == (enabled, enabled)
    assert flags() == (not enabled, not enabled)
    with pytest.raises(RuntimeError), torch_tf32(enabled):
        raise RuntimeError("inside")
    assert flags() == (not enabled, not enabled)


def test_tensorflow_switch_is_set_inside_and_restored_after():
    class Experimental:
        state = True

        def tensor_float_32_execution_enabled(self):
            return self.state

        def enable_tensor_float_32_execution(self, enabled):
            self.state = enabled

    class FakeTF:
        class config:  # noqa: N801 - mirrors tf.config
            experimental = Experimental()

    exp = FakeTF.config.experimental
    with tensorflow_tf32(FakeTF, False):
        assert exp.state is False
    assert exp.state is True


@pytest.mark.parametrize("tf32", [False, True])
def test_inception_runs_with_tf32_as_asked_and_restores(saved_flags, inception_weights, tf32):
    extractor = InceptionFeatures(inception_weights, tf32=tf32)
    seen = []

    def forward(x):
        seen.append(flags())
        return torch.zeros(x.shape[0], InceptionFeatures.dim)

    extractor._forward = forward
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (not tf32, not tf32)
    extractor(torch.zeros(3, 1, 16, 16, dtype=torch.uint8))
    assert seen == [(tf32, tf32)]
    assert flags() == (not tf32, not tf32)


def test_tf32_option_enters_provenance_and_cache_key(installed_inception, prepared_dir):
    from ctbench.data.prepared import load_manifest

    manifest = load_manifest(prepared_dir)
    fp32, tf32 = get_metric("fid"), get_metric("fid", tf32=True)
    assert fp32.options()["tf32"] is False and tf32.options()["tf32"] is True
    weights = fp32.resolve_weights(unverified_ok=True)
    assert fp32.provenance(weights)["options"]["tf32"] is False
    assert tf32.provenance(weights)["options"]["tf32"] is True
    keys = {json_sha256(m.cache_fields(manifest, "test", weights)) for m in (fp32, tf32)}
    assert len(keys) == 2
    assert fp32.comparability() != tf32.comparability()
    assert get_metric("fvd").extraction_options() == {"bf16": False, "tf32": False}
    assert get_metric("fvd", tf32=True).extraction_options() == {"bf16": False, "tf32": True}
