"""3D FID on MedicalNet features: parity with the anchors' feature computation (HA-GAN, WDM-3D) on random weights
written in the published file's layout, MONAI's own loader, the metric end to end, and bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from ctbench import weights as W
from ctbench.cli import main
from ctbench.metrics import METRICS, MetricUnavailable, get_metric

pytest.importorskip("monai")

NAME = "medicalnet-resnet50-23"
STAGES = ((3, 64, 1, 1), (4, 128, 2, 1), (6, 256, 1, 2), (3, 512, 1, 4))
"""MedicalNet's ResNet-50 stages: (blocks, planes, stride, dilation)."""


def _anchor_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of MedicalNet's ResNet-50 backbone (the published file's keys without ``module.``)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 1, 7, 7, 7)}
    bn = {"bn1": 64}
    inplanes = 64
    for i, (blocks, planes, _, _) in enumerate(STAGES, 1):
        for b in range(blocks):
            p = f"layer{i}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1, 1)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3, 3)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1, 1)
            bn.update({f"{p}.bn1": planes, f"{p}.bn2": planes, f"{p}.bn3": planes * 4})
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1, 1)
                bn[f"{p}.downsample.1"] = planes * 4
            inplanes = planes * 4
    for p, c in bn.items():
        shapes.update({f"{p}.{t}": (c,) for t in ("weight", "bias", "running_mean", "running_var")})
    return shapes


def anchor_features(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The anchors' feature computation: MedicalNet's ResNet-50 (conv1 stride 2; layer3/layer4 stride 1, dilated 2
    and 4) in eval mode, then ``AdaptiveAvgPool3d(1)`` and flatten, written out with torch.nn.functional."""

    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(t, state[f"{p}.running_mean"], state[f"{p}.running_var"], state[f"{p}.weight"],
                            state[f"{p}.bias"], training=False, eps=1e-5)

    x = F.relu(bn(F.conv3d(x, state["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool3d(x, kernel_size=3, stride=2, padding=1)
    for i, (blocks, _, stride, dilation) in enumerate(STAGES, 1):
        for b in range(blocks):
            p, s = f"layer{i}.{b}", stride if b == 0 else 1
            out = F.relu(bn(F.conv3d(x, state[f"{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.relu(bn(F.conv3d(out, state[f"{p}.conv2.weight"], stride=s, padding=dilation, dilation=dilation),
                            f"{p}.bn2"))
            out = bn(F.conv3d(out, state[f"{p}.conv3.weight"]), f"{p}.bn3")
            shortcut = x if b else bn(F.conv3d(x, state[f"{p}.downsample.0.weight"], stride=s), f"{p}.downsample.1")
            x = F.relu(out + shortcut)
    return F.adaptive_avg_pool3d(x, 1).flatten(1)


@pytest.fixture(scope="session")
def anchor_state() -> dict[str, torch.Tensor]:
    """Seeded random MedicalNet ResNet-50 weights: He-scaled convolutions, batch norms with random statistics."""
    g = torch.Generator().manual_seed(23)
    state = {}
    for key, shape in _anchor_shapes().items():
        if key.endswith(".running_var"):
            t = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(".running_mean") or key.endswith(".bias"):
            t = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1:  # batch-norm scale: small on each block's last norm, so the residual sum stays tame
            t = torch.rand(shape, generator=g) * (0.3 if ".bn3." in key + "." else 1.0) + 0.2
        else:
            fan_in = shape[1] * shape[2] * shape[3] * shape[4]
            t = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        state[key] = t
    return state


@pytest.fixture(scope="session")
def medicalnet_file(anchor_state, tmp_path_factory) -> Path:
    """The random weights in the published file's layout: ``{"state_dict": {"module.conv1.weight": ...}}`` (no
    batch-norm counters, as PyTorch 0.4 wrote them)."""
    path = tmp_path_factory.mktemp("medicalnet") / "resnet_50_23dataset.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in anchor_state.items()}}, path)
    return path


@pytest.fixture(scope="session")
def small_volumes() -> torch.Tensor:
    """Three smooth random volumes ``(3, 1, 16, 32, 32)`` in [-1, 1], the first two axial slices pure air."""
    g = torch.Generator().manual_seed(5)
    v = F.interpolate(torch.rand(3, 1, 4, 8, 8, generator=g) * 2 - 1, size=(16, 32, 32), mode="trilinear")
    v[:, :, :2] = -1.0
    return v


@pytest.mark.parametrize(("input_range", "anchor_input"), [
    ("unit", lambda v: (v + 1) / 2),  # WDM-3D: volumes in [0, 1] (generated: (x + 1) / 2)
    ("signed", lambda v: v),  # HA-GAN: generator output / preprocessed CT in [-1, 1], unchanged
])
def test_features_equal_the_anchors_on_the_same_weights(input_range, anchor_input, anchor_state, medicalnet_file,
                                                        small_volumes):
    from ctbench.extractors.medicalnet import MedicalNetFeatures

    extractor = MedicalNetFeatures(medicalnet_file, input_range, batch_size=3)
    ours = extractor(small_volumes)
    with torch.inference_mode():
        theirs = anchor_features(anchor_state, anchor_input(small_volumes))
    assert ours.shape == (3, 2048) and ours.dtype == torch.float32
    assert theirs.std(0).mean() > 1e-3 * theirs.abs().mean()  # the random network tells volumes apart
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))
    extractor.batch_size = 1
    torch.testing.assert_close(extractor(small_volumes), ours, rtol=1e-5, atol=1e-5 * float(ours.abs().max()))


def test_monai_loads_the_published_layout_and_needs_the_dilation(anchor_state, medicalnet_file, small_volumes,
                                                                 monkeypatch):
    """MONAI's own MedicalNet loader (its Hugging Face download stood in by the test file) gives the same tensors;
    MONAI's ResNet without MedicalNet's dilated layer3/layer4 computes other features from them."""
    import monai.networks.nets.resnet as monai_resnet

    from ctbench.extractors.medicalnet import dilate_like_medicalnet, load_network

    asked = []
    monkeypatch.setattr(monai_resnet, "hf_hub_download",
                        lambda repo_id, filename: asked.append((repo_id, filename)) or str(medicalnet_file))
    theirs = monai_resnet.resnet50(pretrained=True, spatial_dims=3, n_input_channels=1, conv1_t_stride=2,
                                   shortcut_type="B", bias_downsample=False, feed_forward=False).eval()
    assert asked == [("TencentMedicalNet/MedicalNet-Resnet50", "resnet_50_23dataset.pth")]
    assert W.WEIGHTS[NAME].url.endswith("TencentMedicalNet/MedicalNet-Resnet50/resolve/main/resnet_50_23dataset.pth")
    ours = load_network(medicalnet_file)
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(value, theirs.state_dict()[key], rtol=0, atol=0)
    x = (small_volumes + 1) / 2
    with torch.inference_mode():
        undilated, dilated = theirs(x), dilate_like_medicalnet(theirs)(x)
        torch.testing.assert_close(dilated, anchor_features(anchor_state, x), rtol=1e-4,
                                   atol=1e-5 * float(dilated.abs().max()))
    assert (undilated - dilated).norm() > 0.05 * dilated.norm()


def test_metric_end_to_end(medicalnet_file, small_volumes):
    W.import_weights(medicalnet_file, NAME, unverified_ok=True)
    m = get_metric("fid3d-medicalnet", groups=2)
    assert m.key_names() == ("fid3d_medicalnet", "fid3d_medicalnet_unbiased", "kid3d_medicalnet")
    real_vols = small_volumes[:, :, ::2, ::2, ::2]  # (3, 1, 8, 16, 16): one axial slice in 8 is air
    real_vols = torch.cat([real_vols, real_vols.flip(4)])  # 6 volumes
    fake_vols = real_vols.clone()
    fake_vols[:, :, 1:] = fake_vols[:, :, 1:] * 0.5 - 0.3

    def stats_of(vols, indices):
        acc = m.statistics_accumulator(unverified_ok=True, batch_size=4)
        acc.update(vols, indices=indices)
        return acc.result()

    real = stats_of(real_vols, range(6))
    fake = stats_of(fake_vols[:4], range(4)).merge(stats_of(fake_vols[4:], range(4, 6)))  # two shards
    assert [g.count for g in fake.streams["volume"].groups] == [3, 3]
    with pytest.warns(UserWarning, match="only 6 samples for 2048-d"):
        diff = m.distances(fake, real)
    assert set(diff) == set(m.key_names())
    v = diff["fid3d_medicalnet"]
    assert v.value > 0 and v.n == 6 and v.extractor == "medicalnet-resnet50-23" and v.verified is False
    assert v.rank_deficient and "2048 feature dimensions" in v.note
    assert v.interval is not None and v.interval[0] <= v.value <= v.interval[1]
    assert diff["fid3d_medicalnet_unbiased"].value is not None
    assert v.padding == {"generated": 0.125, "real": 0.125}
    kid = diff["kid3d_medicalnet"]
    assert kid.n == 6 and kid.value > 0
    assert real.provenance["options"]["input_range"] == "unit"
    signed = get_metric("fid3d-medicalnet", input_range="signed")
    assert signed.options() != m.options() and "[-1,1] unchanged" in signed.preprocessing


def test_keys_direction_and_ls_state(medicalnet_file):
    assert [(k.name, k.direction) for k in METRICS.get("fid3d-medicalnet").keys] == [
        ("fid3d_medicalnet", "lower"), ("fid3d_medicalnet_unbiased", "lower"), ("kid3d_medicalnet", "lower")]
    assert METRICS.metric_of("kid3d_medicalnet") == "fid3d-medicalnet" and METRICS.key("kid3d_medicalnet").n_independent
    from ctbench.leaderboard.columns import glossary, lower_is_better, n_independent

    assert all(lower_is_better(k) for k in ("fid3d_medicalnet", "fid3d_medicalnet_unbiased", "kid3d_medicalnet"))
    assert glossary("fid3d_medicalnet").startswith("`fid3d_medicalnet` (↓ lower is better)")
    assert n_independent("kid3d_medicalnet") and not n_independent("fid3d_medicalnet")
    res = CliRunner().invoke(main, ["ls"])
    line = next(ln for ln in res.output.splitlines() if ln.strip().startswith("fid3d-medicalnet"))
    assert "unavailable: medicalnet-resnet50-23 weights missing" in line
    W.import_weights(medicalnet_file, NAME, unverified_ok=True)
    res = CliRunner().invoke(main, ["ls"])
    line = next(ln for ln in res.output.splitlines() if ln.strip().startswith("fid3d-medicalnet"))
    assert "pins no hash for it yet" in line  # present, unpinned: usable with --unverified-weights


def test_unavailable_without_monai_names_the_install_command(medicalnet_file, monkeypatch):
    from ctbench.extractors.medicalnet import build_network

    W.import_weights(medicalnet_file, NAME, unverified_ok=True)
    for module in ("monai", "monai.networks"):  # as if not installed
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MetricUnavailable, match=r"pip install 'ctbench\[medicalnet\]'"):
        get_metric("fid3d-medicalnet").check_ready(unverified_ok=True)
    with pytest.raises(MetricUnavailable, match=r"needs monai .*pip install 'ctbench\[medicalnet\]'"):
        build_network()


def test_missing_weights_name_the_file_and_both_commands(private_cache):
    with pytest.raises(MetricUnavailable) as err:
        get_metric("fid3d-medicalnet").check_ready(unverified_ok=True)
    msg = str(err.value)
    assert "resnet_50_23dataset.pth" in msg and str(private_cache / "weights") in msg
    assert f"ctbench weights fetch {NAME}" in msg and f"ctbench weights import PATH --name {NAME}" in msg


@pytest.fixture
def resnet50_2d_file(tmp_path) -> Path:
    """Another network's weights in the same layout: torchvision's 2D ResNet-50 (RadImageNet's architecture)."""
    from torchvision.models import resnet50

    path = tmp_path / "resnet_50_23dataset.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet50().state_dict().items()}}, path)
    return path


def test_import_of_another_network_under_the_name_is_refused_and_writes_nothing(resnet50_2d_file):
    with pytest.raises(ValueError, match=f"{resnet50_2d_file}: not MedicalNet ResNet-50 weights: .*wrong-shaped"):
        W.import_weights(resnet50_2d_file, NAME, unverified_ok=True)
    res = CliRunner().invoke(main, ["weights", "import", str(resnet50_2d_file), "--unverified-weights"])
    assert res.exit_code == 1 and "Traceback" not in res.output  # the file name says which weights it claims to be
    assert res.output.count("Error:") == 1 and "not MedicalNet ResNet-50 weights" in res.output
    assert not (W.weights_dir() / "resnet_50_23dataset.pth").exists()
    torch.save({"model": {}}, resnet50_2d_file)
    with pytest.raises(ValueError, match="not a MedicalNet weights file"):
        W.import_weights(resnet50_2d_file, NAME, unverified_ok=True)


def test_fetch_of_another_network_is_deleted(resnet50_2d_file, monkeypatch):
    import shutil

    import pooch

    def download(url, known_hash, fname, path, progressbar):  # the Hugging Face host stood in: serves a wrong file
        assert url == W.WEIGHTS[NAME].url and known_hash is None  # unpinned
        Path(path).mkdir(parents=True, exist_ok=True)
        return shutil.copy(resnet50_2d_file, Path(path) / fname)

    monkeypatch.setattr(pooch, "retrieve", download)
    with pytest.raises(ValueError, match="not MedicalNet ResNet-50 weights"):
        W.fetch(NAME, progress=False)
    assert not (W.weights_dir() / "resnet_50_23dataset.pth").exists()
