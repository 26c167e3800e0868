"""The ``ctbench`` command line: a thin click group; each sub-module owns one family of commands.

Command modules are imported lazily, so ``ctbench --help`` stays fast and a broken optional
dependency (TensorFlow, say) only affects the commands that need it.
"""

from __future__ import annotations

import importlib

import click

from ctbench import __version__

# command name -> (module, attribute); each module owns its commands and their help text.
_COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("ctbench.cli.data", "data"),
    "stats": ("ctbench.cli.metrics", "stats"),
    "weights": ("ctbench.cli.metrics", "weights"),
    "train": ("ctbench.cli.train", "train"),
    "evaluate": ("ctbench.cli.evaluate", "evaluate"),
    "ls": ("ctbench.cli.evaluate", "ls"),
    "leaderboard": ("ctbench.cli.leaderboard", "leaderboard"),
    "demo": ("ctbench.cli.demo", "demo"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attr = _COMMANDS[name]
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="ctbench")
def main() -> None:
    """ctbench: benchmark 3D CT generators on the FLARE22 protocol (tri-planar FID, FVD, leaderboard)."""
