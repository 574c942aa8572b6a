"""Issue 28, item 1: every `scripts/run.sh` runs on a SuperLink of its own checkout (its own port,
state under the checkout), refuses an address another process holds, and leaves nothing running.
Before, `flwr run .` attached to whatever answered on 127.0.0.1:39091, e.g. a SuperLink another
checkout had left behind, and ran there under that checkout's virtualenv."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.checkouts import REPO, copy_checkout, thin_venv

QUICK = "num-server-rounds=1 audit-enabled=false local-epochs=1"


def checkout(root: Path) -> Path:
    copy = copy_checkout(root)
    thin_venv(copy)
    return copy


def script_env(copy: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLWR_", "FEDSNN_"))}
    env.update(FEDSNN_OUT=str(copy / "runs"), MODELS="lenet", RUN_CONFIG=QUICK, **extra)
    return env


def flower_processes_of(*checkouts: Path) -> list[str]:
    """Command lines of live processes that run from one of these checkouts."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if "flower-" in cmdline and any(str(c) in cmdline for c in checkouts):
            found.append(cmdline)
    return found


@pytest.mark.parametrize("script", [["scripts/superlink.sh", "start"],
                                    ["scripts/flwr_run.sh", "--stream"]])
def test_superlink_start_refuses_an_address_held_by_another_process(tmp_path: Path,
                                                                    script: list[str]) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {**os.environ, "FEDSNN_SUPERLINK_PORT": str(port),
               "FLWR_HOME": str(tmp_path / "flwr-home")}
        done = subprocess.run(["bash", *script], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1  # one line, naming the address
    assert f"refusing to run: 127.0.0.1:{port} is held by a process" in done.stderr
    assert not (tmp_path / "flwr-home" / "superlink" / "superlink.pid").exists()


def test_run_sh_refuses_to_run_on_a_held_address(tmp_path: Path) -> None:
    copy = checkout(tmp_path / "checkout")
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        env = script_env(copy, FEDSNN_SUPERLINK_PORT=str(other.getsockname()[1]))
        done = subprocess.run(["bash", "scripts/run.sh"], cwd=copy, env=env, capture_output=True,
                              text=True, timeout=300)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "refusing to run" in done.stderr and "training" not in done.stdout
    assert not list((copy / "runs").glob("*/results.json"))


@pytest.mark.slow
def test_two_checkouts_run_at_once_each_on_its_own_superlink_with_its_own_code(
        tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    copies = {name: checkout(tmp_path / name) for name in ("a", "b")}
    for name, copy in copies.items():  # each checkout's ServerApp says which interpreter ran it
        with (copy / "server_app.py").open("a") as app:
            app.write(f"\nimport sys as _sys\nwith open({str(marks / name)!r}, 'a') as _mark:\n"
                      f"    _mark.write(f'{{_sys.prefix}} {{__file__}}\\n')\n")
    runs = {name: subprocess.Popen(["bash", "scripts/run.sh"], cwd=copy, env=script_env(copy),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for name, copy in copies.items()}
    outputs = {name: run.communicate(timeout=900)[0] for name, run in runs.items()}
    for name, copy in copies.items():
        assert runs[name].returncode == 0, outputs[name][-3000:]
        assert "Using SuperLink: fedsnn-own (127.0.0.1:" in outputs[name]
        ran = (marks / name).read_text().split()
        # its own virtualenv, and its app installed under its own FLWR_HOME
        assert ran[0] == str(copy / ".venv") and ran[1].startswith(str(copy / ".flwr")), ran
        assert "stopped this checkout's SuperLink" in outputs[name]
    addresses = {name: out.split("Using SuperLink: fedsnn-own (")[1].split(")")[0]
                 for name, out in outputs.items()}
    assert addresses["a"] != addresses["b"]
    assert flower_processes_of(*copies.values()) == []  # nothing left running
