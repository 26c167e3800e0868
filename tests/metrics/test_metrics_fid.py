"""Tri-planar FID end to end with random InceptionV3 weights (few slices per plane: ``slice_step``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ctbench.cli import main
from ctbench.data.prepared import load_manifest
from ctbench.extractors.slicing import PLANES
from ctbench.metrics import get_metric
from ctbench.metrics.base import MetricValue
from ctbench.stats import FeatureSetStats
from ctbench.weights import import_weights

STEP = 32  # 2 + 4 + 4 slices per volume instead of 64 + 128 + 128


@pytest.fixture
def fid(installed_inception):
    return get_metric("fid", groups=2, slice_step=STEP)


def _accumulate(metric, batches):
    acc = metric.statistics_accumulator(unverified_ok=True, batch_size=16)
    for vols, idx in batches:
        acc.update(vols, indices=idx)
    return acc.result()


def test_registry_and_keys():
    from ctbench.core.plugins import UnknownNameError
    from ctbench.metrics import list_metrics

    assert list_metrics()[:7] == [
        "fid", "fvd", "fid3d-medicalnet", "fid-radimagenet", "intensity", "diversity", "memorisation"
    ]
    m = get_metric("fid")
    plain = ("fid_mean", "fid_xy", "fid_xz", "fid_yz")
    kid = ("kid_xy", "kid_xz", "kid_yz")
    prdc = tuple(f"{name}_{p}" for name in ("precision", "recall", "density", "coverage") for p in (*PLANES, "mean"))
    assert m.key_names() == ("fid_mean", "kid_mean", *plain[1:], *(f"{k}_unbiased" for k in plain), *kid, *prdc)
    assert m.version == "2" and [k.direction for k in m.keys] == ["lower"] * 12 + ["higher"] * 16
    assert [k.rank for k in m.keys[:2]] == [2, 1] and all(k.rank is None for k in m.keys[2:])
    assert not [k.name for k in m.keys if k.n_independent]  # slices of a volume are clustered: KID drifts with N
    assert m.weights == ("inception-v3-compat",)
    with pytest.raises(UnknownNameError, match="Did you mean: .*fid"):
        get_metric("fdi")
    with pytest.raises(ValueError, match="metric .fid. has no option slice; its options: groups, slice_step"):
        get_metric("fid", slice="body")


def test_unverified_weights_need_the_override(fid):
    from ctbench.metrics import MetricUnavailable

    with pytest.raises(MetricUnavailable, match="unverified"):
        fid.statistics_accumulator()


@pytest.mark.timeout(600)
def test_sharded_statistics_equal_single_pass_and_score(fid, volumes):
    vols = volumes[:2]
    whole = _accumulate(fid, [(vols, [0, 1])])
    first = _accumulate(fid, [(vols[:1], [0])])
    merged = _accumulate(fid, [(vols[1:], [1])]).merge(first)
    assert merged.n_volumes == whole.n_volumes == 2
    for plane, n_slices in (("xy", 2), ("xz", 4), ("yz", 4)):
        w, m = whole.streams[plane], merged.streams[plane]
        assert w.total().count == 2 * n_slices and [g.count for g in w.groups] == [n_slices, n_slices]
        for a, b in zip(w.groups, m.groups, strict=True):
            assert a.count == b.count
            np.testing.assert_allclose(b.outer, a.outer, rtol=1e-5, atol=1e-6 * np.abs(a.outer).max())

    # both volumes against the first alone: positive on every plane, each value with N and a jackknife interval
    with pytest.warns(UserWarning, match="only 4 samples for 2048-d"):  # N < 2048 here, by design
        diff = fid.distances(whole, first)
    assert set(diff) == set(fid.key_names())
    for key in fid.key_names():
        v: MetricValue = diff[key]
        if key.split("_")[0] in ("precision", "recall", "density", "coverage"):  # 2 real rows per plane: too few
            assert v.value is None and "the real side has 2 feature rows; precision" in v.note
            continue
        assert v.value > 0 or key.endswith("_unbiased") or key.startswith("kid")  # unbiased values may be < 0
        assert v.verified is False and v.extractor == "inception-v3-compat" and len(v.weights_sha256) == 64
        assert v.interval is not None and v.interval[0] <= v.value <= v.interval[1]
        assert v.interval_method.startswith("grouped jackknife") and "not comparable" in v.note
        assert MetricValue.from_dict(v.to_dict()) == v
    assert diff["fid_xy"].n == 4 and diff["fid_xz"].n == 8 and diff["fid_mean"].n == 2
    mean = np.mean([diff[k].value for k in ("fid_xy", "fid_xz", "fid_yz")])
    assert diff["fid_mean"].value == pytest.approx(mean)
    unbiased = np.mean([diff[f"{k}_unbiased"].value for k in ("fid_xy", "fid_xz", "fid_yz")])
    assert diff["fid_mean_unbiased"].value == pytest.approx(unbiased)  # the correction is linear in the planes
    assert diff["fid_xy_unbiased"].interval_method.startswith("grouped jackknife bias correction")


def test_score_refuses_statistics_of_different_provenance(fid, installed_inception):
    from ctbench.stats import GroupedStats

    def stats_of(metric):
        streams = {p: GroupedStats(metric.dim, 1) for p in metric.streams}
        return FeatureSetStats(streams, 0, metric.provenance(metric.resolve_weights(unverified_ok=True)))

    coarse = get_metric("fid", groups=2, slice_step=64)
    with pytest.raises(ValueError, match="differ in options"):
        fid.distances(stats_of(fid), stats_of(coarse))
    other_weights = stats_of(fid)
    other_weights.provenance["weights_sha256"] = "0" * 64
    with pytest.raises(ValueError, match="differ in weights_sha256"):
        fid.distances(stats_of(fid), other_weights)


def test_bad_volume_shape_is_refused(fid):
    acc = fid.statistics_accumulator(unverified_ok=True)
    with pytest.raises(ValueError, match=r"\(N, 1, D, H, W\)"):
        acc.update(torch.zeros(2, 64, 128, 128))


def test_reference_is_cached_by_content(prepared_dir, installed_inception, monkeypatch, tmp_path):

    fid = get_metric("fid", groups=2, slice_step=32)
    n_test = len(load_manifest(prepared_dir).select("test"))
    ref = fid.reference_statistics(load_manifest(prepared_dir), "test", unverified_ok=True)
    assert ref.n_volumes == n_test and ref.streams["xy"].total().count == 2 * n_test
    fields = ref.provenance["cache_fields"]
    assert fields["manifest_sha256"] == load_manifest(prepared_dir).sha256 and fields["split"] == "test"

    # second call: served from the cache, the network is never built
    def boom(*a, **k):
        raise AssertionError("recomputed despite a cache hit")

    monkeypatch.setattr(type(fid), "build_extractor", boom)
    again = fid.reference_statistics(load_manifest(prepared_dir), "test", unverified_ok=True)
    np.testing.assert_array_equal(again.streams["yz"].groups[0].outer, ref.streams["yz"].groups[0].outer)
    # a different option is a different key: recomputation is attempted
    coarse = get_metric("fid", slice_step=64)
    with pytest.raises(AssertionError, match="recomputed"):
        coarse.reference_statistics(load_manifest(prepared_dir), "test", unverified_ok=True)
    with pytest.raises(AssertionError, match="recomputed"):
        fid.reference_statistics(load_manifest(prepared_dir), "val", unverified_ok=True)
    # so is every other provenance field: metric version, preprocessing, the weights' bytes
    for attr, value in (("version", fid.version + ".1"), ("preprocessing", fid.preprocessing + "; changed")):
        with monkeypatch.context() as m:
            m.setattr(type(fid), attr, value)
            with pytest.raises(AssertionError, match="recomputed"):
                fid.reference_statistics(load_manifest(prepared_dir), "test", unverified_ok=True)
    state = torch.load(installed_inception.path)
    state["fc.bias"] = state["fc.bias"] + 1  # a different file of the same architecture
    torch.save(state, tmp_path / "other.pth")
    other = import_weights(tmp_path / "other.pth", "inception-v3-compat", unverified_ok=True)
    assert other.sha256 != installed_inception.sha256
    with pytest.raises(AssertionError, match="recomputed"):
        fid.reference_statistics(load_manifest(prepared_dir), "test", unverified_ok=True)


def test_cli_stats_export_and_import(prepared_dir, installed_inception, tmp_path, monkeypatch, private_cache):
    import ctbench.metrics

    real_get = ctbench.metrics.get_metric
    monkeypatch.setattr(ctbench.metrics, "get_metric", lambda name: real_get(name, groups=1, slice_step=32))
    runner = CliRunner()
    res = runner.invoke(main, ["stats", str(prepared_dir), "--metric", "fid", "--export", str(tmp_path)])
    assert res.exit_code == 1 and "--unverified-weights" in res.output
    res = runner.invoke(
        main, ["stats", str(prepared_dir), "--metric", "fid", "--unverified-weights", "--export", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    assert "UNVERIFIED" in res.output and (tmp_path / "fid-test.npz").is_file()
    exported = FeatureSetStats.load(tmp_path / "fid-test.npz")
    for f in (private_cache / "stats").rglob("*.np*"):
        f.unlink()
    res = runner.invoke(main, ["stats", "--import", str(tmp_path / "fid-test.npz")])
    assert res.exit_code == 0, res.output
    cached = list((private_cache / "stats" / "fid").glob("*.npz"))
    assert len(cached) == 1 and FeatureSetStats.load(cached[0]).provenance == exported.provenance


def test_interrupted_reference_resumes_and_equals_an_uninterrupted_run(prepared_dir, installed_inception, monkeypatch):
    import ctbench.metrics.feature as feature
    from ctbench.stats import load_partial

    n_train = len(load_manifest(prepared_dir).select("train"))
    assert n_train > feature.REFERENCE_BATCH  # so there is a batch after the first
    fid = get_metric("fid", slice_step=128)  # one slice per plane and volume
    whole = fid.reference_statistics(load_manifest(prepared_dir), "train", cache=False, unverified_ok=True)

    monkeypatch.setattr(feature, "SAVE_PROGRESS_EVERY_S", 0.0)
    real_update = feature.FeatureAccumulator.update
    calls = []

    def dies_on_second_batch(self, volumes, indices=None, hu_ranges=None):
        calls.append(len(volumes))
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_update(self, volumes, indices)

    monkeypatch.setattr(feature.FeatureAccumulator, "update", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        fid.reference_statistics(load_manifest(prepared_dir), "train", unverified_ok=True)
    weights = fid.resolve_weights(unverified_ok=True)
    fields = fid.cache_fields(load_manifest(prepared_dir), "train", weights)
    assert load_partial("fid", fields).n_volumes == feature.REFERENCE_BATCH

    monkeypatch.setattr(feature.FeatureAccumulator, "update", real_update)
    resumed = fid.reference_statistics(load_manifest(prepared_dir), "train", unverified_ok=True)
    assert resumed.n_volumes == whole.n_volumes == n_train
    assert load_partial("fid", fields) is None  # finished: progress file removed
    for plane in ("xy", "xz", "yz"):
        a, b = whole.streams[plane].total(), resumed.streams[plane].total()
        assert a.count == b.count
        np.testing.assert_allclose(b.outer, a.outer, rtol=1e-5, atol=1e-6 * np.abs(a.outer).max())


def _reference_worker(rank: int, world: int, init_file: str, prepared: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        manifest = load_manifest(prepared)
        stats = get_metric("fid", slice_step=128).reference_statistics(manifest, "train", unverified_ok=True)
        stats.save(f"{out}.{rank}.npz")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(600)
def test_reference_under_torch_distributed_equals_one_process(prepared_dir, installed_inception, tmp_path):
    """Two gloo ranks split the batches, all-reduce, and both return the single-process statistics."""
    import torch.multiprocessing as mp

    from ctbench.stats import load_cached

    out = tmp_path / "ref"
    mp.spawn(_reference_worker, args=(2, str(tmp_path / "init"), str(prepared_dir), str(out)), nprocs=2)
    fid = get_metric("fid", slice_step=128)
    single = fid.reference_statistics(load_manifest(prepared_dir), "train", cache=False, unverified_ok=True)
    for rank in (0, 1):
        got = FeatureSetStats.load(f"{out}.{rank}.npz")
        assert got.n_volumes == single.n_volumes
        for plane in ("xy", "xz", "yz"):
            a, b = single.streams[plane].total(), got.streams[plane].total()
            assert a.count == b.count
            np.testing.assert_allclose(b.outer, a.outer, rtol=1e-5, atol=1e-6 * np.abs(a.outer).max())
    # rank 0 wrote the cache; this process now gets it without recomputing

    fields = fid.cache_fields(load_manifest(prepared_dir), "train", fid.resolve_weights(unverified_ok=True))
    assert load_cached("fid", fields).n_volumes == single.n_volumes
