"""The Runs view: run folders under an output folder, one run's audit report, several side by side
(the reports of `fedsnn report`, built by `fedsnn.audit.report`).

Every path a visitor sends is confined to the demo's runs folder (`--runs-dir`, the `root` of
each function): with `--host` set to a reachable address, the view must not read reports
anywhere else on the disk."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fedsnn.audit.report import write_comparison, write_report
from fedsnn.tools.demo.engine import DemoError


def confined(path: str | Path, root: Path) -> Path:
    """`path` (a relative one is taken under `root`) with links and ".." resolved, when it is
    `root` or lies inside it.

    Raises:
        DemoError: the path leads outside `root`.
    """
    base = Path(root).expanduser().resolve()
    target = (base / Path(path).expanduser()).resolve()
    if not target.is_relative_to(base):
        raise DemoError(f"runs: {path} is outside the demo's runs folder {base} (--runs-dir); "
                        "the Runs view reads nothing else")
    return target


def list_runs(out_dir: str | Path, *, root: Path) -> list[Path]:
    """Run folders (with a results.json) in `out_dir`, newest first; `out_dir` itself if it is one.

    Raises:
        DemoError: the folder is outside `root`, does not exist or holds no run.
    """
    folder = confined(out_dir, root)
    if not folder.is_dir():
        raise DemoError(f"runs: {folder} is not a folder")
    if (folder / "results.json").is_file():
        return [folder]
    runs = [d for d in folder.iterdir() if d.is_dir() and (d / "results.json").is_file()]
    if not runs:
        raise DemoError(f"runs: {folder} holds no run folder (a folder with a results.json); "
                        "runs go to the run config's output-dir")
    return sorted(runs, key=lambda d: (d / "results.json").stat().st_mtime, reverse=True)


def _check(run_dir: Path) -> None:
    for name in ("results.json", "audit.json"):
        path = run_dir / name
        if not path.is_file():
            why = "not a run folder" if name == "results.json" else \
                "a run made without the audit (audit-enabled=false): no report"
            raise DemoError(f"{run_dir.name}: {why} (no {name})")
        try:
            json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise DemoError(f"{run_dir.name}: {name} is unreadable ({error})") from None


def report_html(run_dir: str | Path, *, root: Path) -> str:
    """The run's self-contained report.html (rebuilt when audit.json is newer, or it is missing).

    Raises:
        DemoError: outside `root`, not a run folder, a run without audit, or unreadable files.
    """
    run_dir = confined(run_dir, root)
    _check(run_dir)
    html_path = run_dir / "report.html"
    try:
        if not html_path.is_file() or \
                html_path.stat().st_mtime < (run_dir / "audit.json").stat().st_mtime:
            _, html_path = write_report(run_dir)
        return html_path.read_text()
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise DemoError(f"{run_dir.name}: its report cannot be built ({error!r})") from None


def comparison_html(run_dirs: Sequence[str | Path], *, root: Path) -> str:
    """Several runs side by side, as `fedsnn report RUN… --out` writes them (built in a temporary
    folder: nothing is added to the runs).

    Raises:
        DemoError: fewer than two runs, one outside `root`, or one of them has no audit.
    """
    dirs = [confined(d, root) for d in run_dirs]
    if len(dirs) < 2:
        raise DemoError("compare: select at least two runs")
    for run_dir in dirs:
        _check(run_dir)
    with tempfile.TemporaryDirectory(prefix="fedsnn-demo-") as out:
        try:
            _, html_path = write_comparison(dirs, Path(out))
            return html_path.read_text()
        except (OSError, KeyError, TypeError, ValueError) as error:
            raise DemoError(f"compare: {error!r}") from None
