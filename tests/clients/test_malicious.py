"""Each Byzantine behaviour sends the update its definition says, from what its group knows."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Message, RecordDict
from flwr.serverapp.strategy import FedAvg

from clients.malicious import (
    BEHAVIOURS, ByzantineRole, GroupKnowledge, alie_z, byzantine_role, cancelling_coefficients,
    flipped_labels, honest_reply, malicious_train_reply)
from clients.node import NodeSetup
from fedsnn.core.config import BYZANTINE_ATTACKS, RunConfig
from fedsnn.core.models import build_model

UPDATES = torch.tensor([[1.0, 2.0, -1.0, 0.5], [3.0, 0.0, -1.0, 1.5], [2.0, 1.0, 2.0, -0.5]],
                       dtype=torch.float64)
WEIGHTS = torch.tensor([10.0, 12.0, 9.0], dtype=torch.float64)


def knowledge(member: int = 0, num_clients: int = 10) -> GroupKnowledge:
    return GroupKnowledge(UPDATES, WEIGHTS, member, num_clients, seed=5, own_seed=7)


def craft(name: str, member: int = 0, scale: float | None = None) -> torch.Tensor:
    attack = BEHAVIOURS[name]
    return attack.craft(knowledge(member), attack.default_scale if scale is None else scale)


def test_every_configurable_attack_is_implemented() -> None:
    assert set(BEHAVIOURS) == set(BYZANTINE_ATTACKS) - {"none"}


def test_sign_flip_constant_and_gaussian() -> None:
    assert torch.equal(craft("sign-flip", member=1), -UPDATES[1])
    assert torch.equal(craft("sign-flip", scale=4.0), -4.0 * UPDATES[0])
    assert torch.equal(craft("constant", scale=2.5), torch.full((4,), 2.5, dtype=torch.float64))
    big = GroupKnowledge(torch.zeros(1, 100_000, dtype=torch.float64), WEIGHTS[:1], 0, 10, 0, 3)
    noise = BEHAVIOURS["gaussian"].craft(big, 2.0)
    assert abs(float(noise.mean())) < 0.02 and float(noise.std()) == pytest.approx(2.0, rel=0.01)
    assert torch.equal(noise, BEHAVIOURS["gaussian"].craft(big, 2.0))  # seeded


def test_alie_is_mean_minus_z_std_with_baruchs_z() -> None:
    # n = 10, m = 3: s = floor(10/2 + 1) - 3 = 3, z = Φ⁻¹(7/10)
    assert alie_z(10, 3) == pytest.approx(0.5244, abs=1e-4)
    expected = UPDATES.mean(0) - alie_z(10, 3) * UPDATES.std(0)
    assert torch.allclose(craft("alie"), expected)
    assert torch.allclose(craft("alie", scale=1.5), UPDATES.mean(0) - 1.5 * UPDATES.std(0))


def test_ipm_is_minus_epsilon_times_the_mean() -> None:
    assert torch.allclose(craft("ipm"), -0.5 * UPDATES.mean(0))
    assert torch.allclose(craft("ipm", scale=3.0), -3.0 * UPDATES.mean(0))


@pytest.mark.parametrize("name,reduce", [
    ("min-max", lambda d: d.max()),
    ("min-sum", lambda d: d.square().sum()),
])
def test_min_max_and_min_sum_go_as_far_as_the_honest_spread_allows(name: str, reduce: object
                                                                    ) -> None:
    update = craft(name)
    gamma_direction = update - UPDATES.mean(0)
    direction = -UPDATES.std(0)
    gamma = float(gamma_direction @ direction / (direction @ direction))
    assert gamma > 0 and torch.allclose(gamma_direction, gamma * direction)  # μ - γσ
    bound = max(float(reduce(torch.cdist(UPDATES[i:i + 1], UPDATES)[0])) for i in range(3))
    assert float(reduce(torch.cdist(update[None], UPDATES)[0])) == pytest.approx(bound, rel=1e-6)


@pytest.mark.parametrize("name", ["gradient-suppression", "stealth-suppression"])
def test_suppression_updates_cancel_in_the_weighted_sum(name: str) -> None:
    updates = torch.stack([craft(name, member=i) for i in range(3)])
    assert float((WEIGHTS[:, None] * updates).sum(0).abs().max()) < 1e-12
    envelope = float(UPDATES.norm(dim=1).median())
    norms = updates.norm(dim=1)
    scale = BEHAVIOURS[name].default_scale
    assert float(norms.max()) == pytest.approx(scale * envelope)
    assert float(norms.max()) <= scale * envelope + 1e-12
    assert torch.all(norms[1] < norms.max())  # the middle member of three sends (almost) nothing


def test_cancelling_coefficients_sum_to_zero_under_any_weights() -> None:
    for weights in ([3.0, 7.0], [1.0, 2.0, 3.0, 4.0], [5.0]):
        w = torch.tensor(weights, dtype=torch.float64)
        c = cancelling_coefficients(w)
        assert float((w * c).sum()) == pytest.approx(0.0, abs=1e-12)
        assert float(c.abs().max()) <= 1.0


# --- on real nodes ---------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("flower_server_identity")


CONFIG = RunConfig.from_mapping({"image-size": 8, "local-epochs": 1, "num-byzantine": 2,
                                 "byzantine-attack": "alie"})


def node(partition: int, num_partitions: int = 5, config: RunConfig = CONFIG) -> NodeSetup:
    return NodeSetup.for_partition(config, partition, num_partitions)


def global_arrays(setup: NodeSetup) -> ArrayRecord:
    return ArrayRecord(build_model(setup.spec, dlg_init=True, seed=0).state_dict())


def flat(record: ArrayRecord) -> np.ndarray:
    return np.concatenate([np.asarray(record[k].numpy(), dtype=np.float64).ravel()
                           for k in record.keys()])


def test_roles_first_k_partitions_or_the_node_config() -> None:
    assert byzantine_role(node(0), {}) == ByzantineRole("alie", (0, 1), 0.0)
    assert byzantine_role(node(1), {}) == ByzantineRole("alie", (0, 1), 0.0)
    assert byzantine_role(node(2), {}) is None
    assert byzantine_role(node(4), {"byzantine-attack": "ipm", "byzantine-group": "3, 4"}
                          ) == ByzantineRole("ipm", (3, 4), 0.0)
    assert byzantine_role(node(0), {"byzantine-attack": "none"}) is None
    with pytest.raises(ValueError, match="Unknown byzantine-attack 'backdoor'; expected one of"):
        byzantine_role(node(3), {"byzantine-attack": "backdoor"})


def test_a_colluder_crafts_from_its_groups_honest_updates() -> None:
    setup = node(0)
    g = global_arrays(setup)
    role = byzantine_role(setup, {})
    assert role is not None
    arrays, metrics = malicious_train_reply(setup, role, g, server_round=1)
    honest = [honest_reply(node(p), g, 1) for p in (0, 1)]
    group = torch.tensor(np.stack([flat(a) - flat(g) for a, _ in honest]))
    expected = group.mean(0) - alie_z(5, 2) * group.std(0)
    assert np.allclose(flat(arrays) - flat(g), expected.numpy(), atol=1e-6)
    assert dict(metrics) == dict(honest[0][1])  # nothing but the arrays gives it away
    assert [arrays[k].dtype for k in arrays.keys()] == [g[k].dtype for k in g.keys()]


def test_constant_attack_reply_is_global_plus_the_constant() -> None:
    config = RunConfig.from_mapping({"image-size": 8, "local-epochs": 1, "num-byzantine": 1,
                                     "byzantine-attack": "constant", "byzantine-scale": 0.25})
    setup = node(0, config=config)
    g = global_arrays(setup)
    arrays, _ = malicious_train_reply(setup, byzantine_role(setup, {}), g, 1)  # type: ignore[arg-type]
    assert np.allclose(flat(arrays) - flat(g), 0.25, atol=1e-6)


def test_label_flipping_trains_honestly_on_flipped_labels() -> None:
    config = RunConfig.from_mapping({"image-size": 8, "local-epochs": 1, "num-byzantine": 1,
                                     "byzantine-attack": "label-flip"})
    setup = node(0, config=config)
    assert torch.equal(flipped_labels(setup).data.train_y, 9 - setup.data.train_y)
    g = global_arrays(setup)
    arrays, _ = malicious_train_reply(setup, byzantine_role(setup, {}), g, 1)  # type: ignore[arg-type]
    expected, _ = honest_reply(flipped_labels(setup), g, 1)
    assert np.allclose(flat(arrays), flat(expected), atol=1e-6)
    assert not np.allclose(flat(arrays), flat(honest_reply(setup, g, 1)[0]))


def test_gradient_suppression_exposes_the_one_honest_client_under_fedavg() -> None:
    # 3 nodes, partitions 0 and 1 collude: FedAvg's aggregate is the target's update scaled by
    # its weight share (seed 002's deanonymisation).
    config = RunConfig.from_mapping({"image-size": 8, "local-epochs": 1, "num-byzantine": 2,
                                     "byzantine-attack": "gradient-suppression"})
    nodes = [node(p, 3, config) for p in range(3)]
    g = global_arrays(nodes[0])
    sent = [malicious_train_reply(s, byzantine_role(s, {}), g, 1)  # type: ignore[arg-type]
            for s in nodes[:2]] + [honest_reply(nodes[2], g, 1)]
    loud = [np.linalg.norm(flat(a) - flat(g)) for a, _ in sent]
    assert min(loud[:2]) > 5 * loud[2]  # loud: 10x the honest envelope
    replies = [Message(RecordDict({"arrays": a, "metrics": m}),
                       reply_to=Message(RecordDict(), dst_node_id=i + 1, message_type="train"))
               for i, (a, m) in enumerate(sent)]
    weights = [float(m["num-examples"]) for _, m in sent]
    aggregate, _ = FedAvg().aggregate_train(1, replies)
    assert aggregate is not None
    target_share = weights[2] / sum(weights) * (flat(sent[2][0]) - flat(g))
    assert np.allclose(flat(aggregate) - flat(g), target_share, atol=1e-5)
