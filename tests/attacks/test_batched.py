"""The vectorized DLG/iDLG engine against the one-at-a-time path (attacks/batched.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from attacks import AttackSettings, Observation, Status, invert
from attacks.batched import invert_batched
from attacks.replicated import per_target_gradients, replicate, replicated_logits
from tests.attacks.conftest import no_fallback
from tests.attacks.victims import observe

TARGETS = 8


@pytest.fixture(autouse=True)
def no_silent_fallback(caplog):
    """The vectorized path, not its one-at-a-time fallback (threads: 1, tests/conftest.py)."""
    with no_fallback(caplog, "attacks.batched"):
        yield


def targets(digits: tuple[torch.Tensor, torch.Tensor], model: str, n: int = TARGETS
            ) -> tuple[list[Observation], torch.Tensor]:
    """n fixed targets: digit i seen through a fresh model seeded i."""
    x, y = digits
    return [observe(model, x[i:i + 1], y[i:i + 1], seed=i) for i in range(n)], x[:n]


@pytest.mark.parametrize("model", ["lenet", "lenet-snn", "lenet5", "lenet5-snn"])
def test_replicated_gradients_are_each_clients_gradient(digits, model):
    observations, x = targets(digits, model, 3)
    victim = replicate(observations)
    weights = {n: w.clone().requires_grad_(n in victim.attacked) for n, w in victim.weights.items()}
    logits = replicated_logits(victim, weights, x.unsqueeze(1))
    loss = F.cross_entropy(logits[:, 0], digits[1][:3], reduction="none")
    gradients = per_target_gradients(victim, weights, loss)
    for j, name in enumerate(victim.attacked):
        for k, observation in enumerate(observations):
            torch.testing.assert_close(gradients[j][k].detach(), observation.gradients[name],
                                       rtol=1e-4, atol=1e-4)


# Adam follows the single run closely; L-BFGS at lr 1 (fixed steps, DLG's setting) amplifies the
# float noise of grouped vs plain convolutions within a few steps, so it is compared after one step
# here and by outcome (label, success) in the slow test below.
@pytest.mark.parametrize("model,optimizer,iterations",
                         [("lenet", "lbfgs", 1), ("lenet", "adam", 5), ("lenet-snn", "adam", 5)])
def test_each_targets_trajectory_is_its_single_run(digits, model, optimizer, iterations):
    observations, _ = targets(digits, model)
    settings = AttackSettings(attack="idlg", iterations=iterations, optimizer=optimizer)
    single = invert(observations, settings)
    batched = invert(observations, settings, vectorize=True)
    for one, many in zip(single, batched, strict=True):
        assert many.target_id == one.target_id and torch.equal(many.labels, one.labels)
        torch.testing.assert_close(torch.tensor(many.loss_history), torch.tensor(one.loss_history),
                                   rtol=2e-3, atol=1e-6)
        # L-BFGS at lr 1 amplifies float noise (grouped vs plain convolutions) a little per step
        assert float(((many.inputs - one.inputs) ** 2).mean()) < 5e-4


def test_idlg_lenet_outcome_matches_one_at_a_time_on_8_targets(digits):
    observations, x = targets(digits, "lenet")
    settings = AttackSettings(attack="idlg", iterations=30, stop_loss=1e-7)
    single = invert(observations, settings)
    batched = invert_batched(observations, settings, max_batch=TARGETS)

    def success(reconstruction, i):
        return float(((reconstruction.inputs - x[i:i + 1]) ** 2).mean()) <= 1e-3

    assert [int(r.labels[0]) for r in batched] == [int(r.labels[0]) for r in single]
    assert [success(r, i) for i, r in enumerate(batched)] == [success(r, i) for i, r in enumerate(single)]
    assert sum(success(r, i) for i, r in enumerate(batched)) >= TARGETS // 2


def test_diverging_target_does_not_disturb_the_others(digits):
    observations, _ = targets(digits, "lenet")
    broken = dataclasses.replace(observations[3], gradients={
        name: torch.full_like(g, float("nan")) for name, g in observations[3].gradients.items()})
    settings = AttackSettings(attack="dlg", iterations=3, optimizer="adam")
    clean = invert_batched(observations, settings)
    mixed = invert_batched(observations[:3] + [broken] + observations[4:], settings)
    assert mixed[3].status == Status.DIVERGED and torch.isfinite(mixed[3].inputs).all()
    for i, (one, other) in enumerate(zip(clean, mixed, strict=True)):
        if i != 3:
            assert other.status == one.status == Status.OK
            assert other.loss_history == pytest.approx(one.loss_history, rel=1e-4)
            torch.testing.assert_close(other.inputs, one.inputs, rtol=0, atol=1e-4)


def test_mixed_models_keep_order_and_dlg_runs_on_snn(digits):
    ann, _ = targets(digits, "lenet", 2)
    snn, _ = targets(digits, "lenet-snn", 2)
    observations = [ann[0], snn[0], ann[1], snn[1]]
    results = invert(observations, AttackSettings(attack="dlg", iterations=2), vectorize=2)
    assert [r.target_id for r in results] == [o.target_id for o in observations]
    assert all(r.status == Status.OK and r.inputs.shape == (1, 1, 28, 28) for r in results)
    assert all(len(r.loss_history) >= 1 and r.labels.shape == (1,) for r in results)


def test_audit_queue_runs_a_rounds_jobs_through_the_engine(digits):
    from fedsnn.audit.queue import AuditJob, AuditQueue

    observations, _ = targets(digits, "lenet", 3)
    settings = AttackSettings(attack="idlg", iterations=1)
    queue = AuditQueue(workers=0)
    queue.submit_many([AuditJob(1, i, o, settings) for i, o in enumerate(observations)])
    finished = queue.drain(timeout_s=120)
    expected = invert(observations, settings, vectorize=True)
    assert [job.partition_id for job, _ in finished] == [0, 1, 2]
    for (_, reconstruction), one in zip(finished, expected, strict=True):
        assert reconstruction.target_id == one.target_id
        assert reconstruction.loss_history == pytest.approx(one.loss_history, rel=1e-5)


def test_a_batch_that_raises_fails_only_its_bad_target(digits):
    observations, _ = targets(digits, "lenet", 3)
    name = next(iter(observations[1].gradients))
    bad = dataclasses.replace(observations[1], gradients={**observations[1].gradients,
                                                          name: torch.zeros(3)})
    results = invert_batched([observations[0], bad, observations[2]],
                             AttackSettings(attack="idlg", iterations=1))
    assert [r.status for r in results] == [Status.OK, Status.FAILED, Status.OK]
    assert "shape" in results[1].message


def test_refilled_slots_follow_each_targets_single_run(digits):
    """K = 3 slots for 8 targets, with a target that diverges at once: its slot is refilled while
    the others are mid-run, so rows at different Adam steps share the batch; every target's
    history is still its single run's."""
    observations, _ = targets(digits, "lenet")
    broken = dataclasses.replace(observations[1], gradients={
        name: torch.full_like(g, float("nan")) for name, g in observations[1].gradients.items()})
    observations[1] = broken
    settings = AttackSettings(attack="dlg", iterations=4, optimizer="adam")
    single = invert(observations, settings)
    streamed = invert_batched(observations, settings, max_batch=3)
    assert [r.target_id for r in streamed] == [o.target_id for o in observations]
    assert streamed[1].status == Status.DIVERGED and len(streamed[1].loss_history) == 1
    for i, (one, many) in enumerate(zip(single, streamed, strict=True)):
        if i != 1:
            assert many.status == Status.OK and len(many.loss_history) == 4
            assert many.loss_history == pytest.approx(one.loss_history, rel=2e-3)


def test_restarts_are_streamed_like_the_runner(digits):
    """Each target's second restart runs in a refilled slot and the better one is kept, as
    `attacks.runner.invert_one` does."""
    observations, _ = targets(digits, "lenet", 4)
    settings = AttackSettings(attack="dlg", iterations=3, optimizer="adam", restarts=2, accept_loss=None)
    single = invert(observations, settings)
    streamed = invert_batched(observations, settings, max_batch=2)
    for one, many in zip(single, streamed, strict=True):
        assert many.restart == one.restart
        assert many.matching_loss == pytest.approx(one.matching_loss, rel=1e-3)
        assert many.loss_history == pytest.approx(one.loss_history, rel=2e-3)


def test_refilled_lbfgs_slots_start_with_a_fresh_history(digits):
    """L-BFGS rows refilled with a new target start over (first step scaled by 1/|g|_1, empty
    curvature memory), as the single run does."""
    observations, _ = targets(digits, "lenet")
    settings = AttackSettings(attack="idlg", iterations=3, lbfgs_max_eval=2, stop_loss=None)
    single = invert(observations, settings)
    streamed = invert_batched(observations, settings, max_batch=3)
    for one, many in zip(single, streamed, strict=True):
        assert many.loss_history == pytest.approx(one.loss_history, rel=2e-3)
