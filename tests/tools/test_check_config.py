"""Unknown run-config keys are named before a run (`fedsnn check-config`), and scripts/run.sh
exits non-zero whenever a run did not complete (Flower's `flwr run` exits 0 either way)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsnn.tools.cli import app
from tests.conftest import REPO


@pytest.mark.parametrize("overrides,code,fragment", [
    ("num-server-round=3", 2, "did you mean 'num-server-rounds'?"),
    ("model='lenet-snn' encodng='poisson'", 2, "did you mean 'encoding'?"),
    ("num-server-rounds=0", 2, "num-server-rounds: expected a positive integer"),
    ("num-server-rounds==", 2, "cannot parse"),
    ("num-server-rounds=3 model='lenet-snn'", 0, ""),
])
def test_check_config_names_the_bad_key(overrides: str, code: int, fragment: str) -> None:
    result = CliRunner().invoke(app, ["check-config", "--run-config", overrides])
    assert result.exit_code == code, result.output
    assert fragment in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("overrides,federation,fragment", [
    ("min-train-replies=6", "num-supernodes=5", "min-train-replies: 6 replies asked for, but a "
                                                "round samples 5 of the 5 nodes"),
    ("min-train-replies=3 fraction-train=0.4", "num-supernodes=5", "samples 2 of the 5 nodes"),
    ("min-available-nodes=6", "num-supernodes=5", "min-available-nodes: 6, but the federation"),
    ("num-byzantine=3 byzantine-attack='sign-flip'", "num-supernodes=2", "num-byzantine: 3"),
    ("min-train-replies=5", "num-supernodes=5 client-resources-num-cpus=1", ""),
])
def test_check_config_checks_settings_against_the_federation(overrides: str, federation: str,
                                                             fragment: str) -> None:
    """Issue 28: min-train-replies above the number of nodes passed and failed after a round."""
    result = CliRunner().invoke(app, ["check-config", "--run-config", overrides,
                                      "--federation-config", federation])
    code = 2 if fragment else 0
    assert result.exit_code == code, result.output
    assert fragment in result.output and "Traceback" not in result.output


# A stand-in `flwr` for scripts/run.sh: writes results.json with the status in FAKE_STATUS (none
# when it is empty), exits 0 like `flwr run` does, and logs its call.
FAKE_FLWR = """#!/usr/bin/env bash
echo "$@" >> "$FAKE_CALLS"
out=$(echo "$@" | sed -n "s/.*output-dir='\\([^']*\\)'.*/\\1/p")
name=$(echo "$@" | sed -n "s/.*run-name='\\([^']*\\)'.*/\\1/p")
if [ -n "$FAKE_STATUS" ]; then
    mkdir -p "$out/20260101-000000-$name"
    echo "{\\"status\\": \\"$FAKE_STATUS\\", \\"config\\": {\\"model\\": \\"lenet\\"}, \\"rounds\\": []}" \\
        > "$out/20260101-000000-$name/results.json"
fi
exit 0
"""


def run_script(tmp_path: Path, status: str, run_config: str = "") -> tuple[int, str, str]:
    """scripts/run.sh in a copy of the repo's scripts, with set-up stubbed and a fake `flwr`."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "run.sh", root / "scripts" / "run.sh")
    (root / "scripts" / "setup.sh").write_text("true\n")
    (root / "scripts" / "env.sh").write_text("")
    (root / "scripts" / "superlink.sh").write_text("true\n")  # no SuperLink: `flwr` is a fake
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "fedsnn").write_text(
        f"#!/usr/bin/env bash\nexec {sys.executable} -m fedsnn.tools.cli \"$@\"\n")
    (bin_dir / "flwr").write_text(FAKE_FLWR)
    for tool in ("fedsnn", "flwr"):
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO), "FAKE_STATUS": status, "FAKE_CALLS": str(calls),
           "FEDSNN_OUT": str(tmp_path / "runs"), "MODELS": "lenet", "RUN_CONFIG": run_config}
    done = subprocess.run(["bash", str(root / "scripts" / "run.sh")], env=env, text=True,
                          capture_output=True, timeout=120)
    return done.returncode, done.stdout + done.stderr, calls.read_text() if calls.exists() else ""


@pytest.mark.slow  # each call of the real `fedsnn` CLI imports torch (seconds)
@pytest.mark.parametrize("status,code", [("completed", 0), ("failed", 1), ("", 1)])
def test_run_sh_exits_non_zero_unless_the_run_completed(tmp_path: Path, status: str,
                                                        code: int) -> None:
    returncode, output, _ = run_script(tmp_path, status)
    assert returncode == code, output


@pytest.mark.slow
def test_run_sh_refuses_an_unknown_key_before_flower_runs(tmp_path: Path) -> None:
    returncode, output, calls = run_script(tmp_path, "completed", "num-server-round=3")
    assert returncode == 2 and "did you mean 'num-server-rounds'?" in output
    assert calls == ""  # flwr was never called
