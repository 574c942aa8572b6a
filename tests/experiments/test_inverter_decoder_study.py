"""experiments/inverter_decoder_study: a decoder's class images scored class by class, over
clients, with the true class counts."""

from types import SimpleNamespace

import torch

from experiments.inverter_decoder_study import found_by_class


def test_each_present_class_is_scored_once_and_summed_over_clients():
    train_x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    train_y = torch.tensor([0, 1, 1, 2] * 5)
    data = SimpleNamespace(train_x=train_x, train_y=train_y)
    # the decoder ignores its rows: class 0 -> sample 0, class 1 -> sample 3 (a class-2 image),
    # class 2 -> sample 3
    images = torch.stack([train_x[0], train_x[3], train_x[3]])
    decoder = lambda rows: images  # noqa: E731
    truth = torch.tensor([[0, 1, 2], [0, 3, 7]])  # client 1: classes 0, 1 x2; client 2: 0, 2 x2
    found = found_by_class(decoder, torch.zeros(2, 3, 5), truth, data)
    assert found == {"single-classes": 2, "single-found": 2, "shared-classes": 2,
                     "shared-found": 1}
