"""The experiments' figures: panels side by side, drawn off-screen and saved as one PNG; and the
accuracy-and-PSNR-against-ε pair that the defense matrix and the privacy frontier both draw."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DPI = 110


@contextmanager
def panels(path: Path, count: int, figsize: tuple[float, float]) -> Iterator[tuple[Any, Any]]:
    """A figure of `count` panels in a row; (figure, axes) for the block to draw on, then laid
    out, saved to `path` and closed when the block ends."""
    import matplotlib  # here: the experiments import without matplotlib until they plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, count, figsize=figsize)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)


def scored(xs: list[float], ys: list[float | None]) -> tuple[list[float], list[float]]:
    """The points with a value: a run with no attack scored has no PSNR, and a line of only
    missing values cannot be drawn on a log axis."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and y == y]
    return [x for x, _ in pairs], [y for _, y in pairs]


@contextmanager
def accuracy_psnr_panels(path: Path, *, xlabel: str, title: str, psnr_title: str
                         ) -> Iterator[tuple[Any, Any]]:
    """Two panels against ε on a log axis, final test accuracy (left) and the attack's PSNR
    (right, titled `psnr_title`), each titled "`title`: ..."; the block draws the lines (and the
    legends), the axes are labelled and the figure saved to `path` when it ends."""
    with panels(path, 2, (12, 4.5)) as (_, (left, right)):
        yield left, right
        for ax, name in ((left, "final test accuracy"), (right, psnr_title)):
            low, high = ax.dataLim.intervalx
            if 0 < low <= high < float("inf"):  # a panel with no point (none scored) stays linear
                ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_title(f"{title}: {name}")
            ax.grid(alpha=0.3)
