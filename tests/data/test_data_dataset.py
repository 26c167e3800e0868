"""PreparedDataset: split contents, item format, seeded flip augmentation (off by default), lazy per-item reads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ctbench.data import dataset as dataset_module
from ctbench.data.dataset import PreparedDataset
from ctbench.data.prepared import cases, load_manifest, read_volume
from ctbench.protocol import FLARE22_V1


def test_splits_partition_the_cases(prepared_dir):
    ids = {s: [c.id for c in PreparedDataset(prepared_dir, s).cases] for s in ("train", "val", "test")}
    assert sum(len(v) for v in ids.values()) == 8 and all(ids.values())
    assert len(set(sum(ids.values(), []))) == 8
    assert len(PreparedDataset(prepared_dir, None)) == 8


def test_items_are_the_files_in_the_batch_convention(prepared_dir):
    ds = PreparedDataset(prepared_dir, "train")
    x = ds[1]
    assert x.shape == (1, 64, 128, 128) and x.dtype == torch.float32
    assert torch.equal(x[0], torch.from_numpy(read_volume(cases(prepared_dir, "train")[1].path)))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch.shape == (2, 1, 64, 128, 128)


def test_flip_only_when_asked_and_seeded(prepared_dir):
    plain = PreparedDataset(prepared_dir, "val")
    aug = PreparedDataset(prepared_dir, "val", flip_probability=0.5)
    x = plain[0]
    torch.manual_seed(0)
    assert all(torch.equal(plain[0], x) for _ in range(5))

    x_np = x.numpy()
    mirrored = x_np[..., ::-1]

    def draws(seed: int) -> list[bool]:
        torch.manual_seed(seed)
        out = []
        for _ in range(40):
            y = aug[0].numpy()
            flipped = bool(np.array_equal(y, mirrored))
            assert flipped or np.array_equal(y, x_np)  # the flip is left-right (W, patient x), nothing else
            out.append(flipped)
        return out

    first = draws(1)
    assert first == draws(1)  # torch's RNG decides: same seed, same flips
    assert 10 <= sum(first) <= 30  # p = 0.5 (deterministic for this seed)


def test_reads_one_file_per_item_and_none_up_front(prepared_dir, monkeypatch):
    calls = []
    real = dataset_module.read_volume
    monkeypatch.setattr(dataset_module, "read_volume", lambda p: calls.append(p) or real(p))
    ds = PreparedDataset(prepared_dir, "train")
    assert calls == []
    ds[3]
    assert calls == [ds.cases[3].path]


def test_refuses_other_protocol_and_bad_split(prepared_dir):
    other = dataclasses.replace(FLARE22_V1, clip_percentiles=(0.5, 99.5))
    with pytest.raises(ValueError, match="different parameters"):
        PreparedDataset(prepared_dir, "train", protocol=other)
    with pytest.raises(ValueError, match="unknown split"):
        cases(prepared_dir, "training")
    with pytest.raises(FileNotFoundError, match="no manifest"):
        PreparedDataset(prepared_dir / "volumes")


def test_a_folder_prepared_under_1_0_0_stays_valid(prepared_dir):
    """1.1.0 only took the training flip out of the protocol: the preparation parameters decide, not the version."""
    manifest = load_manifest(prepared_dir)
    old = {**FLARE22_V1.to_dict(), "version": "1.0.0", "flip_probability": 0.5}
    dataclasses.replace(manifest, protocol=old).check_protocol(FLARE22_V1)  # accepted
    moved = {**old, "clip_percentiles": [0.5, 99.5]}
    with pytest.raises(ValueError, match="prepared under protocol flare22-v1 1.0.0 with different parameters"):
        dataclasses.replace(manifest, protocol=moved).check_protocol(FLARE22_V1)
    with pytest.raises(ValueError, match=r"flip_probability must be in \[0, 1\]"):
        PreparedDataset(prepared_dir, "train", flip_probability=1.5)


def test_flips_in_dataloader_workers_follow_the_main_seed(prepared_dir):
    ds = PreparedDataset(prepared_dir, "train", flip_probability=0.5)
    refs = [plain.numpy() for plain in PreparedDataset(prepared_dir, "train")]

    def flips(seed: int) -> list[bool]:
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, multiprocessing_context="fork")
        return [not np.array_equal(x[0].numpy(), ref) for x, ref in zip(loader, refs, strict=True)]

    assert flips(5) == flips(5)  # same main-process seed, same flips in the workers
    assert flips(5) != flips(4) and any(flips(5)) and not all(flips(5))
