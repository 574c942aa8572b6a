"""The app package (FAB) that `flwr run` sends holds the app's code and nothing run-time: a
FLWR_HOME inside the checkout (as docs/deployment.md once suggested), run outputs or results
never travel to the SuperLink and SuperNodes, and never nest into the next package."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from io import BytesIO
from pathlib import Path

from flwr.cli.build import build_fab_from_disk

from tests.conftest import REPO

APP_CODE = ("server_app.py", "client_app.py", "fedsnn/__init__.py", "fedsnn/core/", "fedsnn/audit/",
            "attacks/", "clients/", "strategies/")
RUN_TIME = {  # what runs leave in a checkout, each with files Flower would otherwise pack
    ".flwr-deploy/config.toml": "[superlink]\n",
    ".flwr-deploy/apps/fedsnn.fedsnn.0.1.0.abc/pyproject.toml": "[project]\n",
    "my-flwr-home/config.toml": "[superlink]\n",
    "runs/20260101-000000-lenet/results.json": "{}",
    "fedsnn-runs/20260101-000000-lenet/audit.json": "{}",
    "outputs/summary.md": "# run\n",
}


def test_the_app_package_holds_the_app_code_and_no_run_time_folder(tmp_path: Path) -> None:
    app = tmp_path / "app"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    for name in tracked:
        if (REPO / name).is_file():
            (app / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, app / name)
    for name, text in RUN_TIME.items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(text)

    names = zipfile.ZipFile(BytesIO(build_fab_from_disk(app))).namelist()

    packed = [n for n in names if n not in ("pyproject.toml", ".info/CONTENT")]
    assert "server_app.py" in packed and "fedsnn/core/config.py" in packed
    assert [n for n in packed if not n.startswith(APP_CODE)] == []  # no tool, no experiment
    assert not [n for n in packed if n.startswith(("experiments/", "benchmarks/", "fedsnn/tools/"))]
    assert [n for n in names if n.split("/")[0] in {p.split("/")[0] for p in RUN_TIME}] == []
