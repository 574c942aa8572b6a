"""The curious server: the aggregate is the inner strategy's, unchanged; failing attacks are
recorded and never stop the run; what it observes is exactly the client's gradient."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, FedMedian, Strategy

from attacks import AttackSettings, Observation, Reconstruction, Status
from fedsnn.core.training import batch_gradient
from fedsnn.audit import queue as audit_queue
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.observe import gradient_from_update, observe_update
from fedsnn.audit.plan import AuditPlan, parse_rounds
from fedsnn.audit.queue import AuditQueue
from fedsnn.core.config import ConfigError, RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec, build_model
from strategies.curious import CuriousServer
from fedsnn.tools.local_grid import server_identity

SPEC = ModelSpec("lenet")
# the train config the replies of `_replies` fit: one FedSGD step on <= 4 samples, lr 0.1
CONFIG = RunConfig(update_mode="gradient", batch_size=4, learning_rate=0.1)
FAST = AttackSettings(attack="idlg", iterations=2, lbfgs_max_eval=2)


def _plan(settings: AttackSettings = FAST) -> AuditPlan:
    return AuditPlan(rounds=None, max_clients=2, max_batch=8, settings=settings, workers=0)


def _replies(sent: dict[str, torch.Tensor], count: int = 4) -> list[Message]:
    """Replies of `count` clients that each took one SGD step on one digit (FedSGD)."""
    data = load_dataset("digits")
    model = build_model(SPEC)
    replies = []
    for client in range(count):
        model.load_state_dict(sent)
        _, grads = batch_gradient(model, data.train_x[client:client + 1],
                                  data.train_y[client:client + 1])
        state = {k: sent[k].double() - 0.1 * grads[k].double() for k in sent}
        instruction = Message(RecordDict(), dst_node_id=client + 1, message_type="train")
        metrics = MetricRecord({"num-examples": 1 + client, "partition-id": count - 1 - client,
                                "local-steps": 1})
        replies.append(Message(RecordDict({"arrays": ArrayRecord(state), "metrics": metrics}),
                               reply_to=instruction))
    return replies


def _aggregate(strategy: Strategy, sent: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    arrays, _ = strategy.aggregate_train(1, iter(_replies(sent)))  # a generator, as Flower may pass
    return {k: v.numpy() for k, v in arrays.to_torch_state_dict().items()}


@pytest.mark.parametrize("inner", [FedAvg, FedMedian])
def test_wrapping_leaves_the_aggregate_unchanged(inner: type[Strategy]) -> None:
    sent = build_model(SPEC, seed=0, dlg_init=True).state_dict()
    with server_identity():
        plain = _aggregate(inner(), sent)
        queue = AuditQueue(workers=0)
        curious = CuriousServer(inner(), plan=_plan(), queue=queue, spec=SPEC, config=CONFIG)
        curious.round_arrays = ArrayRecord(sent)
        wrapped = _aggregate(curious, sent)
        queue.drain(timeout_s=120)
    assert plain.keys() == wrapped.keys()
    assert all(np.array_equal(plain[k], wrapped[k]) for k in plain)
    assert curious.submitted == 2  # max-clients


def test_lowest_partition_ids_are_attacked_and_large_batches_skipped(tmp_path: Path) -> None:
    sent = build_model(SPEC, seed=0, dlg_init=True).state_dict()
    plan = AuditPlan(rounds=frozenset({1}), max_clients=3, max_batch=3, settings=FAST, workers=0)
    with server_identity():
        queue = AuditQueue(workers=0)
        curious = CuriousServer(FedAvg(), plan=plan, queue=queue, spec=SPEC, config=CONFIG)
        curious.round_arrays = ArrayRecord(sent)
        curious.aggregate_train(1, _replies(sent))
        curious.aggregate_train(2, _replies(sent))  # not an audited round
        jobs = [job for job, _ in queue.pending]
        queue.drain(timeout_s=120)
    # partition ids 3, 2, 1, 0 carry batches 1, 2, 3, 4: partition 0 (batch 4) is skipped
    assert sorted(job.partition_id for job in jobs) == [1, 2]
    assert [(s.partition_id, s.server_round) for s in curious.skipped] == [(0, 1)]


def _finish_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_attack: object) -> dict:
    import json

    monkeypatch.setattr(audit_queue, "run_attack", fake_attack)
    monkeypatch.setattr(audit_queue, "run_attacks",
                        lambda observations, settings, public=None: [fake_attack(o, settings)
                                                                 for o in observations])
    sent = build_model(SPEC, seed=0, dlg_init=True).state_dict()
    data = load_dataset("digits")
    with server_identity():
        curious = CuriousServer(FedAvg(), plan=_plan(), queue=AuditQueue(workers=0), spec=SPEC,
                                config=CONFIG)
        curious.round_arrays = ArrayRecord(sent)
        arrays, _ = curious.aggregate_train(1, _replies(sent))
    assert arrays is not None  # training goes on
    (tmp_path / "results.json").write_text(json.dumps({"config": {"model": "lenet"}, "rounds": []}))
    # partition p's reply is client 3 - p's one digit (`_replies`): the auditor's ground truth
    curious.finish(tmp_path, Auditor(data.train_x, data.train_y,
                                     ground_truth=lambda server_round, partition: [3 - partition]))
    return json.loads((tmp_path / "audit.json").read_text())


def test_an_attack_that_raises_is_recorded_as_failed(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    def boom(observation: Observation, settings: AttackSettings, public: object = None
             ) -> Reconstruction:
        raise RuntimeError("diverged badly")

    audit = _finish_with(monkeypatch, tmp_path, boom)
    assert [row["status"] for row in audit["attacks"]] == ["failed", "failed"]
    assert "diverged badly" in audit["attacks"][0]["message"]
    assert (tmp_path / "report.html").is_file()


def test_an_attack_that_returns_nan_is_recorded_as_failed(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    def nan_attack(observation: Observation, settings: AttackSettings, public: object = None
                   ) -> Reconstruction:
        return Reconstruction(observation.target_id, "idlg", torch.full((1, 1, 28, 28), math.nan),
                              torch.zeros(1, dtype=torch.long), math.nan, status=Status.OK)

    audit = _finish_with(monkeypatch, tmp_path, nan_attack)
    assert {row["status"] for row in audit["attacks"]} == {"failed"}
    assert audit["attacks"][0]["message"] == "non-finite reconstruction"


def test_fedsgd_reply_gives_back_the_clients_exact_gradient() -> None:
    data = load_dataset("digits")
    model = build_model(SPEC, seed=1, dlg_init=True)
    sent = {k: v.double() for k, v in model.state_dict().items()}  # a float64 global, as FedAvg
    _, grads = batch_gradient(model, data.train_x[:1], data.train_y[:1])
    returned = {k: sent[k].float().double() - 0.003 * grads[k].double() for k in sent}
    estimate = gradient_from_update(sent, returned, list(grads), lr=0.003, steps=1)
    assert all(torch.allclose(estimate[k], grads[k], rtol=1e-6, atol=1e-9) for k in grads)
    observation = observe_update("t", SPEC, sent, returned, lr=0.003, steps=5, batch_size=4)
    assert not observation.exact_gradient and observation.batch_size == 4
    assert not hasattr(observation, "sample_ids")  # ground truth has no way in


@pytest.mark.parametrize("text,expected", [("all", None), ("1", {1}), ("1, 5,10", {1, 5, 10})])
def test_parse_rounds(text: str, expected: set[int] | None) -> None:
    assert parse_rounds(text) == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize("text", ["", "0", "first", "1;2"])
def test_parse_rounds_rejects_bad_values(text: str) -> None:
    with pytest.raises(ConfigError, match="audit-rounds"):
        parse_rounds(text)


def test_rate_decoder_is_refused_unless_public_data_is_granted() -> None:
    from fedsnn.core.config import RunConfig

    with pytest.raises(ConfigError, match="needs public-data, which the threat model withholds"):
        AuditPlan.from_config(RunConfig(audit_attack="rate-decoder"))
    with pytest.raises(ConfigError, match="audit-public-data"):
        AuditPlan.from_config(RunConfig(audit_public_data="everything"))
    plan = AuditPlan.from_config(RunConfig(audit_attack="rate-decoder",
                                           audit_public_data="test-split"))
    data = load_dataset("digits")
    public = plan.public(data)
    assert public is not None and torch.equal(public.images, data.test_x)  # no client's data
    assert AuditPlan.from_config(RunConfig()).public(data) is None


def _audited_round(config: RunConfig) -> tuple[CuriousServer, list, dict]:
    """One audited round of `_replies` with the digits test split as the canaries' images: the
    curious server, its queued jobs and the global weights sent."""
    sent = build_model(SPEC, seed=0, dlg_init=True).state_dict()
    data = load_dataset("digits")
    with server_identity():
        queue = AuditQueue(workers=0)
        curious = CuriousServer(FedAvg(), plan=_plan(), queue=queue, spec=SPEC, config=config,
                                canary_images=(data.test_x, data.test_y))
        curious.round_arrays = ArrayRecord(sent)
        curious.aggregate_train(1, _replies(sent))
        jobs = [job for job, _ in queue.pending]
        queue.drain(timeout_s=120)
    return curious, jobs, sent


def test_every_audited_round_attacks_a_canary_made_like_a_client_update() -> None:
    """The positive control: the server trains the global model with the clients' settings on
    test-split images it holds and queues that update beside the clients' replies."""
    curious, jobs, sent = _audited_round(CONFIG)
    data = load_dataset("digits")
    canaries = [job for job in jobs if job.is_canary]
    assert len(jobs) == 3 and len(canaries) == 1 and curious.submitted == 2
    canary = canaries[0]
    # as large as the first attacked reply; a FedSGD step on those images, exactly observed
    assert canary.observation.batch_size == jobs[0].observation.batch_size == len(canary.canary_ids)
    model = build_model(SPEC)
    model.load_state_dict(sent)
    ids = torch.tensor(canary.canary_ids)
    _, expected = batch_gradient(model, data.test_x[ids], data.test_y[ids])
    for name, gradient in expected.items():
        assert torch.allclose(canary.observation.gradients[name], gradient, atol=1e-5)


def test_what_to_change_canaries_are_made_under_each_defense() -> None:
    """`audit-canary-defenses`: the round's canary again, trained under local DP; its update is
    noised (not the plain canary's), it carries its label and its model's accuracy."""
    from dataclasses import replace

    from strategies.curious import attach_audit, parse_canary_defenses

    _, jobs, _ = _audited_round(replace(CONFIG, audit_canary_defenses="local-dp:1"))
    data = load_dataset("digits")
    plain, defended = [job for job in jobs if job.is_canary]
    assert (plain.defense, defended.defense) == ("", "local-dp ε=1")
    assert plain.canary_ids == defended.canary_ids and defended.accuracy is not None
    name = "layers.fc3.weight" if "layers.fc3.weight" in plain.observation.gradients else \
        sorted(plain.observation.gradients)[-1]
    assert not torch.allclose(plain.observation.gradients[name],
                              defended.observation.gradients[name])
    with pytest.raises(ConfigError, match="audit-canary-defenses"):
        parse_canary_defenses("central-dp:8")
    with pytest.raises(ConfigError, match="audit-canary-defenses"):  # no noise calibrates to it
        attach_audit(FedAvg(), replace(CONFIG, audit_canary_defenses="local-dp:1000"), SPEC,
                     data)
