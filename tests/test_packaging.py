"""Packaging: the wheel holds every package and the shipped configs, and an installed wheel runs the demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"ctbench": ROOT / "ctbench", "ctbench_generators": ROOT / "generators"}
"""Import name → folder, as ``[tool.setuptools.package-dir]`` maps them."""


def _package_folders() -> set[str]:
    """Dotted names of every folder with an ``__init__.py`` under the two top-level packages."""
    found = set()
    for name, folder in PACKAGE_DIRS.items():
        for init in folder.rglob("__init__.py"):
            found.add(".".join([name, *init.parent.relative_to(folder).parts]))
    return found


def test_pyproject_lists_every_package_folder():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"ctbench_generators": "generators"}
    assert sorted(setuptools["packages"]) == sorted(_package_folders())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ctbench built into a wheel from a copy of the sources (the checkout stays clean)."""
    src = tmp_path_factory.mktemp("ctbench-src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in PACKAGE_DIRS.values():
        shutil.copytree(folder, src / folder.name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)]
    subprocess.run(pip, check=True, timeout=300)
    (whl,) = out.glob("ctbench-*.whl")
    return whl


def test_wheel_holds_the_packages_and_the_shipped_configs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {str(Path(n).parent).replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages == _package_folders()
    configs = "ctbench_generators/vqgan_ddpm/configs/"
    assert {configs + "tiny.yaml", configs + "flare22.yaml"} <= set(names)
    assert not any(n.startswith(("generators/", "configs/", "tests/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_outside_the_checkout(wheel, prepared_dir, tmp_path):
    """A fresh venv sees this environment's dependencies (a .pth line), then gets the wheel with --no-deps.

    The demo trains the reference plugin's shipped tiny config (~1 min on 2 cores); it reads the shared prepared
    folder rather than making phantoms, which other tests cover.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--ignore-installed"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=300)

    elsewhere = tmp_path / "elsewhere"  # no checkout here or on the path: everything comes from the wheel
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    where = subprocess.run(
        [str(python), "-c", "import ctbench, ctbench_generators; print(ctbench.__file__, ctbench_generators.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert all(Path(f).is_relative_to(site) for f in where), where

    args = ["demo", "--out", "demo", "--data", str(prepared_dir), "--samples", "2"]
    demo = subprocess.run([str(venv / "bin" / "ctbench"), *args], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=240)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "training the tiny reference model (tiny.yaml)" in demo.stdout
    assert "| vqgan-ddpm@full |" in (elsewhere / "demo" / "leaderboard" / "README.md").read_text()
