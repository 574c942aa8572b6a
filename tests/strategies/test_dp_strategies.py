"""Central DP around FedAvg (hand-made replies), the client privacy mod, and refusals."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from flwr.app import (Array, ArrayRecord, ConfigRecord, Message, MetricRecord,
                      RecordDict)
from flwr.serverapp.strategy import FedAvg, FedMedian, Krum
from dp_accounting import NeighboringRelation, dp_event
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM, KEY_NORM_BIT

from clients.ledgers import NodeLedgers
from clients.privacy import plan_round
from fedsnn.core.config import ConfigError, RunConfig
from fedsnn.core.models import spec_for
from fedsnn.core.privacy.accounting import PLD_INTERVAL, gaussian_epsilon
from strategies.dp import CentralDP, CentralDPError
from strategies.dp_client import DpSgd, LocalDP
from strategies.spike_dp import SpikeDP
from strategies.aggregate_metrics import mean_scalar_metrics
from fedsnn.tools.local_grid import LocalGrid, server_identity

GLOBAL = {"w": np.zeros(4, np.float32), "count": np.array([5], np.int64)}


@pytest.fixture(autouse=True)
def identity() -> Iterator[None]:
    with server_identity():
        yield


def arrays(w: np.ndarray, count: int = 5) -> ArrayRecord:
    return ArrayRecord({"w": Array(w.astype(np.float32)), "count": Array(np.array([count]))})


def reply(w: np.ndarray, *, weight: float | None = 1.0, count: int = 5) -> Message:
    metrics = MetricRecord({"num-examples": 10, "train-loss": 0.1})
    if weight is not None:
        metrics["dp-weight"] = weight
    return Message(RecordDict({"arrays": arrays(w, count), "metrics": metrics}),
                   dst_node_id=0, message_type="train")


def central(clipping: str = "server-fixed", nodes: int = 3, **kwargs: float) -> tuple[CentralDP, list]:
    inner = FedAvg(weighted_by_key="dp-weight", min_available_nodes=nodes,
                   train_metrics_aggr_fn=mean_scalar_metrics)
    settings = dict(clipping_norm=1.0, noise_multiplier=0.5, delta=1e-5) | kwargs
    dp = CentralDP(inner, clipping=clipping, **settings)
    grid = LocalGrid([lambda m, c: m] * nodes, [{}] * nodes, {})
    messages = list(dp.configure_train(1, arrays(GLOBAL["w"]), ConfigRecord(), grid))
    return dp, messages


@pytest.mark.parametrize("aggregator", [FedMedian(), Krum()])
def test_central_dp_around_a_non_mean_aggregator_is_refused(aggregator) -> None:
    with pytest.raises(CentralDPError, match=f"refuses to wrap {type(aggregator).__name__}"):
        CentralDP(aggregator, clipping="server-fixed", clipping_norm=1, noise_multiplier=1,
                  delta=1e-5)
    with pytest.raises(ConfigError, match="central-dp needs aggregator 'fedavg'"):
        RunConfig.from_mapping({"defenses": "central-dp", "aggregator": "median",
                                "min-available-nodes": 3})


def test_central_dp_around_fedavg_weighted_by_examples_is_refused() -> None:
    with pytest.raises(CentralDPError, match="equal client weights"):
        CentralDP(FedAvg(), clipping="server-fixed", clipping_norm=1, noise_multiplier=1,
                  delta=1e-5)


@pytest.mark.parametrize("clipping", ["server-fixed", "server-adaptive"])
def test_a_zero_update_and_integer_arrays_survive_clipping_and_the_release_is_accounted(
        clipping: str) -> None:
    dp, messages = central(clipping)
    assert len(messages) == 3 and all(m.content["config"]["central-dp"] == 1 for m in messages)
    replies = [reply(np.zeros(4)), reply(np.full(4, 3.0), count=9), reply(np.zeros(4))]
    new, metrics = dp.aggregate_train(1, replies)
    assert new is not None and new["count"].numpy().dtype.kind in "iuf"
    # the update mean is (clip([3,3,3,3]) + 0 + 0) / 3 = 0.5/3 per coordinate, plus noise z'C/3
    # (z' = z for fixed clipping; adaptive clipping spends a little of z on the clipped count)
    std = dp.dp.noise_multiplier * 1.0 / 3
    assert std == pytest.approx(0.5 / 3) if clipping == "server-fixed" else std > 0.5 / 3
    assert np.all(np.abs(new["w"].numpy() - 0.5 / 3) < 6 * std)
    assert metrics["central-dp-noise-std"] == pytest.approx(std)
    assert metrics["central-dp-clipping-norm"] == 1.0
    assert metrics["central-dp-client-epsilon"] == pytest.approx(  # replace-one: z/2
        gaussian_epsilon(noise_multiplier=0.25, releases=1, delta=1e-5))


def test_epsilon_grows_round_by_round() -> None:
    dp, _ = central()
    grid = LocalGrid([lambda m, c: m] * 3, [{}] * 3, {})
    epsilons = []
    for server_round in (1, 2, 3):
        dp.configure_train(server_round, arrays(GLOBAL["w"]), ConfigRecord(), grid)
        _, metrics = dp.aggregate_train(server_round, [reply(np.ones(4))] * 3)
        epsilons.append(metrics["central-dp-client-epsilon"])
    assert epsilons[0] < epsilons[1] < epsilons[2]
    assert metrics["central-dp-client-epsilon-round"] == pytest.approx(epsilons[0])


@pytest.mark.parametrize("weights,why", [
    ([1.0, 1.0], "sized for m=3"),
    ([1.0, 1.0, None], "dp-weight=1"),
    ([1.0, 1.0, 40.0], "dp-weight=1"),
])
def test_a_round_that_would_break_the_sensitivity_is_not_released(weights, why, caplog) -> None:
    dp, _ = central()
    replies = [reply(np.ones(4), weight=weight) for weight in weights]
    assert dp.aggregate_train(1, replies) == (None, None)
    assert why in caplog.text and dp.releases == 0


def test_client_side_clipping_is_checked_by_the_server(caplog) -> None:
    dp, messages = central("client-fixed")
    assert all(m.content["config"]["clipping_norm"] == 1.0 for m in messages)
    assert dp.aggregate_train(1, [reply(np.full(4, 0.5))] * 3)[0] is not None  # norm 1: clipped
    assert dp.aggregate_train(1, [reply(np.full(4, 3.0))] * 3) == (None, None)
    assert "norm 6 > C=1" in caplog.text


def train_message(config: dict) -> Message:
    return Message(RecordDict({"arrays": arrays(GLOBAL["w"]), "config": ConfigRecord(config)}),
                   dst_node_id=1, message_type="train")


def run_mod(config: dict, w: np.ndarray, ledgers: NodeLedgers | None = None) -> Message:
    """The reply a node sends after training produced `w` (the client pipeline's release step)."""
    message = train_message(config)
    plan = plan_round(message.content["config"], RunConfig(), spec_for(RunConfig(), 1, 10, 8),
                      ledgers if ledgers is not None else NodeLedgers(), public_examples=10)
    out, metrics = plan.release(arrays(w, count=8), {"num-examples": 10},
                                sent=message.content["arrays"])
    return Message(RecordDict({"arrays": out, "metrics": metrics}), reply_to=message)


def test_client_side_clipping_reports_equal_weight_and_the_norm_bit() -> None:
    out = run_mod({"central-dp": 1, "central-dp-adaptive": 1, KEY_CLIPPING_NORM: 0.5},
                  np.full(4, 1.0))
    w = out.content["arrays"]["w"].numpy()
    assert np.linalg.norm(w) == pytest.approx(0.5, rel=1e-6)
    assert out.content["arrays"]["count"].numpy().tolist() == [5]  # the sent value, not 8
    metrics = out.content["metrics"]
    assert metrics["dp-weight"] == 1.0 and metrics[KEY_NORM_BIT] == 1
    zero = run_mod({"central-dp": 1, "central-dp-adaptive": 1, KEY_CLIPPING_NORM: 0.5},
                   np.zeros(4))
    assert zero.content["metrics"][KEY_NORM_BIT] == 0


def test_local_dp_noises_the_update_before_it_leaves_and_composes_its_epsilon() -> None:
    ledgers = NodeLedgers()
    config = {"local-dp-clipping-norm": 1.0, "local-dp-noise-multiplier": 2.0, "dp-delta": 1e-5,
              "dp-accountant": "rdp", "client-dp": 1}
    first = run_mod(config, np.zeros(4), ledgers)
    assert not np.allclose(first.content["arrays"]["w"].numpy(), 0)  # a zero update is noised
    second = run_mod(config, np.zeros(4), ledgers)
    one = gaussian_epsilon(noise_multiplier=1.0, releases=1, delta=1e-5)   # z/2: sensitivity 2C
    two = gaussian_epsilon(noise_multiplier=1.0, releases=2, delta=1e-5)
    assert first.content["metrics"]["local-dp-client-epsilon"] == pytest.approx(one)
    assert second.content["metrics"]["local-dp-client-epsilon"] == pytest.approx(two)
    assert second.content["metrics"]["local-dp-client-epsilon-release"] == pytest.approx(one)


# The wire format of the client-side defenses' settings, spelled out: a renamed key or a changed
# value type breaks older nodes and stored runs (`fedsnn.core.defense_config` declares them).
WIRE = [
    (lambda inner: LocalDP(inner, clipping_norm=0.5, noise_multiplier=2.0, delta=1e-5),
     {"local-dp-clipping-norm": 0.5, "local-dp-noise-multiplier": 2.0, "dp-delta": 1e-5,
      "dp-accountant": "rdp"}),
    (lambda inner: DpSgd(inner, max_grad_norm=1.0, noise_multiplier=0.0, target_epsilon=8.0,
                         total_epochs=6, delta=1e-5, accountant="pld"),
     {"dp-sgd-max-grad-norm": 1.0, "dp-sgd-noise-multiplier": 0.0, "dp-sgd-target-epsilon": 8.0,
      "dp-sgd-total-epochs": 6, "dp-delta": 1e-5, "dp-accountant": "pld"}),
    (lambda inner: SpikeDP(inner, mechanism="randomized-response", epsilon_bit=1.0,
                           keep_probability=0.5, time_steps=4, sample_shape=(1, 8, 8),
                           delta=1e-5, budget=500.0),
     {"spike-dp-mechanism": "randomized-response", "spike-dp-epsilon-bit": 1.0,
      "spike-dp-keep-probability": 0.5, "spike-dp-time-steps": 4, "spike-dp-budget": 500.0,
      "dp-delta": 1e-5, "dp-accountant": "rdp"}),
]


@pytest.mark.parametrize("wrap,wire", WIRE)
def test_client_defenses_send_their_settings_under_the_documented_keys(wrap, wire) -> None:
    wrapper = wrap(FedAvg(min_available_nodes=2))
    grid = LocalGrid([lambda m, c: m] * 2, [{}] * 2, {})
    messages = list(wrapper.configure_train(1, arrays(GLOBAL["w"]), ConfigRecord(), grid))
    for message in messages:
        config = dict(message.content["config"])
        assert [key for key in config if key in wire] == list(wire)
        assert {key: (config[key], type(config[key])) for key in wire} == {
            key: (value, type(value)) for key, value in wire.items()}
        assert config["client-dp"] == 1
    assert type(wrapper.defense).from_config(messages[0].content["config"]) == wrapper.defense


def test_without_defenses_the_mod_changes_nothing() -> None:
    out = run_mod({}, np.full(4, 3.0))
    assert np.array_equal(out.content["arrays"]["w"].numpy(), np.full(4, 3.0, np.float32))
    assert "dp-weight" not in out.content["metrics"]


# -- central DP's neighbouring relation, ledger and adaptive split (issue 15) ------------------

DOCUMENTED_Z = 2.0165  # the docs' "ε = 8 over 10 rounds" under add/remove


def released_rounds(dp: CentralDP, rounds: range) -> float:
    grid = LocalGrid([lambda m, c: m] * 3, [{}] * 3, {})
    metrics = None
    for server_round in rounds:
        dp.configure_train(server_round, arrays(GLOBAL["w"]), ConfigRecord(), grid)
        _, metrics = dp.aggregate_train(server_round, [reply(np.full(4, 0.1 * server_round))] * 3)
    return metrics["central-dp-client-epsilon"]


def independent_rdp(events: list, delta: float = 1e-5) -> float:
    ledger = rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE)
    for event in events:
        ledger.compose(event)
    return ledger.get_epsilon(delta)


def test_central_dp_reports_replace_one_epsilon_at_the_documented_setting() -> None:
    """z·C/m on the mean of exactly m replies: replacing a client moves the mean by 2C/m, so the
    multiplier on that sensitivity is z/2. The docs' ε = 8 is really 18.85."""
    dp, _ = central(noise_multiplier=DOCUMENTED_Z)
    reported = released_rounds(dp, range(1, 11))
    expected = independent_rdp([dp_event.GaussianDpEvent(DOCUMENTED_Z / 2)] * 10)
    assert reported == pytest.approx(expected, abs=1e-6)
    assert reported == pytest.approx(18.85, abs=0.01)
    assert independent_rdp([dp_event.GaussianDpEvent(DOCUMENTED_Z)] * 10) == pytest.approx(8, abs=1e-3)


def test_central_dp_pld_matches_dp_accountings_native_replace_one() -> None:
    """dp-accounting's PLD accountant knows replace-one for the Gaussian (sensitivity 2)."""
    dp, _ = central(noise_multiplier=DOCUMENTED_Z, accountant="pld")
    reported = released_rounds(dp, range(1, 11))
    native = pld_privacy_accountant.PLDAccountant(NeighboringRelation.REPLACE_ONE,
                                                  value_discretization_interval=PLD_INTERVAL)
    native.compose(dp_event.GaussianDpEvent(DOCUMENTED_Z), 10)
    assert reported == pytest.approx(native.get_epsilon(1e-5), abs=1e-6)


@pytest.mark.parametrize("clipping", ["server-adaptive", "client-adaptive"])
def test_adaptive_clipping_spends_what_its_two_releases_compose_to(clipping: str) -> None:
    """Update (z_u/2) and uncentred clipped count (σ_b, sensitivity 1) composed by dp-accounting
    equal fixed clipping's z/2: Flower's split of z holds under replace-one."""
    dp, _ = central(clipping, noise_multiplier=DOCUMENTED_Z)
    if clipping == "client-adaptive":
        # Updates far below any norm ten noisy rounds can reach (the bits say "not clipped"): at
        # norm 0.2, one run in 18 adapted C below the update and round 10 was rightly refused.
        for message in (reply_with_bit := [reply(np.full(4, 0.001))] * 3):
            next(iter(message.content.metric_records.values()))[KEY_NORM_BIT] = 0
        grid = LocalGrid([lambda m, c: m] * 3, [{}] * 3, {})
        for server_round in range(1, 11):
            dp.configure_train(server_round, arrays(GLOBAL["w"]), ConfigRecord(), grid)
            _, metrics = dp.aggregate_train(server_round, reply_with_bit)
        reported = metrics["central-dp-client-epsilon"]
    else:
        reported = released_rounds(dp, range(1, 11))
    z_update, sigma_count = dp.dp.noise_multiplier, dp.dp.clipped_count_stddev
    assert z_update > DOCUMENTED_Z  # part of z went to the count
    composed = dp_event.ComposedDpEvent([dp_event.GaussianDpEvent(z_update / 2),
                                         dp_event.GaussianDpEvent(sigma_count)])
    assert reported == pytest.approx(independent_rdp([composed] * 10), abs=1e-6)
    assert reported == pytest.approx(independent_rdp([dp_event.GaussianDpEvent(DOCUMENTED_Z / 2)] * 10),
                                     abs=1e-6)


def test_adaptive_clipping_noise_does_not_use_numpys_global_generator(monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("numpy's global generator was used")

    monkeypatch.setattr(np.random, "normal", forbidden)
    dp, _ = central("server-adaptive", noise_multiplier=DOCUMENTED_Z)
    before = dp.dp.clipping_norm
    released_rounds(dp, range(1, 3))
    assert dp.dp.clipping_norm != before  # the noisy count moved the norm


@pytest.mark.parametrize("clipping", ["server-fixed", "server-adaptive"])
def test_a_resumed_central_dp_ledger_reports_the_uninterrupted_epsilon(clipping: str) -> None:
    whole, _ = central(clipping, noise_multiplier=DOCUMENTED_Z)
    uninterrupted = released_rounds(whole, range(1, 11))
    first, _ = central(clipping, noise_multiplier=DOCUMENTED_Z)
    released_rounds(first, range(1, 5))
    saved = first.state_dict()
    resumed = CentralDP(FedAvg(weighted_by_key="dp-weight", min_available_nodes=3,
                               train_metrics_aggr_fn=mean_scalar_metrics), clipping=clipping,
                        clipping_norm=1.0, noise_multiplier=DOCUMENTED_Z, delta=1e-5)
    resumed.load_state_dict(saved)
    assert resumed.releases == 4
    reported = released_rounds(resumed, range(5, 11))
    assert reported == pytest.approx(uninterrupted, abs=1e-6)
    expected = independent_rdp([dp_event.GaussianDpEvent(DOCUMENTED_Z / 2)] * 10)
    assert reported == pytest.approx(expected, abs=1e-6)
    if clipping == "server-adaptive":  # the adapted norm continues, not the initial one
        assert resumed.dp.clipping_norm != 1.0 or first.dp.clipping_norm == 1.0


# -- adaptive clipping moves C towards the target quantile (issue 27, item 2) -------------------

NORMS = np.linspace(0.5, 1.5, 20)  # 20 clients' update norms every round: median 1.0


@pytest.mark.parametrize("start", [0.05, 20.0])
@pytest.mark.parametrize("clipping", ["server-adaptive", "client-adaptive"])
def test_adaptive_clipping_converges_to_the_target_quantile(clipping: str, start: float) -> None:
    """Andrew et al. 2021: C ← C·exp(−η(unclipped fraction − γ)) settles where a fraction γ = ½
    of the norms lies below C, from above and from below. Flower 1.39 feeds the *clipped*
    fraction into that rule, which drives C away: from 0.05 down towards 0, from 20 upwards."""
    nodes = len(NORMS)
    dp, _ = central(clipping, nodes=nodes, clipping_norm=start, noise_multiplier=0.5)
    grid = LocalGrid([lambda m, c: m] * nodes, [{}] * nodes, {})
    direction = np.full(4, 0.5)  # unit norm
    for server_round in range(1, 81):
        messages = list(dp.configure_train(server_round, arrays(GLOBAL["w"]), ConfigRecord(), grid))
        if clipping == "client-adaptive":  # each client clips itself and sends Flower's norm bit
            replies = [run_mod(dict(message.content["config"]), direction * norm)
                       for message, norm in zip(messages, NORMS)]
        else:
            replies = [reply(direction * norm) for norm in NORMS]
        dp.aggregate_train(server_round, replies)
    assert 0.8 < dp.dp.clipping_norm < 1.2, dp.dp.clipping_norm


def test_central_dp_publishes_no_raw_train_loss_or_counts() -> None:
    """The guarantee covers the weights: the mean raw train loss (and the clients' counts) are no
    DP release, so the round's published metrics hold the DP figures only (issue 27, item 4)."""
    dp, _ = central()
    _, metrics = dp.aggregate_train(1, [reply(np.ones(4))] * 3)
    assert "train-loss" not in metrics and "num-examples" not in metrics
    assert all(key.startswith("central-dp-") or key == "num-replies" for key in metrics), metrics
