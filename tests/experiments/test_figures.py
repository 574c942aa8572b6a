"""The experiments' figures are drawn even when some runs have no attack scored."""

from __future__ import annotations

from pathlib import Path

from experiments import privacy_frontier
from experiments.figures import scored


def test_scored_drops_points_without_a_value() -> None:
    assert scored([1.0, 2.0, 4.0], [None, 3.0, float("nan")]) == ([2.0], [3.0])


def test_the_frontier_is_drawn_when_no_dp_point_was_scored(tmp_path: Path) -> None:
    # Empty Poisson batches leave a DP run without a scored reply: its PSNR is None. The plot
    # used to fail on the log axis ("Data cannot be log-scaled").
    cells = {"train|lenet|none": {"epsilon": None, "sigma": 0.0, "accuracy": 0.9},
             "leak|lenet|none": {"psnr": 40.0, "guess-psnr": 12.0, "scored": 2},
             "train|lenet|eps-64": {"epsilon": 64.0, "sigma": 1.0, "accuracy": 0.8},
             "train|lenet|eps-256": {"epsilon": 256.0, "sigma": 0.5, "accuracy": 0.85}}
    path = tmp_path / "frontier.png"
    privacy_frontier.plot(cells, ["lenet"], path)
    assert path.stat().st_size > 0
