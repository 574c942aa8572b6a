"""The `fedsnn` command line. Each sub-command lives in its own module and is registered here."""

from __future__ import annotations

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
    from fedsnn.summary import summarize

    all_ok = True
    for run_dir in run_dirs:
        line, ok = summarize(run_dir)
        all_ok &= ok
        typer.echo(line)
    if not all_ok:
        raise typer.Exit(code=1)


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
    from fedsnn.privacy.mia_run import audit_run

    for run_dir in run_dirs:
        r = audit_run(run_dir, num_partitions=num_partitions, score=score)
        typer.echo(f"{run_dir}: AUC {r.auc:.3f}, TPR@1%FPR {r.tpr_at_1pct_fpr:.3f}, "
                   f"TPR@0.1%FPR {r.tpr_at_0_1pct_fpr:.3f}, balanced accuracy "
                   f"{r.balanced_accuracy:.3f} ({r.num_members} members / {r.num_nonmembers} "
                   f"non-members scored; FPR resolution {r.fpr_resolution:.2g})")


def _register_bench() -> None:
    from fedsnn.tools.bench.command import bench

    app.command("bench")(bench)


_register_bench()


@app.command("config-doc")
def config_doc(
    pyproject: Path = typer.Option(Path("pyproject.toml"), help="the app's pyproject.toml"),
    out: Path = typer.Option(Path("docs/configuration.md"), help="where to write the reference"),
) -> None:
    """Regenerate the run-configuration reference from pyproject.toml."""
    from fedsnn.config_doc import config_reference

    out.write_text(config_reference(pyproject))
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    app()
