"""Restarts of a reconstruction merged by consensus, a simple form of GradInversion's group
consistency (Yin et al., CVPR 2021): independent runs from different seeds each recover a
different part of a batch (at the MNIST target cell two runs identify about 13 of 32 images
each, 7-11 of them in common); aligned sample by sample and averaged, the hope is that the true
images add up and the runs' errors, which differ, are diluted. The unrolled attack then resumes
from the average (`AttackSettings.consensus_restarts`, `consensus_steps`; `attacks/unrolled.py`).
Measured there: a third more images on the development clients, none more on held-out ones
(docs/results.md, "A consensus of two restarts at the MNIST cell"); opt-in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attacks.types import Reconstruction
from fedsnn.core.metrics.matching import match_by_mse


def anchor_run(runs: Sequence[Reconstruction]) -> Reconstruction:
    """The run the others are aligned to: the lowest matching loss (as `restarts` keeps)."""
    if not runs:
        raise ValueError("Expected at least one run to merge")
    return min(runs, key=lambda run: run.matching_loss)


def aligned_mean(runs: Sequence[Reconstruction]) -> torch.Tensor:
    """The runs' images averaged sample by sample, each run's samples first put in the order of
    `anchor_run`'s by optimal assignment on MSE (the runs' slots are in no common order).

    Example:
        >>> from attacks.types import Reconstruction
        >>> a = Reconstruction("t", "unrolled", torch.tensor([[0.0], [1.0]]), torch.zeros(2),
        ...                    matching_loss=0.1)
        >>> b = Reconstruction("t", "unrolled", torch.tensor([[0.8], [0.2]]), torch.zeros(2),
        ...                    matching_loss=0.2)
        >>> [round(v, 3) for v in aligned_mean([a, b]).flatten().tolist()]
        [0.1, 0.9]
    """
    anchor = anchor_run(runs).inputs
    aligned = [run.inputs[match_by_mse(run.inputs, anchor)] for run in runs]
    return torch.stack(aligned).mean(0)
