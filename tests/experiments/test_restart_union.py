"""The restart-union diagnostic (experiments/restart_union.py): its attacker-side merge keeps a
swap only when the matching loss drops, so the truth's samples replace wrong ones."""

import torch

from attacks.settings import unrolled_preset
from attacks.types import Reconstruction
from experiments.restart_union import merged_by_loss
from tests.attacks.test_unrolled import _sgd_reply


def test_the_merge_takes_the_other_runs_true_samples_and_lowers_the_loss():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand((3, 1, 28, 28), generator=generator), torch.tensor([1, 7, 4])
    observation = _sgd_reply(x, y, epochs=2)
    kept = x.clone()
    # two samples wrong, still nearer their own truth than another's (so assigned to it)
    kept[[0, 2]] = (x[[0, 2]] + 0.3 * torch.randn((2, 1, 28, 28), generator=generator)).clamp(0, 1)
    wrong = Reconstruction("t", "unrolled", kept, y.clone(), 1.0)
    # the other run holds the truth in another order
    truth = Reconstruction("t", "unrolled", x[[2, 0, 1]], y[[2, 0, 1]], 0.0)
    images, loss, swaps = merged_by_loss([observation], wrong, truth, unrolled_preset())
    assert torch.equal(images, x) and swaps == 2 and loss < 1e-8


def test_the_per_image_pick_takes_the_lower_scoring_of_each_pair():
    from experiments.restart_union import picked

    kept, other = torch.zeros(3, 1, 2, 2), torch.ones(3, 1, 2, 2)
    chosen = picked(kept, other, torch.tensor([0.5, 0.1, 0.3]), torch.tensor([0.2, 0.4, 0.3]))
    assert chosen[:, 0, 0, 0].tolist() == [1.0, 0.0, 0.0]  # a tie keeps the kept run's image
