"""pyproject.toml declares exactly the third-party packages the code imports (read with ast, at
module level and inside functions); the demo's imports are its `demo` extra, the tests' are in
the `dev` extra."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = ("fedsnn", "attacks", "clients", "strategies", "benchmarks", "server_app.py",
        "client_app.py")
DEMO = "fedsnn/tools/demo"  # `fedsnn demo`: may also use the demo extra
LOCAL = {"fedsnn", "attacks", "clients", "strategies", "benchmarks", "tests", "deploy",
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


def _files(roots: tuple[str, ...]) -> list[Path]:
    return [p for root in roots for p in ((REPO / root).rglob("*.py") if (REPO / root).is_dir()
                                          else [REPO / root])]


def _provided(requirements: list[str]) -> dict[str, set[str]]:
    out = {}
    for requirement in requirements:
        dist = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower()
        out[dist] = PROVIDES.get(dist, {dist.replace("-", "_")})
    return out


PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_the_code_imports_exactly_the_declared_dependencies() -> None:
    declared = set().union(*_provided(PROJECT["dependencies"]).values())
    demo_extra = set().union(*_provided(PROJECT["optional-dependencies"]["demo"]).values())
    files = _files(CODE)
    demo = _imported([p for p in files if p.is_relative_to(REPO / DEMO)])
    imported = _imported([p for p in files if not p.is_relative_to(REPO / DEMO)])
    undeclared = (imported - declared) | (demo - declared - demo_extra)
    unused = {dist for dist, names in _provided(PROJECT["dependencies"]).items()
              if not names & imported and dist not in NOT_IMPORTED}
    assert not undeclared, f"imported but not in [project] dependencies: {sorted(undeclared)}"
    assert not unused, f"declared but never imported (say why in NOT_IMPORTED): {sorted(unused)}"


def test_the_tests_import_only_declared_packages() -> None:
    extras = PROJECT["optional-dependencies"]
    declared = _provided(PROJECT["dependencies"] + extras["dev"] + extras["demo"])
    missing = _imported(_files(("tests",))) - set().union(*declared.values())
    assert not missing, f"tests import packages missing from the dev extra: {sorted(missing)}"
