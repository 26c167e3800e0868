"""``toy-blobs``: body ellipse (value ``body``) in air (-1) with a sphere of value 0.8 placed by sample i's stream."""

from __future__ import annotations

from typing import Any

import torch

from ctbench.api import Generator, GeneratorInfo
from ctbench.seeding import sample_generator


class ToyBlobs(Generator):
    name = "toy-blobs"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"radius": 8.0, "body": -0.1}

    @classmethod
    def variants(cls) -> dict[str, dict[str, Any]]:
        return {"big": {"radius": 20.0}}

    def __init__(self, variant: str, config: dict[str, Any], overrides: dict[str, Any]):
        self.variant, self.config, self.overrides = variant, config, overrides

    @classmethod
    def load(cls, checkpoint, *, variant=None, overrides=None, context=None) -> ToyBlobs:
        variant = variant or cls.default_variant()
        return cls(variant, cls.resolve_config(variant, overrides), overrides or {})

    def sample(self, n: int, seed: int, *, offset: int = 0, batch_size: int | None = None) -> torch.Tensor:
        z, y, x = torch.meshgrid(torch.arange(64.0), torch.arange(128.0), torch.arange(128.0), indexing="ij")
        body = ((x - 64) / 50) ** 2 + ((y - 64) / 40) ** 2 < 1
        out = torch.full((n, 1, 64, 128, 128), -1.0)
        for k, i in enumerate(range(offset, offset + n)):
            c = torch.rand(3, generator=sample_generator(seed, i)) * torch.tensor([32.0, 40.0, 60.0]) + torch.tensor(
                [16.0, 44.0, 34.0]
            )
            blob = ((z - c[0]) * 3) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < self.config["radius"] ** 2
            out[k, 0][body] = self.config["body"]
            out[k, 0][blob & body] = 0.8
        return out

    def info(self) -> GeneratorInfo:
        return GeneratorInfo(self.name, self.variant, "0.3.0", self.config, parameters=0, overrides=self.overrides)
