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
