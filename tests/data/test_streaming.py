"""Prepared cases in batches: reading ahead in threads changes nothing but the timing; errors still name the file."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

from ctbench.data.prepared import load_manifest, read_volume
from ctbench.data.streaming import case_batches


def test_threaded_read_ahead_gives_the_same_batches_in_order(prepared_dir):
    cases = sorted((c for split in ("train", "val", "test") for c in load_manifest(prepared_dir).select(split)),
                   key=lambda c: c.id)
    serial = list(case_batches(cases, batch=3, workers=0))
    threaded = list(case_batches(cases, batch=3, workers=2, pin_memory=True, start=0))
    assert [b[0] for b in threaded] == [range(0, 3), range(3, 6), range(6, 8)]
    for (i0, c0, v0), (i1, c1, v1) in zip(serial, threaded, strict=True):
        assert i0 == i1 and [c.id for c in c0] == [c.id for c in c1]
        assert torch.equal(v0, v1) and v1.shape[1] == 1
    torch.testing.assert_close(threaded[1][2][2, 0], torch.from_numpy(read_volume(cases[5].path)))
    assert list(case_batches(cases, start=8)) == []


def test_a_broken_volume_read_ahead_fails_with_its_path(prepared_dir, tmp_path):
    cases = load_manifest(prepared_dir).select("train")[:3]
    broken = tmp_path / "broken.nii.gz"
    shutil.copy(cases[2].path, broken)
    broken.write_bytes(broken.read_bytes()[:2000])  # truncated gzip
    cases = [*cases[:2], dataclasses.replace(cases[2], path=broken)]
    batches = case_batches(cases, batch=2, workers=2)
    assert next(batches)[0] == range(0, 2)  # the broken one is already being read; its error waits for its batch
    with pytest.raises(ValueError, match="broken.nii.gz"):
        next(batches)
