"""Imports run one way (docs/architecture.md), and the folders are the layers.

A module's layer is read from its folder. Every import of every module — at module level or inside
a function — goes to the same layer or one below, no modules import each other in a cycle, no code
names a module by a string at run time (`importlib.import_module`, `__import__`: the rule could
not follow it), and no Python code sits in a folder the rule does not know. Read from the source
with `ast`, so nothing is imported and lazy imports count too; modules are found on disk, so new
code cannot hide from the rule by not being listed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A module's layer is its folder's, bottom first. The longest listed prefix wins; a module under no
# listed prefix fails test_every_module_has_a_layer, so new top-level code is placed here (and in
# docs/architecture.md) before it can land.
LAYERS: dict[str, tuple[int, str]] = {
    "fedsnn": (0, "fedsnn core"),          # the package's __init__ only
    "fedsnn.core": (0, "fedsnn core"),
    "attacks": (1, "attacks"),
    "clients": (1, "clients"),
    "fedsnn.audit": (2, "fedsnn.audit"),
    "strategies": (3, "strategies"),
    "fedsnn.tools": (4, "tools and apps"),
    "server_app": (4, "tools and apps"),
    "client_app": (4, "tools and apps"),
    "experiments": (5, "outside the product"),
    "benchmarks": (5, "outside the product"),
    "deploy": (5, "outside the product"),
}
# Top-level folders that hold no importable code (their Python, if any, is not a layer).
NOT_CODE = {"tests", "docs", "scripts"}
# Side by side in layer 1, and kept apart: an attack sees only an Observation (no data loading,
# no client code); a client does not know the attacks.
FORBIDDEN = {
    "attacks": ("clients", "fedsnn.core.data"),
    "clients": ("attacks",),
}
# Calls that import a module named by a string: the layer rule cannot follow them.
DYNAMIC_IMPORTS = {"import_module", "__import__", "spec_from_file_location", "run_module",
                   "run_path"}


@dataclass(frozen=True)
class Import:
    source: str      # importing module
    target: str      # imported module of this repository
    where: str       # path:line
    lazy: bool       # inside a function


def _module_name(path: Path, repo: Path) -> str:
    parts = list(path.relative_to(repo).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_modules(repo: Path) -> dict[str, Path]:
    """Every Python module of the repository, found on disk (hidden folders and NOT_CODE aside)."""
    files: list[Path] = []
    for entry in sorted(repo.iterdir()):
        if entry.name.startswith(".") or entry.name in NOT_CODE:
            continue
        if entry.is_file() and entry.suffix == ".py":
            files.append(entry)
        elif entry.is_dir():
            files += [p for p in sorted(entry.rglob("*.py"))
                      if not any(part.startswith(".") for part in p.relative_to(repo).parts)]
    return {_module_name(p, repo): p for p in files}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module of this repository that `name` (a module or a name in one) refers to."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def _dynamic_call(node: ast.AST) -> str | None:
    """The name of a dynamic-import call (`importlib.import_module(...)`, `__import__(...)`)."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name if name in DYNAMIC_IMPORTS else None


def find_imports(module: str, path: Path, modules: dict[str, Path],
                 repo: Path = REPO) -> list[Import]:
    """The imports of `module`, a dynamic import of a string literal included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    lazy_lines = {node.lineno for func in ast.walk(tree)
                  if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                  for node in ast.walk(func)
                  if isinstance(node, (ast.Import, ast.ImportFrom, ast.Call))}
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
            names = [f"{base}.{a.name}" if _resolve(f"{base}.{a.name}", modules) ==
                     f"{base}.{a.name}" else base for a in node.names]
        elif _dynamic_call(node) and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        for name in dict.fromkeys(names):
            target = _resolve(name, modules)
            if target is not None and target != module:
                shown = path.relative_to(repo) if path.is_relative_to(repo) else path
                found.append(Import(module, target, f"{shown}:{node.lineno}",
                                    node.lineno in lazy_lines))
    return found


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


def unplaced_modules(modules: dict[str, Path]) -> list[str]:
    out = []
    for module in modules:
        try:
            layer(module)
        except KeyError:
            out.append(module)
    return out


def upward_imports(imports: list[Import]) -> list[str]:
    upward = []
    for imp in imports:
        try:
            (low, low_name), (high, high_name) = layer(imp.source), layer(imp.target)
        except KeyError:  # reported by unplaced_modules
            continue
        if high > low:
            upward.append(f"{_describe(imp)} — layer {low} ({low_name}) may not import layer "
                          f"{high} ({high_name})")
    return upward


def dynamic_imports(modules: dict[str, Path], repo: Path = REPO) -> list[str]:
    found = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if name := _dynamic_call(node):
                found.append(f"{path.relative_to(repo)}:{node.lineno}: {module} calls {name}(); "
                             "import the module by name so the layer rule can see it")
    return found


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


def import_cycles(imports: list[Import]) -> list[str]:
    edges: dict[str, set[str]] = {}
    for imp in imports:
        edges.setdefault(imp.source, set()).add(imp.target)
    return [f"cycle between {', '.join(c)}:\n  " + "\n  ".join(
        _describe(imp) for imp in imports if imp.source in c and imp.target in c)
        for c in _cycles(edges)]


MODULES = find_modules(REPO)
IMPORTS = [imp for module, path in MODULES.items()
           for imp in find_imports(module, path, MODULES)]


def test_every_module_has_a_layer() -> None:
    unplaced = unplaced_modules(MODULES)
    assert not unplaced, (f"modules outside every layer: {unplaced}; add their folder to LAYERS "
                          "here and to docs/architecture.md")


def test_imports_go_down_the_layers() -> None:
    upward = upward_imports(IMPORTS)
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_module_is_imported_by_a_string() -> None:
    found = dynamic_imports(MODULES)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("source", sorted(FORBIDDEN))
def test_layer_one_neighbours_stay_apart(source: str) -> None:
    crossing = [f"{_describe(imp)} — {source} must not import {prefix}"
                for imp in IMPORTS if imp.source.split(".")[0] == source
                for prefix in FORBIDDEN[source]
                if imp.target == prefix or imp.target.startswith(prefix + ".")]
    assert not crossing, "\n".join(crossing)


def test_no_import_cycles() -> None:
    cycles = import_cycles(IMPORTS)
    assert not cycles, "\n".join(cycles)


def test_the_checks_see_lazy_imports_and_report_them(tmp_path: Path) -> None:
    """The walker itself: an import inside a function is found, and the message names it."""
    path = tmp_path / "example.py"
    path.write_text("from attacks.types import Observation\n\n"
                    "def f():\n    from clients import node\n")
    found = find_imports("attacks.example", path, MODULES)
    assert {(imp.target, imp.lazy) for imp in found} == {("attacks.types", False),
                                                          ("clients.node", True)}
    assert _describe(found[-1]).endswith("example.py:4: attacks.example imports inside a "
                                         "function clients.node")
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_the_checks_catch_the_planted_breaks(tmp_path: Path) -> None:
    """The three breaks of issue 25 that the earlier, list-based test let through."""
    def write(relative: str, text: str) -> None:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)

    write("server_app.py", "")
    write("strategies/curious.py", "")
    write("fedsnn/tools/cli.py", "")
    write("fedsnn/core/config.py", "import importlib\nimportlib.import_module('strategies.curious')"
          "\n__import__('fedsnn.tools.cli')\n")
    write("newpkg/__init__.py", "import server_app\n")
    write("fedsnn/core/models/registry.py", "import newpkg\n")
    modules = find_modules(tmp_path)
    imports = [imp for module, path in modules.items()
               for imp in find_imports(module, path, modules, tmp_path)]

    assert unplaced_modules(modules) == ["newpkg"]
    assert len(dynamic_imports(modules, tmp_path)) == 2
    upward = upward_imports(imports)
    assert any("fedsnn.core.config imports strategies.curious" in line for line in upward)
    assert any("fedsnn.core.config imports fedsnn.tools.cli" in line for line in upward)


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


def test_no_room_holds_most_of_the_product() -> None:
    """Drawn as rooms (one per layer folder), no room of the product holds over 30 % of its
    lines: a folder that grows past that is holding more than one concern."""
    lines: dict[str, int] = {}
    for module, path in MODULES.items():
        if layer(module)[0] > 4:
            continue
        room = next(p for p in sorted(LAYERS, key=len, reverse=True)
                    if module == p or module.startswith(p + "."))
        lines[room] = lines.get(room, 0) + len(path.read_text().splitlines())
    total = sum(lines.values())
    too_big = {room: f"{n / total:.0%}" for room, n in lines.items() if n > 0.30 * total}
    assert not too_big, f"rooms over 30 % of the product's {total} lines: {too_big}"
