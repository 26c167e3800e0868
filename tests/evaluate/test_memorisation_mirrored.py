"""The memorisation audit of a generator trained with left-right flips also compares with mirrored training scans."""

from __future__ import annotations

import pytest

from ctbench.data.dataset import PreparedDataset
from ctbench.data.prepared import load_manifest
from ctbench.metrics.contract import RunContext
from ctbench.metrics.memorisation import Memorisation
from ctbench.protocol import DEFAULT_PROTOCOL


def test_mirrored_training_indexes_the_mirror_images(prepared_dir):
    manifest = load_manifest(prepared_dir)
    plain = Memorisation().train_index(RunContext(manifest=manifest, protocol=DEFAULT_PROTOCOL, cache=False))
    mirrored = Memorisation().train_index(
        RunContext(manifest=manifest, protocol=DEFAULT_PROTOCOL, cache=False, mirrored_training=True)
    )
    n = len(plain.ids)
    assert mirrored.ids[:n] == plain.ids and mirrored.ids[n:] == [f"{i} (mirrored)" for i in plain.ids]
    first = PreparedDataset(prepared_dir, "train")[0][None]  # (1, 1, D, H, W), the split's first case
    copy_of_mirror = first.flip(-1)
    score, index = mirrored.nearest(copy_of_mirror)
    assert mirrored.ids[int(index)] == f"{plain.ids[0]} (mirrored)" and float(score) == pytest.approx(1.0, abs=1e-6)
    assert float(plain.nearest(copy_of_mirror)[0]) < float(score)  # the plain index misses the mirrored copy
