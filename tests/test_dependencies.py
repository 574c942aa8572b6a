"""pyproject.toml declares exactly the third-party packages the code imports (read with ast, at
module level and inside functions); the demo's (fedsnn/tools/demo) are in the `demo` extra, the
tests' own in the `dev` and `demo` extras."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = ("fedsnn", "attacks", "clients", "strategies", "benchmarks", "experiments", "server_app.py",
        "client_app.py")
LOCAL = {"fedsnn", "attacks", "clients", "strategies", "benchmarks", "experiments", "tests", "deploy",
         "server_app", "client_app"}
# distribution name -> the import names it provides, where they differ
PROVIDES = {"flwr": {"flwr", "ray"},  # flwr[simulation]: Ray comes with the extra
            "flwr-datasets": {"flwr_datasets"}, "dp-accounting": {"dp_accounting"},
            "scikit-learn": {"sklearn"}, "pillow": {"PIL"}}
# declared but never imported, and why (each must stay true)
NOT_IMPORTED = {"torchvision": "spikingjelly requires it; pinned to the torch version"}


def _imported(paths: list[Path]) -> set[str]:
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - LOCAL


DEMO = REPO / "fedsnn" / "tools" / "demo"


def _files(roots: tuple[str, ...]) -> list[Path]:
    return [p for root in roots for p in ((REPO / root).rglob("*.py") if (REPO / root).is_dir()
                                          else [REPO / root])]


def _core_files() -> list[Path]:
    return [p for p in _files(CODE) if DEMO not in p.parents]


def _provided(requirements: list[str]) -> dict[str, set[str]]:
    out = {}
    for requirement in requirements:
        dist = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower()
        out[dist] = PROVIDES.get(dist, {dist.replace("-", "_")})
    return out


PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_the_code_imports_exactly_the_declared_dependencies() -> None:
    declared = _provided(PROJECT["dependencies"])
    imported = _imported(_core_files())
    undeclared = imported - set().union(*declared.values())
    unused = {dist for dist, names in declared.items()
              if not names & imported and dist not in NOT_IMPORTED}
    assert not undeclared, f"imported but not in [project] dependencies: {sorted(undeclared)}"
    assert not unused, f"declared but never imported (say why in NOT_IMPORTED): {sorted(unused)}"


def test_the_demo_imports_only_core_and_demo_packages() -> None:
    declared = _provided(PROJECT["dependencies"] + PROJECT["optional-dependencies"]["demo"])
    missing = _imported(list(DEMO.rglob("*.py"))) - set().union(*declared.values())
    assert not missing, f"the demo imports packages missing from the demo extra: {sorted(missing)}"


def test_the_tests_import_only_declared_packages() -> None:
    extras = PROJECT["optional-dependencies"]
    declared = _provided(PROJECT["dependencies"] + extras["dev"] + extras["demo"])
    missing = _imported(_files(("tests",))) - set().union(*declared.values())
    assert not missing, f"tests import packages missing from the dev extra: {sorted(missing)}"
