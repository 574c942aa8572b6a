"""Client randomness: derived from the run's public seed (reproducible; the server can derive it)
or, with `client-randomness = "secret"`, from a node-local secret seed the server cannot know."""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context, RecordDict

from clients.node import NodeSetup
from clients.ledgers import LEDGER_KEY, NodeLedgers
from fedsnn.audit.ground_truth import simulated_ground_truth
from fedsnn.core.config import RunConfig
from fedsnn.core.sampling import round_seed
from tests.apps.test_protected_replies import replies_of

RUN = {"model": "lenet", "image-size": 16, "update-mode": "gradient", "batch-size": 4}


def node(run_config: dict, ledgers: NodeLedgers | None = None) -> NodeSetup:
    return NodeSetup.from_context(Context(
        run_id=1, node_id=1, node_config={"partition-id": 1, "num-partitions": 3},
        state=RecordDict(), run_config=run_config),
        secret=(ledgers if ledgers is not None else NodeLedgers()).node_secret)


def test_derived_draws_are_reproducible_and_the_server_derives_them() -> None:
    first, second = node(RUN), node(RUN)
    assert first.round_seed(4) == second.round_seed(4) == round_seed(0, 4, 1)
    truth = simulated_ground_truth(RunConfig.from_mapping(RUN), 3)
    assert truth(4, 1) == first.data.train_ids[first.training_indices(4)].tolist()


def test_a_secret_seed_is_the_nodes_own_and_kept_across_rounds() -> None:
    run = RUN | {"client-randomness": "secret"}
    ledgers = NodeLedgers()
    mine, again, other = node(run, ledgers), node(run, ledgers), node(run)
    assert mine.secret is not None and mine.secret == again.secret  # kept with the ledgers
    assert mine.secret != other.secret  # another node (or a fresh one): another secret
    batches = {tuple(n.training_indices(2).tolist()) for n in (mine, other, node(RUN))}
    assert len(batches) == 3  # neither equals the batch the run's public seed gives
    # nothing to recompute: the auditor has no ground truth for a secret FedSGD batch ...
    assert simulated_ground_truth(RunConfig.from_mapping(run), 3)(2, 1) is None
    # ... while a FedAvg reply uses every local train sample whatever the seed
    fedavg = RunConfig.from_mapping(run | {"update-mode": "fedavg"})
    assert simulated_ground_truth(fedavg, 3)(2, 1) == mine.data.train_ids.tolist()


def test_a_run_with_secret_client_randomness_trains(tmp_path: Path) -> None:
    replies, run_dir = replies_of(tmp_path, {"client-randomness": "secret",
                                             "update-mode": "gradient"})
    assert replies and not any(reply.has_error() for reply in replies)
    assert (run_dir / "results.json").is_file()


def test_a_secret_seed_survives_a_node_restart_in_its_privacy_ledger(tmp_path: Path) -> None:
    def restarted() -> NodeSetup:  # a fresh Context, as after a SuperNode restart
        context = Context(run_id=1, node_id=1, state=RecordDict(),
                          node_config={"partition-id": 1, "num-partitions": 3,
                                       LEDGER_KEY: str(tmp_path / "ledger.json")},
                          run_config=RUN | {"client-randomness": "secret"})
        ledgers = NodeLedgers.open(context, {})  # the order client_app keeps
        node = NodeSetup.from_context(context, secret=ledgers.node_secret)
        ledgers.save(context)
        return node

    first, second = restarted(), restarted()
    assert first.secret is not None and second.secret == first.secret
