"""The replay-basin diagnostic (experiments/replay_basin.py): started at the client's images the
replayed update matches exactly, and the search from a noisy start never ends above it."""

from experiments.replay_basin import basin_row
from fedsnn.core.data import load_dataset


def test_the_truth_matches_and_the_search_ends_no_higher_than_its_start():
    data = load_dataset("digits", 28)
    row = basin_row(data, client=0, optimizer="adam", images=2, steps=2, sigma=0.05,
                    iterations=10, lr=0.001)
    assert row["loss-truth"] < 1e-8 < row["loss-start"]
    assert row["loss-end"] <= row["loss-start"] and row["mse-start"] > 0
