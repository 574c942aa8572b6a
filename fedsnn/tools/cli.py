"""The `fedsnn` command line. Each sub-command lives in its own module and is registered here."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="fedsnn: privacy audits of federated learning with ANNs and SNNs.")


@app.callback()
def main() -> None:
    """fedsnn: privacy audits of federated learning with ANNs and SNNs."""


@app.command()
def version() -> None:
    """Print the fedsnn version."""
    from fedsnn import __version__

    typer.echo(__version__)


@app.command()
def summary(run_dirs: list[Path]) -> None:
    """One line per run (model, rounds, final test accuracy, wall time, where it is)."""
    from fedsnn.core.summary import summary_line

    all_ok = True
    for run_dir in run_dirs:
        line, ok = summary_line(run_dir)
        all_ok &= ok
        typer.echo(line)
    if not all_ok:
        raise typer.Exit(code=1)


def _fail_unless_json_object(command: str, path: Path) -> None:
    """Exit with one line (status 2) unless `path` holds a JSON object."""
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        problem: str | None = "is missing (not a run folder?)"
    except (OSError, UnicodeDecodeError, ValueError) as error:
        problem = f"is not valid JSON ({error})"
    else:
        problem = None if isinstance(content, dict) else "is not a JSON object"
    if problem:
        typer.echo(f"fedsnn {command}: {path} {problem}", err=True)
        raise typer.Exit(code=2)


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="run folders with results.json + audit.json"),
    out: Path = typer.Option(Path("."), help="where a comparison of several runs is written"),
) -> None:
    """Rebuild each run's audit report; with several runs, also write them side by side
    (comparison.md / comparison.html in --out)."""
    from fedsnn.audit.report import write_comparison, write_report

    missing = [d for d in run_dirs if not (d / "audit.json").is_file()]
    if missing:
        typer.echo(f"fedsnn report: no audit.json in {', '.join(map(str, missing))} "
                   "(was the run made with audit-enabled=true?)", err=True)
        raise typer.Exit(code=2)
    for run_dir in run_dirs:  # every file is read before anything is written
        for name in ("audit.json", "results.json"):
            _fail_unless_json_object("report", run_dir / name)
        if "attacks" not in json.loads((run_dir / "audit.json").read_text()):
            typer.echo(f"fedsnn report: {run_dir / 'audit.json'} holds only the dp-audit (the run "
                       "had audit-enabled=false); its figures are in results.json", err=True)
            raise typer.Exit(code=2)
    for run_dir in run_dirs:
        _, html_path = write_report(run_dir)
        typer.echo(f"report: {html_path}")
    if len(run_dirs) > 1:
        _, html_path = write_comparison(run_dirs, out)
        typer.echo(f"comparison: {html_path}")


@app.command()
def mia(
    run_dirs: list[Path] = typer.Argument(..., help="run folders with results.json + model.pt"),
    num_partitions: int = typer.Option(0, help="clients in the run (0: from results.json)"),
    score: str = typer.Option("loss", help="membership score: loss | confidence"),
) -> None:
    """Membership-inference audit of each run's final global model (writes mia.json)."""
    from fedsnn.core.privacy.mia_run import audit_run

    for run_dir in run_dirs:
        if not (run_dir / "model.pt").is_file():
            typer.echo(f"fedsnn mia: {run_dir} is not a finished run (no model.pt)", err=True)
            raise typer.Exit(code=2)
        _fail_unless_json_object("mia", run_dir / "results.json")
    for run_dir in run_dirs:
        try:
            r = audit_run(run_dir, num_partitions=num_partitions, score=score)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            # a results.json or model.pt from another version, or a bad --score
            typer.echo(f"fedsnn mia: {run_dir}: cannot audit this run "
                       f"({type(error).__name__}: {error})", err=True)
            raise typer.Exit(code=2) from None
        typer.echo(f"{run_dir}: AUC {r.auc:.3f}, TPR@1%FPR {r.tpr_at_1pct_fpr:.3f}, "
                   f"TPR@0.1%FPR {r.tpr_at_0_1pct_fpr:.3f}, balanced accuracy "
                   f"{r.balanced_accuracy:.3f} ({r.num_members} members / {r.num_nonmembers} "
                   f"non-members scored; FPR resolution {r.fpr_resolution:.2g})")


def _register_bench() -> None:
    from fedsnn.tools.bench.command import bench, bench_events

    app.command("bench")(bench)
    app.command("bench-events")(bench_events)


_register_bench()


@app.command()
def demo(
    host: str = typer.Option("127.0.0.1", help="address to bind (127.0.0.1: this machine only)"),
    port: int = typer.Option(7860, help="port to serve the page on"),
    runs_dir: Path = typer.Option(None, "--runs-dir",
                                  help="folder whose runs the Runs view lists, and the only "
                                       "one it reads (default: the run config's output-dir)"),
) -> None:
    """Start the local web demo: a curious server rebuilding a client's image, ANN beside SNN,
    with and without defenses; and the reports of your runs (needs the `demo` extra)."""
    try:
        from fedsnn.tools.demo.app import launch
    except ImportError as error:
        typer.echo(f"fedsnn demo: {error.name} is not installed; install the demo extra: "
                   "pip install -e '.[demo]'", err=True)
        raise typer.Exit(code=2) from None
    from fedsnn.core.config import RunConfig

    try:
        launch(host=host, port=port, runs_dir=runs_dir or RunConfig().resolved_output_dir())
    except OSError as error:
        typer.echo(f"fedsnn demo: cannot serve on {host}:{port}: {error}", err=True)
        raise typer.Exit(code=2) from None


@app.command("check-config")
def check_config(
    run_config: str = typer.Option("", "--run-config",
                                   help="overrides as for `flwr run --run-config`, e.g. "
                                        "\"num-server-rounds=3 model='lenet-snn'\""),
    federation_config: str = typer.Option("", "--federation-config",
                                          help="the federation it will run on, as for `flwr run "
                                               "--federation-config`, e.g. \"num-supernodes=5\""),
) -> None:
    """Check run-config overrides before a run: one line naming a bad key or value (an unknown
    key with the closest known one), or a setting the federation cannot meet (min-train-replies
    above its nodes), exit status 2; silent with status 0 when they are valid."""
    from fedsnn.tools.check_config import check_overrides

    problem = check_overrides(run_config, federation_config)
    if problem is not None:
        typer.echo(f"fedsnn check-config: {problem}", err=True)
        raise typer.Exit(code=2)


@app.command("config-doc")
def config_doc(
    pyproject: Path = typer.Option(Path("pyproject.toml"), help="the app's pyproject.toml"),
    out: Path = typer.Option(Path("docs/configuration.md"), help="where to write the reference"),
) -> None:
    """Regenerate the run-configuration reference from pyproject.toml."""
    from fedsnn.core.config_doc import config_reference

    out.write_text(config_reference(pyproject))
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    app()
