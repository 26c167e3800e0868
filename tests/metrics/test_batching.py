"""Out-of-memory on the device: the batch size halves, the run continues, said once (both feature networks)."""

from __future__ import annotations

import warnings

import pytest
import torch

from ctbench.extractors.batching import halving_on_oom


def test_out_of_memory_halves_the_batch_once_said_and_the_run_continues():
    batch = torch.arange(11.0)[:, None]
    seen = []

    def run(chunk):
        seen.append(len(chunk))
        if len(chunk) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return chunk * 2

    with pytest.warns(UserWarning, match="I3D: out of device memory with 8 videos per batch; halving") as record:
        out, size = halving_on_oom(run, batch, 8, "I3D", "videos")
    assert len(record) == 1 and size == 2 and seen[:3] == [8, 4, 2]
    torch.testing.assert_close(torch.cat(out), batch * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the next call starts at the size that fitted, silently
        assert halving_on_oom(run, batch, size, "I3D", "videos")[1] == 2
    with pytest.raises(torch.OutOfMemoryError):
        halving_on_oom(lambda chunk: (_ for _ in ()).throw(torch.OutOfMemoryError("still")), batch, 1, "I3D", "videos")


def test_inception_keeps_the_halved_batch(inception_weights, monkeypatch):
    from ctbench.extractors.inception import InceptionFeatures

    extractor = InceptionFeatures(inception_weights, batch_size=4)
    sizes = []

    def forward(x):
        sizes.append(len(x))
        if len(x) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return torch.full((1, 2048), float(x.mean()))

    monkeypatch.setattr(extractor, "_forward", forward)
    images = torch.arange(3, dtype=torch.uint8)[:, None, None, None].expand(3, 1, 8, 8) * 50
    with pytest.warns(UserWarning, match="inception-v3-compat: out of device memory with 4 slices per batch"):
        features = extractor(images)
    assert features.shape == (3, 2048) and extractor.batch_size == 1 and sizes == [3, 2, 1, 1, 1]
    assert features[:, 0].unique().numel() == 3  # every slice, in order, once
