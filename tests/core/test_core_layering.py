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
