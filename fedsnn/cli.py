"""The `fedsnn` command line. Each sub-command lives in its own module and is registered here."""

from __future__ import annotations

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


if __name__ == "__main__":
    app()
