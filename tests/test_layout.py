"""The package's shape, read from its source: no import cycle (counting imports inside functions), no arrow
from a lower layer to a higher one (the layers are drawn in docs/design.md), imports at the top of files
except optional or heavy dependencies, no function over 60 lines and no file over 400."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# The layers, lowest first; a module takes the rank of its longest listed prefix. A module may import only
# modules of its own rank or lower. docs/design.md draws the same table.
RANKS = {
    "edgenas": 0, "edgenas.errors": 0, "edgenas.io": 0, "edgenas.rng": 0, "edgenas.progress": 0,
    "edgenas.env": 1,
    "edgenas.spec": 1,
    "edgenas.config": 2, "edgenas.data.shape": 2,
    # the zoo's tables: functions that write specs, no torch
    "edgenas.models.mobilenet": 2, "edgenas.models.edgetpu_v1": 2, "edgenas.models.edgetpu_v2": 2,
    "edgenas.models.segmentation": 2, "edgenas.models.detection": 2,
    "edgenas.space": 3, "edgenas.eval": 3, "edgenas.det": 3,
    "edgenas.data": 4,
    "edgenas.nn": 5,
    "edgenas.models": 6,
    "edgenas.tasks.base": 6,  # the task protocol, which the fit loop knows
    "edgenas.train": 7, "edgenas.export": 7,
    "edgenas.tasks": 8, "edgenas.latency": 8,
    "edgenas.search": 9,
    "edgenas.cli": 10, "edgenas.__main__": 11,
}
# Imported inside a function on purpose: optional extras, and torch/runtimes that the torch-free layers
# (spec, space, the latency models) load only when a measuring path runs.
LAZY_OK = {"torch", "onnxruntime", "ai_edge_litert", "litert_torch", "scalesim", "zigzag", "safetensors",
           "torchao", "ray", "optuna", "scipy", "importlib", "matplotlib"}


@cache
def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "edgenas").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    mods = modules()
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parent = module.split(".")[: len(module.split(".")) - (node.level - (1 if is_package else 0))]
            base = ".".join(parent + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    found = []
    for name in names:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in mods and name != module:
            found.append(name)
    return found


@cache
def parsed() -> dict[str, ast.Module]:
    return {m: ast.parse(p.read_text(), str(p)) for m, p in modules().items()}


@cache
def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module, tree in parsed().items():
        is_package = modules()[module].name == "__init__.py"
        edges[module] = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                         for t in _targets(node, module, is_package)}
    return edges


def rank(module: str) -> int:
    prefixes = [p for p in RANKS if module == p or module.startswith(p + ".")]
    return RANKS[max(prefixes, key=len)]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_checker_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert _cycles(graph()) == []


def test_every_module_has_a_layer():
    assert all(any(m == p or m.startswith(p + ".") for p in RANKS) for m in modules())


def test_no_arrow_runs_up_the_layers():
    upward = sorted(f"{a} ({rank(a)}) -> {b} ({rank(b)})" for a, bs in graph().items() for b in bs
                    if rank(b) > rank(a))
    assert upward == []


def test_imports_sit_at_the_top():
    inside = []
    for module, tree in parsed().items():
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    roots = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    roots = ["edgenas" if node.level else (node.module or "").split(".")[0]]
                else:
                    continue
                inside += [f"{module}:{node.lineno} {r}" for r in roots if r not in LAZY_OK]
    assert inside == []


def test_functions_and_files_stay_small():
    long = []
    for module, tree in parsed().items():
        lines = len(modules()[module].read_text().splitlines())
        if lines > 400:
            long.append(f"{module}: {lines} lines")
        long += [f"{module}.{f.name}: {f.end_lineno - f.lineno + 1} lines" for f in ast.walk(tree)
                 if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno >= 60]
    assert long == []
