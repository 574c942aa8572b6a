"""The curious server under a declared threat model: refused attacks and replies that do not fit
the train config are recorded as skipped with a reason; training goes on."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from fedsnn.audit.plan import AuditPlan, unused_capabilities
from fedsnn.audit.queue import AuditQueue
from fedsnn.core.config import ConfigError, RunConfig
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.tools.local_grid import server_identity
from strategies.curious import CuriousServer

SPEC = ModelSpec("lenet")


class RecordingQueue(AuditQueue):
    """Keeps the submitted jobs without running them."""

    def submit_many(self, jobs: list) -> None:
        self.pending.extend((job, None) for job in jobs)


def _reply(sent: dict[str, torch.Tensor], partition: int, examples: int, steps: int) -> Message:
    state = {k: v - 0.01 for k, v in sent.items()}  # any update: the attacks do not run here
    metrics = MetricRecord({"num-examples": examples, "partition-id": partition,
                            "local-steps": steps})
    instruction = Message(RecordDict(), dst_node_id=partition + 1, message_type="train")
    return Message(RecordDict({"arrays": ArrayRecord(state), "metrics": metrics}),
                   reply_to=instruction)


def _observe(config: RunConfig, replies: list[tuple[int, int]],
             native_size: int | None = None) -> CuriousServer:
    sent = build_model(SPEC, seed=0).state_dict()
    plan = AuditPlan.from_config(config)
    with server_identity():
        curious = CuriousServer(FedAvg(), plan=plan, queue=RecordingQueue(workers=0), spec=SPEC,
                                config=config, native_size=native_size)
        curious.round_arrays = ArrayRecord(sent)
        curious._observe(1, [_reply(sent, p, n, s) for p, (n, s) in enumerate(replies)])
        curious.queue.close()
    return curious


def test_auto_runs_the_unrolled_attack_on_fedavg_replies_that_fit() -> None:
    config = RunConfig(local_epochs=2, batch_size=16, audit_max_clients=1)
    curious = _observe(config, [(32, 4)])
    assert [job.settings.attack for job, _ in curious.queue.pending] == ["unrolled"]
    observation = curious.queue.pending[0][0].observation
    assert observation.training.steps == 4 and observation.training.shuffle_seed is None
    assert observation.delta is not None


@pytest.mark.parametrize(("optimizer", "attack"), [("sgd", "unrolled"), ("adam", "learned-inverter")])
def test_auto_with_public_data_reads_an_ann_fedavg_reply_by_its_optimizer(optimizer: str,
                                                                          attack: str) -> None:
    """The server passes the reply's optimizer and model family to `choose`: lenet's SGD replies
    get the unrolled attack, its Adam replies the learned inverter."""
    config = RunConfig(local_epochs=2, batch_size=16, audit_max_clients=1, optimizer=optimizer,
                       audit_public_data="test-split")
    curious = _observe(config, [(32, 4)])
    assert [job.settings.attack for job, _ in curious.queue.pending] == [attack]


def test_withheld_epochs_refuse_the_unrolled_attack_with_a_reason() -> None:
    config = RunConfig(audit_attack="unrolled", audit_withhold="local-epochs")
    curious = _observe(config, [(32, 4)])
    assert curious.submitted == 0
    assert curious.skipped[0].reason == ("attack 'unrolled' needs local-epochs, which the threat "
                                         "model withholds")
    # auto falls back to the strongest attack the threat model still grants
    fallback = AuditPlan.from_config(RunConfig(audit_withhold="local-epochs"))
    assert fallback.choose("fedavg", 32).attack == "idlg"


def test_the_data_format_reaches_the_attack_only_when_the_threat_model_grants_it() -> None:
    granted = _observe(RunConfig(local_epochs=2, batch_size=16), [(32, 4)], native_size=8)
    assert granted.queue.pending[0][0].observation.native_size == 8
    assert "data-format" in granted.plan.threat_model.to_dict()["granted"]
    withheld = _observe(RunConfig(local_epochs=2, batch_size=16, audit_withhold="data-format"),
                        [(32, 4)], native_size=8)
    assert withheld.queue.pending[0][0].observation.native_size is None
    assert "data-format" in withheld.plan.threat_model.to_dict()["withheld"]
    assert "withheld: data-format" in withheld.describe()


def test_granted_client_randomness_gives_the_shuffle_seed() -> None:
    config = RunConfig(local_epochs=2, batch_size=16, audit_grant="client-randomness")
    curious = _observe(config, [(32, 4)])
    assert curious.queue.pending[0][0].observation.training.shuffle_seed is not None
    assert "client-randomness" in curious.plan.threat_model.to_dict()["granted"]


def test_replies_that_do_not_fit_the_train_config_are_skipped() -> None:
    config = RunConfig(local_epochs=2, batch_size=16, audit_max_clients=3)
    curious = _observe(config, [(32, 3), (0, 0), (32, 4)])
    assert curious.submitted == 1
    reasons = {s.partition_id: s.reason for s in curious.skipped}
    assert reasons[0] == "local-steps 3 do not fit local-epochs 2 x ceil(32 / batch-size 16) = 4"
    assert reasons[1] == "num-examples 0 < 1"


def test_unknown_capability_in_the_run_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="audit-withhold: unknown capability 'epochs'"):
        AuditPlan.from_config(RunConfig(audit_withhold="epochs"))


def test_auto_with_public_data_runs_the_attacks_that_read_it() -> None:
    # FedSGD: the strongest mode, the rate decoder among its candidates; FedAvg: the learned
    # inverter. Without public data auto is iDLG and the unrolled attack.
    granted = AuditPlan.from_config(RunConfig(audit_public_data="test-split"))
    assert granted.choose("gradient", 1).attack == "strongest"
    assert granted.choose("gradient", 10).attack == "strongest"
    assert granted.choose("gradient", 11).attack == "unrolled"  # beyond what the decoder reads
    assert granted.choose("fedavg", 32).attack == "learned-inverter"
    # the inverter reads Adam's near-copies in the head rows; an ANN's SGD reply gets the unrolled
    # attack (MNIST 32 x 4 SGD: inverter 0 of 64, unrolled 15 of 64, docs/results.md)
    assert granted.choose("fedavg", 32, optimizer="adam", spiking=False).attack == "learned-inverter"
    assert granted.choose("fedavg", 32, optimizer="sgd", spiking=True).attack == "learned-inverter"
    assert granted.choose("fedavg", 32, optimizer="sgd", spiking=False).attack == "unrolled"
    plain = AuditPlan.from_config(RunConfig())
    assert plain.choose("gradient", 1).attack == "idlg"
    assert plain.choose("fedavg", 32).attack == "unrolled"
    # withheld local epochs refuse the learned inverter too: auto falls back to iDLG
    weak = AuditPlan.from_config(RunConfig(audit_public_data="test-split",
                                           audit_withhold="local-epochs"))
    assert weak.choose("fedavg", 32).attack == "idlg"


def test_withheld_public_data_wins_over_the_public_split() -> None:
    plan = AuditPlan.from_config(RunConfig(audit_public_data="test-split",
                                           audit_withhold="public-data"))
    assert not plan.threat_model.public_data
    assert plan.public_data == "none"
    assert plan.choose("gradient", 1).attack == "idlg"
    with pytest.raises(ConfigError, match="public-data, which the threat model withholds"):
        AuditPlan.from_config(RunConfig(audit_attack="rate-decoder", audit_public_data="test-split",
                                        audit_withhold="public-data"))


def test_granted_capabilities_no_attack_read_are_named() -> None:
    threat = AuditPlan.from_config(RunConfig(audit_public_data="test-split")).threat_model
    assert "public-data" in unused_capabilities(threat, ["idlg"])
    assert "public-data" not in unused_capabilities(threat, ["idlg", "strongest"])
    assert unused_capabilities(threat, ["unrolled", "rate-decoder"]) == []
