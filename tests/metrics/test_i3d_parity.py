"""The PyTorch I3D against TensorFlow running a SavedModel with the real module's layout (random weights,
``tests/i3d_reference_graph.py``): conversion, logits, FVD statistics of both backends; bad modules refused."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ctbench import weights as W
from ctbench.cli import main
from ctbench.core.hashing import file_sha256
from ctbench.extractors import i3d_convert
from ctbench.extractors.i3d_torch import converted_source_sha256
from ctbench.metrics import get_metric

pytestmark = pytest.mark.requires_tensorflow

CONVERTED = W.WEIGHTS["i3d-kinetics-400-torch"].filename


def test_converted_port_gives_the_modules_logits_and_fvd_statistics(i3d_random_module):
    """The conversion's own check (two 10-frame videos, logits within 1e-4), then FVD on both backends for the same
    two volumes: same provenance, same statistics. About 30 s on 2 cores: six passes of the 58-layer network, half
    of them in TensorFlow; this is the parity the PyTorch port exists for."""
    W.import_weights(i3d_random_module, unverified_ok=True)
    res = CliRunner().invoke(main, ["weights", "convert", "i3d-kinetics-400"])
    assert res.exit_code == 0, res.output
    converted = W.weights_dir() / CONVERTED
    module_sha = file_sha256(i3d_random_module)
    assert converted_source_sha256(converted) == module_sha
    assert f"sha256 {file_sha256(converted)}\n" in res.output
    assert f"sha256 {module_sha} (pinned: none)" in res.output and "UNVERIFIED" in res.output
    error = float(re.search(r"module: (\S+) of the largest logit", res.output).group(1))
    assert 0 < error <= 1e-4
    state = i3d_convert.state_dict_from(i3d_convert.read_variables(i3d_random_module), i3d_random_module)
    assert converted.read_bytes() == i3d_convert.serialise(state, module_sha)  # same module, same bytes

    coarse = torch.rand(2, 1, 3, 5, 5, generator=torch.Generator().manual_seed(5)) * 2 - 1
    vols = torch.nn.functional.interpolate(coarse, size=(10, 40, 40), mode="trilinear")
    stats = {}
    for backend in ("tensorflow", "auto"):
        fvd = get_metric("fvd", groups=1, backend=backend)
        acc = fvd.statistics_accumulator(unverified_ok=True, batch_size=2)
        acc.update(vols)
        stats[fvd.chosen_backend()] = acc.result()
    tf, pt = stats["tensorflow"], stats["torch"]
    assert tf.provenance == pt.provenance and pt.provenance["weights_sha256"] == module_sha
    tf_total, pt_total = tf.streams["video"].total(), pt.streams["video"].total()
    np.testing.assert_allclose(pt_total.mean, tf_total.mean, rtol=0, atol=1e-4 * np.abs(tf_total.mean).max())
    # with two videos the covariance is the outer product of their difference: the port sees what tells them apart
    assert np.abs(tf_total.cov).max() > 1e-6 * np.abs(tf_total.mean).max() ** 2
    np.testing.assert_allclose(pt_total.cov, tf_total.cov, rtol=0, atol=1e-3 * np.abs(tf_total.cov).max())
    with pytest.warns(UserWarning, match="only 2 samples"):
        across = get_metric("fvd", groups=1).distances(pt, tf)["fvd"]  # either backend compares with the other
    assert across.value < 1e-6 * (tf_total.mean**2).sum()


def test_converting_a_module_that_is_not_i3d_names_the_missing_variables(i3d_standin):
    W.import_weights(i3d_standin, unverified_ok=True)
    res = CliRunner().invoke(main, ["weights", "convert", "i3d-kinetics-400"])
    assert res.exit_code == 1
    line = res.output.strip()
    assert line.startswith("Error: ") and "\n" not in line and "Traceback" not in res.output
    assert "not the I3D Kinetics-400 module (230 of I3D's 230 variables missing: RGB/inception_i3d/" in line
    assert not (W.weights_dir() / CONVERTED).exists()


def test_nothing_is_written_when_the_port_does_not_reproduce_the_module(i3d_random_module, tmp_path, monkeypatch):
    monkeypatch.setattr(i3d_convert, "parity_error", lambda *args: 3e-3)
    with pytest.raises(ValueError, match=r"differs from this module by 3.00e-03 of the largest logit .*nothing"):
        i3d_convert.convert(i3d_random_module, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
