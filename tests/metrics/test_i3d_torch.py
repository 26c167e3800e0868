"""The PyTorch I3D and FVD's torch backend, without TensorFlow: TF "SAME" padding, variable names, the converted-
weights file and its checks, FVD end to end with TensorFlow unimportable, bf16."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ctbench import weights as W
from ctbench.cli import main
from ctbench.extractors.i3d_convert import SCOPE, state_dict_from
from ctbench.extractors.i3d_net import InceptionI3D, MaxPoolSame, pad_same, same_padding, tf_variable_name
from ctbench.extractors.i3d_torch import (
    I3DTorchFeatures,
    converted_source_sha256,
    load_network,
)
from ctbench.metrics import MetricUnavailable, get_metric


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 7, 2, (2, 3)),  # Conv3d_1a_7x7 over H and W: 112 outputs, one more padding after
        (64, 7, 2, (2, 3)),  # ... and over 64 frames
        (10, 7, 2, (2, 3)),
        (112, 3, 2, (0, 1)),  # MaxPool3d_2a_3x3
        (5, 3, 2, (1, 1)),
        (14, 2, 2, (0, 0)),  # MaxPool3d_5a_2x2 at 224
        (3, 2, 2, (0, 1)),
        (56, 3, 1, (1, 1)),  # every stride-1 3x3x3 layer
        (7, 1, 1, (0, 0)),
    ],
)
def test_same_padding_is_tensorflows(size, kernel, stride, expected):
    before, after = same_padding(size, kernel, stride)
    assert (before, after) == expected
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)  # ceil(size / stride) outputs


def _tf_same_max_pool(x: np.ndarray, kernel, stride) -> np.ndarray:
    """TensorFlow's definition, element by element: output o covers inputs o·s - pad_before ... + k - 1 that exist."""
    pads = [same_padding(n, k, s)[0] for n, k, s in zip(x.shape, kernel, stride, strict=True)]
    shape = [-(-n // s) for n, s in zip(x.shape, stride, strict=True)]
    out = np.empty(shape, x.dtype)
    for o in itertools.product(*(range(n) for n in shape)):
        window = tuple(
            slice(max(i * s - p, 0), min(i * s - p + k, n))
            for i, s, p, k, n in zip(o, stride, pads, kernel, x.shape, strict=True)
        )
        out[o] = x[window].max()
    return out


@pytest.mark.parametrize(("kernel", "stride"), [((3, 3, 3), (2, 2, 2)), ((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (1, 1, 1))])
def test_max_pool_same_never_takes_the_padding(kernel, stride):
    x = -1 - torch.rand(1, 1, 5, 8, 7, generator=torch.Generator().manual_seed(0))  # all < 0: a zero pad would win
    ours = MaxPoolSame(kernel, stride)(x)[0, 0].numpy()
    np.testing.assert_array_equal(ours, _tf_same_max_pool(x[0, 0].numpy(), kernel, stride))


def test_even_padding_is_left_to_the_layer_and_uneven_padding_is_explicit():
    x = torch.ones(1, 1, 10, 224, 224)
    same, padding = pad_same(x, (3, 3, 3), (1, 1, 1))
    assert same is x and padding == (1, 1, 1)
    padded, padding = pad_same(x, (7, 7, 7), (2, 2, 2))
    assert padding == (0, 0, 0) and padded.shape == (1, 1, 15, 229, 229)
    assert padded[0, 0, 2:-3, 2:-3, 2:-3].eq(1).all() and padded.sum() == x.sum()  # (2, 3) zeros on every axis


def test_every_parameter_has_its_tensorflow_variable():
    names = {key: tf_variable_name(key) for key in InceptionI3D().state_dict()}
    assert len(set(names.values())) == len(names) == 230  # 57 conv + batch norm units x 4, logits w and b
    assert names["Conv3d_1a_7x7.conv.weight"] == "Conv3d_1a_7x7/conv_3d/w"
    assert names["blocks.Mixed_4b.Branch_3.Conv3d_0b_1x1.bn.running_var"] == (
        "Mixed_4b/Branch_3/Conv3d_0b_1x1/batch_norm/moving_variance"
    )
    assert names["blocks.Mixed_5b.Branch_2.Conv3d_0b_3x3.bn.bias"] == "Mixed_5b/Branch_2/Conv3d_0a_3x3/batch_norm/beta"
    assert names["blocks.Mixed_5c.Branch_2.Conv3d_0b_3x3.bn.bias"] == "Mixed_5c/Branch_2/Conv3d_0b_3x3/batch_norm/beta"
    assert names["Logits.Conv3d_0c_1x1.conv.bias"] == "Logits/Conv3d_0c_1x1/conv_3d/b"


def _as_tf_variables(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A state dict laid out as the module's checkpoint: TF names, kernels (t, h, w, in, out), (1, 1, 1, 1, C)."""
    out = {}
    for key, value in state.items():
        v = value.permute(2, 3, 4, 1, 0) if value.ndim == 5 else value.reshape(1, 1, 1, 1, -1)
        if key.endswith("conv.bias"):
            v = value
        out[SCOPE + tf_variable_name(key)] = v.numpy().copy()
    return out


def test_conversion_maps_checkpoint_variables_back_exactly_and_names_what_is_wrong(i3d_torch_weights, tmp_path):
    state = load_network(i3d_torch_weights).state_dict()
    variables = {"global_step": np.int64(7), **_as_tf_variables(state)}  # variables outside the scope are ignored
    back = state_dict_from(variables, tmp_path)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)

    lacking = dict(variables)
    for name in ("Conv3d_1a_7x7/conv_3d/w", "Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/moving_mean"):
        del lacking[SCOPE + name]
    with pytest.raises(ValueError, match="not the I3D Kinetics-400 module") as err:
        state_dict_from(lacking, tmp_path)
    assert "2 of I3D's 230 variables missing" in str(err.value)
    assert f"{SCOPE}Conv3d_1a_7x7/conv_3d/w" in str(err.value) and "Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm" in str(
        err.value
    )
    with pytest.raises(ValueError, match=r"1 variables I3D does not have: RGB/inception_i3d/Mixed_6a/w"):
        state_dict_from({**variables, SCOPE + "Mixed_6a/w": np.zeros(3)}, tmp_path)
    wrong = dict(variables)
    wrong[SCOPE + "Conv3d_2b_1x1/conv_3d/w"] = np.zeros((1, 1, 1, 64, 32), np.float32)
    with pytest.raises(ValueError, match=r"Conv3d_2b_1x1/conv_3d/w has shape \(1, 1, 1, 64, 32\)"):
        state_dict_from(wrong, tmp_path)


def test_grey_input_and_folded_batch_norm_compute_the_same_network(i3d_torch_weights):
    net = load_network(i3d_torch_weights)
    grey = torch.rand(1, 1, 9, 193, 193, generator=torch.Generator().manual_seed(1)) * 2 - 1  # smallest valid size
    with torch.inference_mode():
        rgb_logits = net(grey.expand(-1, 3, -1, -1, -1))
        folded_grey = net.fold_batch_norm()(grey)
    assert rgb_logits.shape == (1, 400) and rgb_logits.std() > 0.1
    assert all(m.bn is None for m in net.modules() if hasattr(m, "bn"))
    torch.testing.assert_close(folded_grey, rgb_logits, rtol=0, atol=1e-5 * rgb_logits.abs().max().item())


def _volumes(n: int, seed: int, depth: int = 10) -> torch.Tensor:
    """Smooth volumes ``(n, 1, depth, 24, 24)`` in [-1, 1] (short videos: the network needs >= 9 frames)."""
    coarse = torch.rand(n, 1, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(depth, 24, 24), mode="trilinear")


def test_bf16_and_tf32_switches_reach_the_network(i3d_torch_weights, monkeypatch):
    """bf16 runs the network under autocast and TF32 is off unless asked, in batches of grey frames.

    bf16 3D convolutions take minutes on the CPU, so the accuracy under bf16 (BF16_LOGIT_TOLERANCE) is not tested.
    """
    seen = []

    def spy(x):
        seen.append((torch.is_autocast_enabled("cpu"), torch.backends.cudnn.allow_tf32, x.shape))
        return torch.zeros(x.shape[0], 400)

    for fast in (False, True):
        extractor = I3DTorchFeatures(i3d_torch_weights, bf16=fast, tf32=fast, batch_size=2)
        monkeypatch.setattr(extractor, "_forward", spy)
        assert extractor(_volumes(3, 0)).shape == (3, 400)
    assert [s[:2] for s in seen] == [(False, False)] * 2 + [(True, True)] * 2
    assert seen[0][2] == (2, 1, 10, 224, 224) and seen[1][2] == (1, 1, 10, 224, 224)  # grey frames, in batches


def test_converted_weights_are_found_checked_and_used_by_default(i3d_torch_weights, private_cache):
    fvd = get_metric("fvd")
    assert fvd.chosen_backend() == "tensorflow"  # nothing converted yet: the reference path
    with pytest.raises(MetricUnavailable, match="ctbench weights convert i3d-kinetics-400"):
        get_metric("fvd", backend="torch").check_ready(unverified_ok=True)
    imported = W.import_weights(i3d_torch_weights, unverified_ok=True)  # recognised by its contents
    assert imported.spec.name == "i3d-kinetics-400-torch" and imported.path.name == "i3d-kinetics-400-1-torch.pt"
    assert fvd.chosen_backend() == "torch" and get_metric("fvd", backend="tensorflow").chosen_backend() == "tensorflow"
    with pytest.raises(MetricUnavailable, match="pins no hash for it yet"):
        fvd.check_ready()
    r = fvd.resolve_weights(unverified_ok=True)
    source = converted_source_sha256(i3d_torch_weights)
    assert r.sha256 == source and r.file_sha256 == imported.sha256 and r.verified is False  # provenance: the module

    # a module installed here that is not the one converted: refused, or unverified with a warning
    module = W.weights_dir() / W.WEIGHTS["i3d-kinetics-400"].filename
    module.mkdir(parents=True)
    (module / "saved_model.pb").write_bytes(b"another module")
    with pytest.raises(MetricUnavailable, match="but the one installed at .* has sha256 .*convert it again") as err:
        fvd.check_ready(unverified_ok=False)
    assert source in str(err.value) and "--unverified-weights" in str(err.value)
    with pytest.warns(UserWarning, match="convert it again"):
        assert fvd.resolve_weights(unverified_ok=True).verified is False
    status = CliRunner().invoke(main, ["weights", "status"]).output
    assert f"converted from i3d-kinetics-400 sha256 {source}, NOT the one installed" in status


def test_converted_weights_verified_only_when_both_pins_match(i3d_torch_weights, monkeypatch):
    import dataclasses

    imported = W.import_weights(i3d_torch_weights, unverified_ok=True)
    source = converted_source_sha256(i3d_torch_weights)
    module_spec, torch_spec = W.WEIGHTS["i3d-kinetics-400"], W.WEIGHTS["i3d-kinetics-400-torch"]
    monkeypatch.setitem(W.WEIGHTS, torch_spec.name, dataclasses.replace(torch_spec, sha256=imported.sha256))
    monkeypatch.setitem(W.WEIGHTS, module_spec.name, dataclasses.replace(module_spec, sha256="0" * 64))
    with pytest.raises(MetricUnavailable, match=f"converted from a i3d-kinetics-400 with sha256 {source}, not the pin"):
        W.resolve_converted(torch_spec.name)
    monkeypatch.setitem(W.WEIGHTS, module_spec.name, dataclasses.replace(module_spec, sha256=source))
    assert W.resolve_converted(torch_spec.name).verified


def test_files_that_are_not_converted_weights_are_refused(tmp_path, inception_weights):
    junk = tmp_path / "junk.pt"
    torch.save({"state_dict": {}}, junk)
    with pytest.raises(ValueError, match="junk.pt: not a converted I3D weights file"):
        W.import_weights(junk, "i3d-kinetics-400-torch", unverified_ok=True)
    assert W.infer_name(inception_weights) == "inception-v3-compat"
    res = CliRunner().invoke(main, ["weights", "fetch", "i3d-kinetics-400-torch"])
    assert res.exit_code == 1 and "is not downloaded but made here: run `ctbench weights convert" in res.output
    res = CliRunner().invoke(main, ["weights", "convert", "inception-v3-compat"])
    assert res.exit_code == 1 and "Error: inception-v3-compat: nothing converts from it" in res.output
    res = CliRunner().invoke(main, ["weights", "convert"])
    assert res.exit_code == 1 and "Error: i3d-kinetics-400 weights missing" in res.output


def test_backend_options_are_checked():
    with pytest.raises(ValueError, match="backend must be one of auto, torch, tensorflow"):
        get_metric("fvd", backend="jax")
    with pytest.raises(ValueError, match="compile and bf16 need the torch backend"):
        get_metric("fvd", backend="tensorflow", bf16=True)
    assert get_metric("fvd", bf16=True).chosen_backend() == "torch"
    assert get_metric("fvd", bf16=True).extraction_options() == {"bf16": True, "tf32": False}


def test_fvd_runs_on_torch_with_tensorflow_unimportable(i3d_torch_weights, tmp_path):
    """End to end in a fresh process where importing TensorFlow fails: converted weights imported, FVD chosen
    automatically on torch, statistics of two volumes (two batches), scored against themselves (0), recorded with
    the module's hash. Two forward passes of the full network: about 10 s."""
    code = textwrap.dedent(f"""
        import sys, warnings
        sys.modules["tensorflow"] = sys.modules["tensorflow_hub"] = None  # any import of them raises
        import torch
        from ctbench.metrics import get_metric
        from ctbench.weights import import_weights
        from ctbench.extractors.i3d_torch import converted_source_sha256

        import_weights({str(i3d_torch_weights)!r}, unverified_ok=True)
        fvd = get_metric("fvd", groups=1)
        g = torch.Generator().manual_seed(0)
        vols = torch.nn.functional.interpolate(torch.rand(2, 1, 3, 4, 4, generator=g) * 2 - 1, size=(10, 24, 24))
        acc = fvd.statistics_accumulator(unverified_ok=True, batch_size=1)
        acc.update(vols)
        stats = acc.result()
        assert stats.n_volumes == 2 and stats.streams["video"].total().mean.std() > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 2 samples for 400-d features
            value = fvd.distances(stats, stats)["fvd"]
        assert abs(value.value) < 1e-6 and value.verified is False, value
        assert value.weights_sha256 == converted_source_sha256({str(i3d_torch_weights)!r})
        assert {{k: stats.provenance["options"][k] for k in ("bf16", "tf32")}} == {{"bf16": False, "tf32": False}}
        print("fvd", value.value)
    """)
    env = {"CTBENCH_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "fvd " in res.stdout
