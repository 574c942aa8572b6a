"""Imports run one way (docs/architecture.md): every import of every module — at module level or
inside a function — goes to the same layer or one below, and no modules import each other in a
cycle. Read from the source with `ast`, so nothing is imported and lazy imports count too."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fedsnn", "attacks", "clients", "strategies", "benchmarks")
TOP_FILES = ("server_app.py", "client_app.py")

# (layer, name): bottom first. A module's layer is that of the longest prefix listed here (the
# package `fedsnn` itself only for its __init__: a new fedsnn module must be placed explicitly).
LAYERS: dict[str, tuple[int, str]] = {
    **{f"fedsnn.{name}": (0, "fedsnn core") for name in (
        "config", "models", "data", "metrics", "privacy", "results", "checkpoint", "training",
        "judges", "summary", "config_doc", "pictures", "protocol", "sampling", "image_format")},
    "fedsnn": (0, "fedsnn core"),
    "attacks": (1, "attacks"),
    "clients": (1, "clients"),
    "fedsnn.audit": (2, "fedsnn.audit"),
    "strategies": (3, "strategies"),
    "fedsnn.tools": (4, "tools and apps"),
    "server_app": (4, "tools and apps"),
    "client_app": (4, "tools and apps"),
    "benchmarks": (4, "tools and apps"),
}
# Side by side in layer 1, and kept apart: an attack sees only an Observation (no data loading,
# no client code); a client does not know the attacks.
FORBIDDEN = {
    "attacks": ("clients", "fedsnn.data"),
    "clients": ("attacks",),
}


@dataclass(frozen=True)
class Import:
    source: str      # importing module
    target: str      # imported module of this repository
    where: str       # path:line
    lazy: bool       # inside a function


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    files = [p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))]
    files += [REPO / name for name in TOP_FILES]
    return {_module_name(p): p for p in files}


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of this repository that `name` (a module or a name in one) refers to."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return None


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    lazy_lines = {node.lineno for func in ast.walk(tree)
                  if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                  for node in ast.walk(func) if isinstance(node, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing package
                package = module.split(".")[:None if path.name == "__init__.py" else -1]
                package = package[:len(package) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            # `from a import b`: b may be a submodule of a
            names = [f"{base}.{a.name}" if _resolve(f"{base}.{a.name}") == f"{base}.{a.name}"
                     else base for a in node.names]
        for name in dict.fromkeys(names):
            target = _resolve(name)
            if target is not None and target != module:
                shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                found.append(Import(module, target, f"{shown}:{node.lineno}",
                                    node.lineno in lazy_lines))
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def layer(module: str) -> tuple[int, str]:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS and (prefix != "fedsnn" or module == "fedsnn"):
            return LAYERS[prefix]
    raise KeyError(module)


def _describe(imp: Import) -> str:
    how = "inside a function " if imp.lazy else ""
    return f"{imp.where}: {imp.source} imports {how}{imp.target}"


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in MODULES:
        try:
            layer(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, (f"modules outside every layer: {unplaced}; add them to LAYERS here and "
                          "to docs/architecture.md")


def test_imports_go_down_the_layers() -> None:
    upward = []
    for imp in IMPORTS:
        (low, low_name), (high, high_name) = layer(imp.source), layer(imp.target)
        if high > low:
            upward.append(f"{_describe(imp)} — layer {low} ({low_name}) may not import layer "
                          f"{high} ({high_name})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


@pytest.mark.parametrize("source", sorted(FORBIDDEN))
def test_layer_one_neighbours_stay_apart(source: str) -> None:
    crossing = [f"{_describe(imp)} — {source} must not import {prefix}"
                for imp in IMPORTS if imp.source.split(".")[0] == source
                for prefix in FORBIDDEN[source]
                if imp.target == prefix or imp.target.startswith(prefix + ".")]
    assert not crossing, "\n".join(crossing)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycles() -> None:
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        edges.setdefault(imp.source, set()).add(imp.target)
    cycles = _cycles(edges)
    lines = [f"cycle between {', '.join(c)}:\n  " + "\n  ".join(
        _describe(imp) for imp in IMPORTS if imp.source in c and imp.target in c) for c in cycles]
    assert not cycles, "\n".join(lines)


def test_the_checks_see_lazy_imports_and_report_them(tmp_path: Path) -> None:
    """The walker itself: an import inside a function is found, and the message names it."""
    path = tmp_path / "example.py"
    path.write_text("from attacks.types import Observation\n\n"
                    "def f():\n    from clients import node\n")
    found = _imports("attacks.example", path)
    assert {(imp.target, imp.lazy) for imp in found} == {("attacks.types", False),
                                                          ("clients.node", True)}
    assert _describe(found[-1]).endswith("example.py:4: attacks.example imports inside a "
                                         "function clients.node")
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_attacks_do_not_import_flower() -> None:
    """An attack works on an Observation; it never sees Flower's messages or loads data."""
    found = []
    for module, path in MODULES.items():
        if module.split(".")[0] != "attacks":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(REPO)}:{node.lineno}: {module} imports {name}"
                      for name in names if name.split(".")[0] in ("flwr", "flwr_datasets")]
    assert not found, "\n".join(found)
