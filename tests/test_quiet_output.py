"""Issue 28, item 8: the app processes print each Flower log line once and none of the known
third-party warnings (scienceplots' Matplotlib deprecations, Ray's accelerator tip), while the
project's own warnings still show."""

from __future__ import annotations

import subprocess
import sys

from tests.checkouts import REPO

PROBE = """
import warnings
import server_app, client_app  # what an app process imports (opacus, torchmetrics, scienceplots)
import fedsnn.core.privacy.dpsgd
from flwr.common.logger import log
from logging import INFO
log(INFO, "probe-line")
warnings.warn_explicit("Tip: In future versions of Ray, Ray will no longer override accelerator",
                       FutureWarning, "worker.py", 2051, module="ray._private.worker")
warnings.warn_explicit("a project warning", UserWarning, "x.py", 1, module="fedsnn.core.x")
"""


def test_an_app_process_prints_each_log_line_once_and_no_third_party_warning() -> None:
    done = subprocess.run([sys.executable, "-W", "default", "-c", PROBE], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-2000:]
    assert output.count("probe-line") == 1, output[-2000:]
    assert "MatplotlibDeprecationWarning" not in output and "scienceplots" not in output
    assert "override accelerator" not in output
    assert "a project warning" in output
