"""One plugin per breach of the contract; each is otherwise a working uniform-volume generator.

* ``PlainBlobs`` has every method but does not subclass :class:`ctbench.api.Generator`;
* ``MalformedVariants``: ``variants()`` maps a name to a number instead of a dict of overrides;
* ``NoInfo`` leaves the abstract ``info()`` unimplemented;
* ``Misnamed``: its ``name`` is not its entry point's;
* ``Crashing`` keeps the contract, but the call its ``crash_in`` config names raises (``info`` returns a dict).
"""

from __future__ import annotations

from typing import Any

import torch

from ctbench.api import Generator, GeneratorInfo


class PlainBlobs:
    name = "toy-plain"

    @classmethod
    def load(cls, checkpoint, *, variant=None, overrides=None, context=None) -> PlainBlobs:
        return cls()

    def sample(self, n: int, seed: int, *, offset: int = 0, batch_size: int | None = None) -> torch.Tensor:
        return torch.zeros(n, 1, 64, 128, 128)

    def info(self) -> GeneratorInfo:
        return GeneratorInfo(self.name, "default", "0.1.0", {}, parameters=0)


class _Uniform(Generator):
    """Every voxel 0 (soft tissue), whatever the seed."""

    def __init__(self, variant: str, config: dict[str, Any]):
        self.variant, self.config = variant, config

    @classmethod
    def load(cls, checkpoint, *, variant=None, overrides=None, context=None) -> _Uniform:
        variant = variant or cls.default_variant()
        return cls(variant, cls.resolve_config(variant, overrides))

    def sample(self, n: int, seed: int, *, offset: int = 0, batch_size: int | None = None) -> torch.Tensor:
        return torch.zeros(n, 1, 64, 128, 128)

    def info(self) -> GeneratorInfo:
        return GeneratorInfo(self.name, self.variant, "0.1.0", self.config, parameters=0)


class MalformedVariants(_Uniform):
    name = "toy-bad-variants"

    @classmethod
    def variants(cls) -> dict[str, Any]:
        return {"big": 20.0}


class NoInfo(Generator):
    name = "toy-no-info"

    @classmethod
    def load(cls, checkpoint, *, variant=None, overrides=None, context=None) -> NoInfo:
        return cls()

    def sample(self, n: int, seed: int, *, offset: int = 0, batch_size: int | None = None) -> torch.Tensor:
        return torch.zeros(n, 1, 64, 128, 128)


class Misnamed(_Uniform):
    name = "toy-other-name"


class Crashing(_Uniform):
    name = "toy-crash"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"crash_in": "sample"}

    @classmethod
    def variants(cls) -> dict[str, dict[str, Any]]:
        return {"load": {"crash_in": "load"}, "info": {"crash_in": "info"}}

    @classmethod
    def load(cls, checkpoint, *, variant=None, overrides=None, context=None) -> Crashing:
        gen = super().load(checkpoint, variant=variant, overrides=overrides, context=context)
        if gen.config["crash_in"] == "load":
            raise KeyError("weights")
        return gen

    def sample(self, n: int, seed: int, *, offset: int = 0, batch_size: int | None = None) -> torch.Tensor:
        if self.config["crash_in"] == "sample":
            raise ZeroDivisionError("float division by zero")
        return super().sample(n, seed, offset=offset, batch_size=batch_size)

    def info(self) -> GeneratorInfo:
        if self.config["crash_in"] == "info":
            return {"name": self.name}  # type: ignore[return-value]
        return super().info()
