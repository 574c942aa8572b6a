"""attacks/progress.py: a listener sees every step of the shared optimization loop and can stop it;
without one, attacks run exactly as before."""

from __future__ import annotations

import threading

import torch

from attacks import AttackSettings, invert
from attacks.progress import Step, watch


def test_a_listener_sees_each_step_and_its_best_iterate(victim) -> None:
    observation, x, _ = victim("lenet")
    steps: list[Step] = []
    settings = AttackSettings(attack="idlg", iterations=4)
    with watch(steps.append):
        watched = invert([observation], settings)[0]
    assert [s.index for s in steps] == list(range(len(watched.loss_history)))
    assert steps[-1].best[0].shape == x.shape  # iDLG's snapshot: (dummy inputs, labels)
    plain = invert([observation], settings)[0]  # no listener: same result
    assert torch.equal(plain.inputs, watched.inputs)


def test_a_listener_that_returns_false_stops_the_attack_with_its_best_iterate(victim) -> None:
    observation, _, _ = victim("lenet")
    with watch(lambda step: step.index < 1):
        stopped = invert([observation], AttackSettings(attack="idlg", iterations=50))[0]
    assert len(stopped.loss_history) == 2
    assert "stopped by the caller" in stopped.message and stopped.status.value == "ok"


def test_a_listener_watches_only_its_own_thread(victim) -> None:
    observation, _, _ = victim("lenet")
    seen: list[Step] = []
    with watch(seen.append):
        other = threading.Thread(target=invert, args=([observation],
                                                      AttackSettings(attack="idlg", iterations=2)))
        other.start()
        other.join()
    assert seen == []
