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


if __name__ == "__main__":
    app()
