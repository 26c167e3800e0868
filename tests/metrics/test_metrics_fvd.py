"""FVD end to end with a tiny stand-in SavedModel that has I3D's signature, loaded by path and by handle."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from ctbench.metrics import MetricUnavailable, get_metric
from ctbench.weights import import_weights, resolve, tfhub_module_dir
from ctbench.weights_catalog import I3D_HANDLE

pytestmark = pytest.mark.requires_tensorflow


def test_standin_loads_by_path_and_through_tfhub_cache_with_the_real_handle(i3d_standin, volumes, private_cache):
    from ctbench.extractors.i3d import I3DFeatures

    by_path = I3DFeatures(i3d_standin, batch_size=2)(volumes)
    assert by_path.shape == (3, 400) and by_path.dtype == torch.float32
    cached = tfhub_module_dir(I3D_HANDLE)
    assert cached.is_relative_to(private_cache)  # TFHUB_CACHE_DIR points into the test's private cache
    shutil.copytree(i3d_standin, cached)
    by_handle = I3DFeatures(I3D_HANDLE, batch_size=3)(volumes)  # no network: tensorflow_hub finds the cache
    torch.testing.assert_close(by_handle, by_path, rtol=1e-5, atol=1e-6)
    # and the metric finds it there too, loading it through the handle
    r = resolve("i3d-kinetics-400", unverified_ok=True)
    assert r.path == cached and not r.verified


def test_fvd_needs_override_while_unpinned(i3d_standin):
    with pytest.raises(ValueError, match="no hash is pinned"):
        import_weights(i3d_standin)
    import_weights(i3d_standin, unverified_ok=True)
    with pytest.raises(MetricUnavailable, match="pins no hash"):
        get_metric("fvd").check_ready()


def test_fvd_score_sharding_and_interval(i3d_standin, volumes):
    import_weights(i3d_standin, unverified_ok=True)
    fvd = get_metric("fvd", groups=3)
    assert fvd.key_names() == ("fvd", "fvd_unbiased", "kvd") and [k.direction for k in fvd.keys] == ["lower"] * 3
    real_vols = torch.cat([volumes, volumes.flip(3)])  # 6 volumes
    fake_vols = (real_vols * 0.7).clamp(-1, 1)

    def acc_of(batches):
        acc = fvd.statistics_accumulator(unverified_ok=True, batch_size=2)
        for vols, idx in batches:
            acc.update(vols, indices=idx)
        return acc.result()

    real = acc_of([(real_vols, range(6))])
    fake = acc_of([(fake_vols[:4], range(4))]).merge(acc_of([(fake_vols[4:], range(4, 6))]))
    fake_whole = acc_of([(fake_vols, range(6))])
    for a, b in zip(fake.streams["video"].groups, fake_whole.streams["video"].groups, strict=True):
        assert a.count == b.count == 2
        np.testing.assert_allclose(a.outer, b.outer, rtol=1e-5)
    with pytest.warns(UserWarning, match="only 6 samples for 400-d"):
        same = fvd.distances(real, real)["fvd"]
    with pytest.warns(UserWarning, match="only 6 samples for 400-d"):
        diff = fvd.distances(fake, real)["fvd"]
    assert same.value < 1e-6 * diff.value
    assert diff.n == 6 and diff.extractor == "i3d-kinetics-400" and diff.verified is False
    assert diff.interval is not None and diff.interval[0] <= diff.value <= diff.interval[1]
