"""experiments/learned_inverter's summary: the attack tested against the stronger of its nulls."""

from experiments.learned_inverter import summary


def _rows(attack: list[int], public: list[int], noise: list[int]) -> list[dict]:
    return [{"client": i, "images": 32, "attack": a, "random public images": p, "noise images": n}
            for i, (a, p, n) in enumerate(zip(attack, public, noise, strict=True))]


def test_the_attack_is_tested_against_the_stronger_null():
    above = summary(_rows([3] * 20, [0] * 20, [1] * 20))["attack"]
    assert above["strongest_null"] == "noise images" and above["p_value"] < 1e-4
    level = summary(_rows([1] * 20, [0] * 20, [1] * 20))["attack"]
    assert level["p_value"] > 0.4 and level["successes"] == 20 and level["trials"] == 640


def test_the_by_class_diagnostic_splits_classes_seen_once_from_shared_ones():
    from types import SimpleNamespace

    import torch

    from attacks import Reconstruction
    from experiments.learned_inverter import by_class

    train_x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    train_y = torch.tensor([0, 1, 1, 2] * 5)
    data = SimpleNamespace(train_x=train_x, train_y=train_y)
    ids = torch.tensor([0, 1, 2])  # class 0 once, class 1 twice
    # class 0 decoded as its own sample, class 1 (twice) as a sample of class 2
    images = torch.stack([train_x[0], train_x[3], train_x[3]])
    found = by_class(Reconstruction("c", "x", images, torch.tensor([0, 1, 1]), 0.0), ids, data)
    assert found == {"single-classes": 1, "single-found": 1, "shared-classes": 1,
                     "shared-found": 0, "histogram-exact": 1}
