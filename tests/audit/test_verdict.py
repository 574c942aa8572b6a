"""The verdict is a test against nulls scored through the identical pipeline (issue 26)."""

from __future__ import annotations

import math

import pytest
import torch

from attacks import AttackSettings, Observation, Reconstruction, Status
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.chance import matched_noise
from fedsnn.audit.decision import Count, Outcome, decide, rate_test
from fedsnn.audit.queue import AuditJob
from fedsnn.audit.session import score_finished
from fedsnn.audit.verdict import leakage_summary
from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec

N = 16


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", 28)


def _job(partition: int, ids: list[int], *, canary: bool = False) -> AuditJob:
    observation = Observation(f"p{partition}", ModelSpec("lenet"), {}, {}, batch_size=len(ids))
    return AuditJob(1, partition, observation, AttackSettings(attack="unrolled", iterations=200),
                    canary_ids=tuple(ids) if canary else ())


def _rec(images: torch.Tensor, labels: torch.Tensor, status: Status = Status.OK,
         steps: int = 200) -> Reconstruction:
    return Reconstruction("t", "unrolled", images, labels, 0.0, loss_history=[0.0] * steps,
                          status=status)


def _auditor(digits, truth: dict[int, list[int]], judge=None) -> Auditor:
    return Auditor(digits.train_x, digits.train_y, judge,
                   ground_truth=lambda _round, partition: truth.get(partition),
                   public_x=digits.test_x, public_y=digits.test_y,
                   native_size=digits.native_size)


def _audit(auditor: Auditor, finished) -> dict:
    rows = score_finished(auditor, finished)
    for row in rows:
        row.pop("_images", None)
    return leakage_summary({"attacks": rows, "baselines": {}, "skipped": []})


def _ids(start: int) -> list[int]:
    return list(range(start, start + N))


def _canary(digits, exact: bool, status: Status = Status.OK):
    ids = list(range(N))
    images = digits.test_x[ids] if exact else matched_noise(
        N, (1, 28, 28), digits.native_size, torch.Generator().manual_seed(9))
    return _job(-1, ids, canary=True), _rec(images, digits.test_y[ids], status)


def test_matched_noise_through_the_auditor_is_no_evidence(digits) -> None:
    truth = {0: _ids(0), 1: _ids(100)}
    generator = torch.Generator().manual_seed(1)
    finished = [(_job(p, ids), _rec(matched_noise(N, (1, 28, 28), 8, generator),
                                    torch.randint(0, 10, (N,), generator=generator)))
                for p, ids in truth.items()]
    summary = _audit(_auditor(digits, truth), [*finished, _canary(digits, exact=True)])
    verdict = summary["verdict"]
    assert verdict["outcome"] == Outcome.NO_EVIDENCE.value, verdict["sentence"]
    assert verdict["canary-has-power"] and verdict["complete"]
    identified = summary["tests"]["identified"]
    assert {"matched-noise", "public-draws", "permutation"} <= set(identified["nulls"])
    assert identified["counts"]["attack"][1] == 2 * N  # counts beside the rates
    assert identified["intervals"]["attack"]["clusters"] == 2


def test_exact_reconstructions_are_a_leak(digits) -> None:
    truth = {0: _ids(0), 1: _ids(100)}
    finished = [(_job(p, ids), _rec(digits.train_x[ids].flip(0), digits.train_y[ids].flip(0)))
                for p, ids in truth.items()]
    summary = _audit(_auditor(digits, truth), finished)
    assert summary["verdict"]["outcome"] == Outcome.LEAK.value
    assert summary["tests"]["identified"]["attack"] == 1.0
    assert summary["tests"]["identified"]["p_value"] < 1e-6
    assert summary["tests"]["label-accuracy"]["attack"] == 1.0


def test_a_timed_out_attack_with_a_powerless_canary_is_inconclusive(digits) -> None:
    truth = {0: _ids(0)}
    placeholder = _rec(torch.full((N, 1, 1, 1), math.nan), torch.full((N,), -1), Status.TIMEOUT,
                       steps=37)
    auditor = _auditor(digits, truth)
    finished = [(_job(0, truth[0]), placeholder),
                _canary(digits, exact=False, status=Status.TIMEOUT)]
    rows = score_finished(auditor, finished)
    client = rows[0]
    assert client["status"] == "timeout" and client["lower-bound"]
    assert client["tests"]["identified"]["counts"]["attack"] == [0, N]  # stays in the denominator
    assert (client["steps-done"], client["steps-planned"]) == (37, 200)
    summary = leakage_summary({"attacks": rows, "baselines": {}, "skipped": []})
    verdict = summary["verdict"]
    assert verdict["outcome"] == Outcome.INCONCLUSIVE.value
    assert not verdict["complete"] and "37 of 200 steps" in verdict["unfinished"]
    assert "cannot detect" in verdict["sentence"] and "at least" in verdict["sentence"]
    assert client["verdict"]["outcome"] == Outcome.INCONCLUSIVE.value


def test_the_judge_baseline_is_the_largest_class_of_the_scored_set(digits) -> None:
    """On an unbalanced 2-class set a constant answer scores 65 %: an ASR at that level is not
    a leak, though it beats the fit split's majority (here 35 %)."""
    zeros = (digits.train_y == 0).nonzero().flatten()[:13].tolist()
    ones = (digits.train_y == 1).nonzero().flatten()[:7].tolist()
    truth = {0: zeros + ones}

    def always_zero(images: torch.Tensor) -> torch.Tensor:
        return torch.eye(10)[torch.zeros(len(images), dtype=torch.long)]

    generator = torch.Generator().manual_seed(2)
    noise = matched_noise(20, (1, 28, 28), 8, generator)
    summary = _audit(_auditor(digits, truth, judge=always_zero),
                     [(_job(0, truth[0]), _rec(noise, torch.zeros(20, dtype=torch.long)))])
    asr = summary["tests"]["asr"]
    assert asr["attack"] == pytest.approx(0.65)
    assert asr["counts"]["largest-class"] == [13, 20]
    assert asr["nulls"]["largest-class"] == pytest.approx(0.65) == asr["chance"]
    assert asr["p_value"] > 0.05  # not beyond a constant answer


def test_decide_reads_the_canary_and_completeness() -> None:
    chance = rate_test("identified", Count(1, 20), {"public-draws": Count(2, 40)})
    strong = rate_test("identified", Count(15, 20), {"public-draws": Count(1, 40)})
    assert decide(chance, canary=strong).outcome == Outcome.NO_EVIDENCE
    assert decide(chance, canary=chance).outcome == Outcome.INCONCLUSIVE
    assert decide(chance, complete=False).outcome == Outcome.INCONCLUSIVE
    assert decide(chance).outcome == Outcome.NO_EVIDENCE
    assert decide(strong, canary=chance).outcome == Outcome.LEAK


def test_without_public_images_the_draws_leave_out_the_clients_own(digits) -> None:
    """A client auditing its own reply has no test split: the draws come from its own data,
    never from the images the update was made of (they would be "identified" trivially)."""
    truth = {0: _ids(0)}
    auditor = Auditor(digits.train_x[:40], digits.train_y[:40],
                      ground_truth=lambda _round, partition: truth.get(partition))
    generator = torch.Generator().manual_seed(3)
    row = score_finished(auditor, [(_job(0, truth[0]), _rec(
        matched_noise(N, (1, 28, 28), 8, generator), torch.zeros(N, dtype=torch.long)))])[0]
    assert row["tests"]["identified"]["counts"]["public-draws"][0] == 0
