"""2.5D FID on RadImageNet features: parity with MAISI's feature computation, the metric end to end, its weights.

MAISI's ``compute_fid_2-5d_ct.py`` (with the PyTorch port of RadImageNet's Keras ResNet50 it loads through
``torch.hub``) is re-implemented here from its description, independently of ctbench's code: a Keras-layout
ResNet-50 written out block by block, and the slicing and normalisation applied to a HU volume in RAS order.
Both run on the same random weights written by the test.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from ctbench.cli import main
from ctbench.extractors.radimagenet import RadImageNetFeatures, write_random_weights
from ctbench.metrics import get_metric
from ctbench.metrics.intensity import to_hu

NAME = "radimagenet-resnet50"
EPS = 1.001e-5


class KerasBottleneck(nn.Module):
    """Keras ResNet50 block: 1×1 (carrying the stride) → 3×3 → 1×1, all biased; projection shortcut when needed."""

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, stride), nn.BatchNorm2d(width, eps=EPS)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width, eps=EPS)
        self.conv3, self.bn3 = nn.Conv2d(width, 4 * width, 1), nn.BatchNorm2d(4 * width, eps=EPS)
        project = stride != 1 or cin != 4 * width
        self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride), nn.BatchNorm2d(4 * width, eps=EPS)) \
            if project else None

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return torch.relu(h + (x if self.downsample is None else self.downsample(x)))


class KerasResNet50(nn.Module):
    """The port's network: stem, four stages (3, 4, 6, 3 blocks), last-stage feature maps out (no pooling)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3), nn.BatchNorm2d(64, eps=EPS)
        cin = 64
        for i, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), start=1):
            stage = []
            for b in range(blocks):
                stage.append(KerasBottleneck(cin, width, stride if b == 0 else 1))
                cin = 4 * width
            setattr(self, f"layer{i}", nn.Sequential(*stage))

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def maisi_features(hu_ras: torch.Tensor, net: nn.Module, ratio: float | None) -> dict[str, torch.Tensor]:
    """MAISI's 2.5D features of one HU volume ``(1, 1, X, Y, Z)`` (RAS): clip to [-1000, 1000], grey → 3 channels,
    BGR order, per plane: (centre) slices stacked, min-max over the stack, channel means subtracted, network,
    spatial mean. Returns ``{"xy", "yz", "zx": (S, 2048)}``."""
    image = hu_ras.clamp(-1000, 1000).repeat(1, 3, 1, 1, 1)[:, [2, 1, 0]]
    out = {}
    for plane, dim in (("xy", 4), ("yz", 2), ("zx", 3)):
        n = image.shape[dim]
        part = image if ratio is None else image.narrow(dim, int((1 - ratio) / 2 * n),
                                                        int((1 + ratio) / 2 * n) - int((1 - ratio) / 2 * n))
        stack = torch.cat(torch.unbind(part, dim=dim), dim=0)
        stack = (stack - stack.min()) / (stack.max() - stack.min() + 1e-10)
        stack = stack - torch.tensor([0.406, 0.456, 0.485]).view(1, 3, 1, 1)
        with torch.no_grad():
            out[plane] = net(stack).mean(dim=(2, 3))
    return out


@pytest.fixture(scope="session")
def radimagenet_weights(tmp_path_factory) -> Path:
    """A random RadImageNet-layout ResNet-50 state dict (calibrated BatchNorm), written once per session."""
    return write_random_weights(tmp_path_factory.mktemp("radimagenet") / "random-radimagenet.pth")


@pytest.fixture
def installed(radimagenet_weights, private_cache):
    from ctbench.weights import import_weights

    return import_weights(radimagenet_weights, NAME, unverified_ok=True)


def _volumes(n: int, seed: int, shape=(8, 16, 12)) -> torch.Tensor:
    """Smooth random volumes ``(n, 1, D, H, W)`` in [-1, 1] (H != W: a transposed plane cannot pass)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 4, 8, 6, generator=g) * 2 - 1
    return nn.functional.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)


@pytest.fixture(scope="module")
def networks(radimagenet_weights) -> tuple[RadImageNetFeatures, KerasResNet50]:
    """ctbench's extractor and the re-implemented port, on the same random weights."""
    reference = KerasResNet50().eval()
    reference.load_state_dict(torch.load(radimagenet_weights, weights_only=True))
    return RadImageNetFeatures(radimagenet_weights, batch_size=7), reference


@pytest.mark.parametrize("center", [1.0, 0.4])
def test_features_equal_maisis_on_the_same_weights(networks, center):
    extractor, reference = networks
    metric = get_metric("fid-radimagenet", center_slices=center)
    vols = _volumes(2, 0)
    ours = {rows.stream: rows for rows in metric.features(extractor, vols)}
    ratio = None if center == 1.0 else center
    hu_ras = to_hu(vols, [(-1024.0, 800.0)] * 2).permute(0, 1, 4, 3, 2)  # (N, 1, x, y, z), HU within MAISI's clip
    for i in range(2):
        theirs = maisi_features(hu_ras[i : i + 1], reference, ratio)
        for plane, their_plane in (("xy", "xy"), ("xz", "zx"), ("yz", "yz")):
            mine = ours[plane].features[ours[plane].volume == i]
            assert mine.shape == theirs[their_plane].shape
            torch.testing.assert_close(mine, theirs[their_plane], rtol=1e-4, atol=1e-4)
    wide = to_hu(vols[:1], [(-1024.0, 1600.0)]).permute(0, 1, 4, 3, 2)  # MAISI clips at 1000 HU, the protocol not
    mine = ours["xy"].features[ours["xy"].volume == 0]
    assert not torch.allclose(mine, maisi_features(wide, reference, ratio)["xy"], rtol=1e-2, atol=1e-2)
    n = {"xy": 8, "xz": 16, "yz": 12}
    for plane, rows in ours.items():
        first, end = int((1 - center) / 2 * n[plane]), int((1 + center) / 2 * n[plane])
        assert rows.total == 2 * (end - first) and rows.position[: end - first].tolist() == list(range(first, end))


def test_metric_scores_both_sides_with_declared_keys(installed):
    metric = get_metric("fid-radimagenet", groups=2, slice_step=2)
    fake = metric.statistics_accumulator(unverified_ok=True)
    fake.update(_volumes(4, 1))
    real = metric.statistics_accumulator(unverified_ok=True)
    real.update(_volumes(4, 2))
    values = metric.distances(fake.result(), real.result())
    assert set(values) == set(metric.key_names())
    planes = [values[f"fid_radimagenet_{p}"] for p in ("xy", "xz", "yz")]
    assert [v.n for v in planes] == [16, 32, 24]  # 4 volumes × every 2nd of 8, 16, 12 slices
    assert values["fid_radimagenet_mean"].n == 4
    assert values["fid_radimagenet_mean"].value == pytest.approx(sum(v.value for v in planes) / 3)
    for key, v in values.items():
        assert v.value is not None and math.isfinite(v.value) and v.interval is not None, key
        assert v.extractor == NAME and v.verified is False
    assert values["fid_radimagenet_xy"].rank_deficient  # 16 slices < 2048 dimensions
    assert fake.result().provenance["preprocessing"].startswith("maisi-2.5d")
    assert fake.result().provenance["options"]["center_slices"] == 1.0


def test_declaration_drives_ls_and_the_leaderboard(private_cache, radimagenet_weights):
    from ctbench.leaderboard.columns import glossary
    from ctbench.metrics import list_metrics

    metric = get_metric("fid-radimagenet")
    assert "fid-radimagenet" in list_metrics() and metric.weights == (NAME,)
    planes = ("xy", "xz", "yz")
    assert metric.key_names() == (
        "fid_radimagenet_mean", "kid_radimagenet_mean", *(f"fid_radimagenet_{p}" for p in planes),
        *(f"fid_radimagenet_{p}_unbiased" for p in ("mean", *planes)), *(f"kid_radimagenet_{p}" for p in planes))
    assert all(k.direction == "lower" and k.rank is None for k in metric.keys)
    assert not [k.name for k in metric.keys if k.n_independent]  # slices are clustered in volumes
    assert "lower is better" in glossary("fid_radimagenet_xy") and "RadImageNet" in glossary("fid_radimagenet_xy")
    with pytest.raises(ValueError, match="center_slices must be in"):
        get_metric("fid-radimagenet", center_slices=0)

    def ls_status() -> str:
        res = CliRunner().invoke(main, ["ls", "--json"])
        assert res.exit_code == 0, res.output
        return next(m["status"] for m in json.loads(res.output)["metrics"] if m["name"] == "fid-radimagenet")

    assert ls_status().startswith("unavailable: radimagenet-resnet50 weights missing")
    assert f"ctbench weights fetch {NAME}" in ls_status()
    assert CliRunner().invoke(main, ["weights", "import", str(radimagenet_weights), "--name", NAME,
                                     "--unverified-weights"]).exit_code == 0
    assert "pins no hash" in ls_status()  # unpinned: usable only with --unverified-weights
    status = CliRunner().invoke(main, ["weights", "status"]).output
    assert f"{NAME:22s} unpinned" in status


@pytest.mark.parametrize("unverified", [False, True])
def test_import_of_another_network_is_refused_and_writes_nothing(inception_weights, private_cache, unverified):
    from ctbench.weights import weights_dir

    args = ["weights", "import", str(inception_weights), "--name", NAME] + (["--unverified-weights"] * unverified)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1
    assert res.output.startswith(f"Error: {inception_weights}: not RadImageNet ResNet-50 weights")
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not (weights_dir() / "RadImageNet-ResNet50_notop.pth").exists()


def test_import_of_a_file_that_is_no_state_dict_is_refused(tmp_path, private_cache):
    page = tmp_path / "RadImageNet-ResNet50_notop.pth"
    page.write_text("<html>Google Drive can't scan this file for viruses</html>")
    res = CliRunner().invoke(main, ["weights", "import", str(page), "--unverified-weights"])
    assert res.exit_code == 1 and res.output.startswith(f"Error: {page}: not a PyTorch state dict")


@pytest.fixture
def served(tmp_path):
    """A local HTTP server standing in for the weights' host (pooch's real download path, no internet)."""
    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_installs_the_network_and_removes_a_download_that_is_not_it(radimagenet_weights, served, monkeypatch,
                                                                          private_cache):
    import dataclasses
    import shutil

    from ctbench import weights as W

    root, url = served
    shutil.copy(radimagenet_weights, root / "good.pth")
    (root / "page.html").write_text("<html>virus scan warning</html>")
    spec = W.WEIGHTS[NAME]
    monkeypatch.setitem(W.WEIGHTS, NAME, dataclasses.replace(spec, url=f"{url}/page.html"))
    res = CliRunner().invoke(main, ["weights", "fetch", NAME])
    assert res.exit_code == 1 and "is not usable (removed)" in res.output and "not a PyTorch state dict" in res.output
    assert W.locate(NAME) is None
    monkeypatch.setitem(W.WEIGHTS, NAME, dataclasses.replace(spec, url=f"{url}/good.pth"))
    res = CliRunner().invoke(main, ["weights", "fetch", NAME])
    assert res.exit_code == 0 and "UNPINNED" in res.output, res.output
    assert W.resolve(NAME, unverified_ok=True).path == W.weights_dir() / spec.filename


def test_metrics_option_misspelt_twice_or_without_weights_fails_before_work(private_cache):
    from ctbench.evaluate.options import EvalOptions, EvaluationError
    from ctbench.evaluate.run import plan_metrics

    def opts(*names: str) -> EvalOptions:
        return EvalOptions(data="unused", generator="noise", metrics=list(names))

    with pytest.raises(EvaluationError, match="Did you mean: fid-radimagenet"):
        plan_metrics(opts("fid-radimagnet"))
    with pytest.raises(EvaluationError, match="--metrics names fid-radimagenet more than once"):
        opts("fid-radimagenet", "intensity", "fid-radimagenet").check()
    missing = f"'fid-radimagenet' was requested but cannot run: {NAME} weights missing"
    with pytest.raises(EvaluationError, match=missing):
        plan_metrics(opts("fid-radimagenet"))
    run, skipped = plan_metrics(EvalOptions(data="unused", generator="noise"))
    assert "fid-radimagenet" not in run and f"ctbench weights fetch {NAME}" in skipped["fid-radimagenet"]
