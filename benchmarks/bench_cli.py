"""Start-up time of ``ctbench --help`` and of every sub-command's ``--help`` (target: under 0.5 s each).

Each command runs in a fresh interpreter, ``--repeats`` times; the median wall time is printed beside two
floors measured in the same run: a bare interpreter importing click (what any click CLI pays) and the
imports a command pays once it runs (torch through ``ctbench.api``, the metrics through
``ctbench.evaluate.run``). ``-X importtime`` then names the heaviest module each ``--help`` imports (outside
ctbench itself).

    python benchmarks/bench_cli.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = (
    (),
    ("ls",),
    ("evaluate",),
    ("demo",),
    ("train",),
    ("data",),
    ("data", "synth"),
    ("data", "prepare"),
    ("data", "info"),
    ("stats",),
    ("weights",),
    ("weights", "fetch"),
    ("leaderboard", "build"),
)
RUN_CLI = "import sys; from ctbench.cli import main; sys.argv[0] = 'ctbench'; main()"


def _wall(code: str, args: tuple[str, ...], repeats: int) -> float:
    """Median seconds of ``python -c code args...`` in fresh interpreters."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def heaviest_import(code: str, args: tuple[str, ...]) -> tuple[str, float]:
    """(module, cumulative seconds) of the slowest import ``python -X importtime -c code args`` makes.

    ctbench's own packages (which only contain the others) and the interpreter's start-up (``site``) are left out.
    """
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args], check=True, capture_output=True, text=True
    ).stderr
    best = ("-", 0.0)
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split("|"))
        if name.startswith(("ctbench", "site", "encodings", "__editable__")):
            continue
        if int(cumulative) / 1e6 > best[1]:
            best = (name, int(cumulative) / 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    floor = _wall("import click", (), args.repeats)
    eager = _wall("import ctbench.api, ctbench.evaluate.run", (), args.repeats)
    print(f"floor: python + import click      {floor:.3f} s")
    print(f"eager: torch + metrics imports    {eager:.3f} s (what every --help paid when imports were eager)")
    print(f"{'command':<34} {'median s':>8} {'× floor':>8} {'eager ÷':>8}  heaviest import (cumulative)")
    worst = 0.0
    for command in COMMANDS:
        argv = (*command, "--help")
        t = _wall(RUN_CLI, argv, args.repeats)
        worst = max(worst, t)
        module, seconds = heaviest_import(RUN_CLI, argv)
        label = "ctbench " + " ".join(argv)
        print(f"{label:<34} {t:>8.3f} {t / floor:>8.2f} {eager / t:>8.1f}  {module} {seconds * 1000:.0f} ms")
    print(f"slowest --help: {worst:.3f} s ({'under' if worst < 0.5 else 'OVER'} the 0.5 s target)")


if __name__ == "__main__":
    main()
