"""The package's import structure: data flows models -> training -> export -> graphs + manifest
-> runtime, with no circle, and the runtime's onnxruntime / LiteRT path needs no torch."""
from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "granular_mobile"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in (SRC / PKG).rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """module -> package modules it imports, anywhere in the file (lazy imports included),
    except under ``if TYPE_CHECKING:`` (annotations only, never executed)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, f in mods.items():
        pkg = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(f.read_text())
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
                for b in node.body for n in ast.walk(b)}
        out: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                cands = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            for c in cands:
                while c and c not in mods:
                    c = c.rsplit(".", 1)[0] if "." in c else ""
                if c and c != name:
                    out.add(c)
        graph[name] = out
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for n in graph.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def test_no_import_circle():
    g = import_graph()
    assert len(g) > 40  # the walk found the package
    circles = sorted(m for m in g if m in _reach(g, m))
    assert not circles, f"import circles through: {circles}"


@pytest.mark.parametrize("low, high", [
    ("runtime", "export"), ("runtime", "train"), ("runtime", "eval"), ("export", "eval"), ("export", "train"),
    ("models", "export"), ("models", "train"), ("ir", "export"),
    ("ir", "models"), ("ir", "train"), ("ir", "runtime"), ("verify", "export"), ("verify", "train"), ("data", "export"),
    ("data", "train"),
])
def test_no_upward_edge(low, high):
    g = import_graph()
    for m in [m for m in g if m == f"{PKG}.{low}" or m.startswith(f"{PKG}.{low}.")]:
        bad = sorted(r for r in _reach(g, m) if r == f"{PKG}.{high}" or r.startswith(f"{PKG}.{high}."))
        assert not bad, f"{m} imports {bad}"


@pytest.mark.parametrize("backend", ["onnxruntime", "tflite"])
def test_runtime_path_loads_no_torch_export_or_train(backend):
    code = f"""
import sys, numpy as np
from granular_mobile.runtime import Upscaler
up = Upscaler.load("default", backend="{backend}", threads=1)
sr, rep = up(np.full((40, 52, 3), 128, np.uint8))
assert sr.shape == (80, 104, 3)
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(("granular_mobile.export", "granular_mobile.train",
                                                                      "granular_mobile.eval", "granular_mobile.models")))
print("BAD", bad)
"""
    if backend == "tflite":
        pytest.importorskip("ai_edge_litert", reason="LiteRT is the [tflite] extra")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "BAD []" in r.stdout, r.stdout
