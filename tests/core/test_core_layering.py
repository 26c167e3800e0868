"""ctbench.core is the bottom layer: its modules import nothing from ctbench outside ctbench.core."""

import ast
from pathlib import Path

import ctbench.core

CORE = Path(ctbench.core.__file__).parent


def _ctbench_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "ctbench" else [f"ctbench.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out |= {n for n in names if n == "ctbench" or n.startswith("ctbench.")}
    return out


def test_core_imports_only_core():
    for path in sorted(CORE.glob("*.py")):
        outside = {m for m in _ctbench_imports(path) if not m.startswith("ctbench.core") and m != "ctbench.__version__"}
        assert not outside, f"{path.name} imports {sorted(outside)} from above ctbench.core"


LAYERS = (
    ("ctbench.core", "ctbench.schemas", "ctbench.seeding", "ctbench.__version__"),
    ("ctbench.protocol",),
    (
        "ctbench.data", "ctbench.extractors", "ctbench.weights", "ctbench.weights_catalog", "ctbench.stats",
        "ctbench.feature_sample",
        "ctbench.figures", "ctbench.api",
    ),
    ("ctbench.metrics",),
    ("ctbench.record", "ctbench.evaluate", "ctbench.leaderboard", "ctbench.demo"),
    ("ctbench.cli",),
)
"""ctbench's layers, lowest first, as docs/architecture.md draws them; a module imports only from its layer or below."""


def _layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")


def test_nothing_imports_upward():
    root = CORE.parent
    upward = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("ctbench", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        if module == "ctbench":
            continue
        for target in _ctbench_imports(path) - {"ctbench"}:
            if _layer(target) > _layer(module):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that run upward: " + ", ".join(sorted(upward))
