"""Copies of this checkout for tests that run the shell scripts: the tracked files, and a `.venv`
of their own that borrows the installed packages of the running interpreter's virtualenv instead
of installing them again (seconds, not minutes; no network)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Console scripts the shell scripts and the SuperLink start by name (flwr-simulation, ...).
SCRIPT_PREFIXES = ("flwr", "flower-", "fedsnn")


def copy_checkout(target: Path) -> Path:
    """The files git tracks in this checkout (as they are on disk), copied to `target`."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
                           ).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def thin_venv(checkout: Path) -> Path:
    """`checkout/.venv`: its own interpreter prefix (sys.prefix is the copy's), the checkout's
    code first on sys.path, the running venv's site-packages after it, and the console scripts
    re-pointed at the new interpreter. scripts/setup.sh finds it installed."""
    venv = checkout / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    (site / "00-checkout.pth").write_text(f"{checkout.resolve()}\n")
    (site / "zz-shared.pth").write_text(f"{sysconfig.get_path('purelib')}\n")
    shared_bin = Path(sys.prefix) / "bin"
    for script in sorted(shared_bin.iterdir()):
        if script.name.startswith(SCRIPT_PREFIXES) and script.is_file():
            lines = script.read_text().splitlines(keepends=True)
            target = venv / "bin" / script.name
            target.write_text(f"#!{venv / 'bin' / 'python'}\n" + "".join(lines[1:]))
            target.chmod(0o755)
    (venv / ".fedsnn-installed").touch()  # newer than pyproject.toml: setup.sh installs nothing
    return venv
