"""Byzantine clients: what a malicious node sends instead of its honest update.

Every attack crafts an update Δ (the reply is w_global + Δ) from what its colluding group knows
in that round (`GroupKnowledge`): the honest updates its members would have sent, computed by
each member on its own data. No attacker sees an honest client's data or update.

| name                   | update sent                                      | needs the group |
|------------------------|--------------------------------------------------|-----------------|
| `sign-flip`            | -s · Δ_own                       (s = 1)         | no              |
| `constant`             | s · 1                            (s = 1)         | no              |
| `gaussian`             | N(0, s² I)                       (s = 1)         | no              |
| `label-flip`           | honest training on labels C-1-y                  | no              |
| `alie`                 | μ - z σ  (z = s, or Baruch et al.'s z_max(n, k)) | yes             |
| `ipm`                  | -ε μ                             (ε = s = 0.5)   | yes             |
| `min-max`              | μ - γ σ, γ largest with (1) below               | yes             |
| `min-sum`              | μ - γ σ, γ largest with (2) below               | yes             |
| `gradient-suppression` | ±s ρ v (s = 10), weighted to cancel in the mean  | yes             |
| `stealth-suppression`  | the same inside the honest-norm envelope (s = 1)  | yes             |

(1) max_i ‖Δ - Δ_i‖ <= max_ij ‖Δ_i - Δ_j‖;  (2) Σ_i ‖Δ - Δ_i‖² <= max_i Σ_j ‖Δ_i - Δ_j‖².
μ, σ are the coordinate-wise mean and standard deviation of the group's honest updates and ρ
their median norm. ALIE, IPM and min-max/min-sum are defined in their papers with statistics of
*all* benign updates (an omniscient attacker); here the group uses only its own k honest
estimates, which is what colluders can actually have.

Gradient suppression (seed 002): the group's updates sum to zero under `num-examples`
weighting, so FedAvg's aggregate holds only the honest clients' updates; when every node but
one colludes, the aggregate is that client's update times its weight share. The loud variant
sends ±10 ρ along a random direction the group agrees on; the stealth variant stays within ρ
(so a norm filter keeps it) along the direction in which the group's own honest updates differ.
Cancellation assumes the server weights by `num-examples`, as FedAvg does here.

How the group learns its members' honest updates: a real group would exchange them over a side
channel. The simulation stands in for that channel by having each colluder recompute its peers'
honest updates with the same seeded training on the peer's partition (`NodeSetup.for_partition`),
so it gets exactly what the peer would have sent; a small cache in this module means a group
computes each member's update once when its members share a process.

Choosing malicious nodes: the first `num-byzantine` partitions run `byzantine-attack` and form
one group. A node's config can override both: `byzantine-attack=<name>` and
`byzantine-group="0,3,5"` (the partitions it colludes with, itself included).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, MetricRecord

from clients.node import NodeSetup, train, training_batch


@dataclass(frozen=True)
class GroupKnowledge:
    """What a colluding group knows in one round.

    Attributes:
        updates: (k, d) float64, the members' honest updates (row `member` is this node's).
        weights: (k,) the members' `num-examples`, as they will report them.
        member: this node's row.
        num_clients: n, the number of nodes in the federation (public).
        seed: a seed shared by the group for this round.
        own_seed: this node's own seed for this round.
    """

    updates: torch.Tensor
    weights: torch.Tensor
    member: int
    num_clients: int
    seed: int
    own_seed: int

    @property
    def own(self) -> torch.Tensor:
        return self.updates[self.member]

    @property
    def mean(self) -> torch.Tensor:
        return self.updates.mean(0)

    @property
    def std(self) -> torch.Tensor:
        """Coordinate-wise standard deviation (zero for a group of one)."""
        if len(self.updates) < 2:
            return torch.zeros_like(self.own)
        return self.updates.std(0, correction=1)


Craft = Callable[[GroupKnowledge, float], torch.Tensor]


@dataclass(frozen=True)
class Behaviour:
    """An attack: its update rule, its default strength, what it needs."""

    craft: Craft
    default_scale: float = 0.0
    colluding: bool = False
    flips_labels: bool = False


def sign_flip(k: GroupKnowledge, scale: float) -> torch.Tensor:
    """-s · Δ_own."""
    return -scale * k.own


def constant(k: GroupKnowledge, scale: float) -> torch.Tensor:
    """s in every coordinate."""
    return torch.full_like(k.own, scale)


def gaussian(k: GroupKnowledge, scale: float) -> torch.Tensor:
    """Zero-mean Gaussian noise with standard deviation s (seeded by the node's round seed)."""
    generator = torch.Generator().manual_seed(k.own_seed)
    return scale * torch.randn(k.own.shape, generator=generator, dtype=torch.float64)


def honest(k: GroupKnowledge, scale: float) -> torch.Tensor:
    """The node's own update (label flipping poisons the data, not the update)."""
    return k.own.clone()


def alie_z(num_clients: int, num_byzantine: int) -> float:
    """Baruch et al. (2019): z_max = Φ⁻¹((n - s) / n), s = ⌊n/2 + 1⌋ - m."""
    supporters = math.floor(num_clients / 2 + 1) - num_byzantine
    quantile = min(max((num_clients - supporters) / num_clients, 0.5), 0.999)
    return float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(quantile)))


def alie(k: GroupKnowledge, scale: float) -> torch.Tensor:
    """A little is enough: μ - z σ."""
    z = scale or alie_z(k.num_clients, len(k.updates))
    return k.mean - z * k.std


def ipm(k: GroupKnowledge, scale: float) -> torch.Tensor:
    """Inner product manipulation (Xie et al., 2019): -ε μ."""
    return -scale * k.mean


def _largest_gamma(fits: Callable[[float], bool], *, steps: int = 60) -> float:
    """The largest γ >= 0 with fits(γ), for a condition that holds on an interval [0, γ*]."""
    high = 1.0
    while fits(high) and high < 2.0 ** 40:
        high *= 2.0
    low = 0.0
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def _min_max_or_sum(k: GroupKnowledge, reduce: Callable[[torch.Tensor], torch.Tensor]
                    ) -> torch.Tensor:
    """μ - γ σ with γ as large as keeps reduce(distances to the group) within the largest
    reduce(distances) of any honest member (Shejwalkar & Houmansadr, 2021)."""
    mean, direction = k.mean, -k.std
    bound = max(float(reduce(torch.cdist(k.updates[i:i + 1], k.updates)[0]))
                for i in range(len(k.updates)))

    def fits(gamma: float) -> bool:
        candidate = (mean + gamma * direction)[None]
        return float(reduce(torch.cdist(candidate, k.updates)[0])) <= bound

    return mean + _largest_gamma(fits) * direction


def min_max(k: GroupKnowledge, scale: float) -> torch.Tensor:
    """Min-max: no farther from any honest update than the two farthest honest ones are."""
    return _min_max_or_sum(k, lambda d: d.max())


def min_sum(k: GroupKnowledge, scale: float) -> torch.Tensor:
    """Min-sum: squared distances to the honest updates sum to no more than any honest one's."""
    return _min_max_or_sum(k, lambda d: d.square().sum())


def cancelling_coefficients(weights: torch.Tensor) -> torch.Tensor:
    """c_i in [-1, 1] with Σ w_i c_i = 0: centred ranks, scaled by the smallest weight."""
    count = len(weights)
    if count < 2:
        return torch.zeros(count, dtype=torch.float64)
    ranks = torch.arange(count, dtype=torch.float64) - (count - 1) / 2
    return ranks / ranks.abs().max() * weights.min() / weights


def _suppression(k: GroupKnowledge, scale: float, direction: torch.Tensor) -> torch.Tensor:
    """scale · ρ · c_member · unit(direction): the group's weighted sum is exactly zero."""
    envelope = k.updates.norm(dim=1).median()
    unit = direction / direction.norm().clamp_min(1e-300)
    return scale * envelope * cancelling_coefficients(k.weights)[k.member] * unit


def gradient_suppression(k: GroupKnowledge, scale: float) -> torch.Tensor:
    """Loud cancelling pairs along a random direction the group agrees on (seed 002)."""
    generator = torch.Generator().manual_seed(k.seed)
    return _suppression(k, scale, torch.randn(k.own.shape, generator=generator,
                                              dtype=torch.float64))


def stealth_suppression(k: GroupKnowledge, scale: float) -> torch.Tensor:
    """Cancelling updates within the honest-norm envelope, along the group's own disagreement."""
    deviation = k.updates[0] - k.mean
    if float(deviation.norm()) == 0.0:
        return gradient_suppression(k, scale)
    return _suppression(k, scale, deviation)


BEHAVIOURS: dict[str, Behaviour] = {
    "sign-flip": Behaviour(sign_flip, 1.0),
    "constant": Behaviour(constant, 1.0),
    "gaussian": Behaviour(gaussian, 1.0),
    "label-flip": Behaviour(honest, flips_labels=True),
    "alie": Behaviour(alie, 0.0, colluding=True),
    "ipm": Behaviour(ipm, 0.5, colluding=True),
    "min-max": Behaviour(min_max, colluding=True),
    "min-sum": Behaviour(min_sum, colluding=True),
    "gradient-suppression": Behaviour(gradient_suppression, 10.0, colluding=True),
    "stealth-suppression": Behaviour(stealth_suppression, 1.0, colluding=True),
}


@dataclass(frozen=True)
class ByzantineRole:
    """A malicious node's part: its attack, its colluding group (partition ids, itself
    included, sorted) and the attack strength (0: the attack's default)."""

    attack: str
    group: tuple[int, ...]
    scale: float = 0.0


def byzantine_role(node: NodeSetup, node_config: Mapping[str, Any]) -> ByzantineRole | None:
    """This node's Byzantine role, or None for an honest node (see the module docstring).

    Raises:
        ValueError: an unknown attack name or a malformed group in the node config.
    """
    config = node.config
    first_k = tuple(range(min(config.num_byzantine, node.num_partitions)))
    in_first_k = node.partition_id in first_k
    name = str(node_config.get("byzantine-attack",
                               config.byzantine_attack if in_first_k else "none"))
    if name == "none":
        return None
    if name not in BEHAVIOURS:
        raise ValueError(f"Unknown byzantine-attack {name!r}; expected one of "
                         f"{['none', *sorted(BEHAVIOURS)]}")
    if "byzantine-group" in node_config:
        group = _parse_group(str(node_config["byzantine-group"]))
    else:
        group = first_k if in_first_k else (node.partition_id,)
    return ByzantineRole(name, tuple(sorted({*group, node.partition_id})), config.byzantine_scale)


def _parse_group(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in re.split(r"[,\s]+", text.strip()) if part)
    except ValueError:
        raise ValueError(f"byzantine-group: expected partition ids like '0,1,2', got {text!r}"
                         ) from None


def honest_reply(node: NodeSetup, global_arrays: ArrayRecord, server_round: int
                 ) -> tuple[ArrayRecord, MetricRecord]:
    """What `node` sends when honest, before any privacy (the ClientApp's own train step)."""
    model = node.model_with(global_arrays, encoder_seed=node.round_seed(server_round))
    update, metrics = train(node, model, *training_batch(node, server_round), server_round)
    return update, MetricRecord(metrics)


def malicious_train_reply(node: NodeSetup, role: ByzantineRole, global_arrays: ArrayRecord,
                          server_round: int) -> tuple[ArrayRecord, MetricRecord]:
    """The reply of a Byzantine node: w_global + the crafted update, with the metrics its honest
    reply would carry (so nothing but the arrays gives it away)."""
    attack = BEHAVIOURS[role.attack]
    members = role.group if attack.colluding else (node.partition_id,)
    replies = [_group_estimate(node, p, attack.flips_labels, global_arrays, server_round)
               for p in members]
    own_arrays, own_metrics = replies[members.index(node.partition_id)]
    keys = list(own_arrays.keys())
    reference = _flat(global_arrays, keys)
    knowledge = GroupKnowledge(
        updates=torch.stack([_flat(arrays, keys) - reference for arrays, _ in replies]),
        weights=torch.tensor([float(m["num-examples"]) for _, m in replies], dtype=torch.float64),
        member=members.index(node.partition_id),
        num_clients=node.num_partitions,
        seed=node.config.seed * 7919 + server_round * 104_729 + members[0],
        own_seed=node.round_seed(server_round))
    update = attack.craft(knowledge, role.scale or attack.default_scale)
    return _unflat(reference + update, own_arrays), MetricRecord(dict(own_metrics))


def _flat(record: ArrayRecord, keys: list[str]) -> torch.Tensor:
    return torch.cat([torch.from_numpy(np.asarray(record[key].numpy(), dtype=np.float64)).ravel()
                      for key in keys])


def _unflat(vector: torch.Tensor, like: ArrayRecord) -> ArrayRecord:
    """A fresh ArrayRecord shaped and typed like `like`, holding `vector`."""
    arrays: dict[str, Array] = {}
    offset = 0
    for key in like.keys():
        template = like[key].numpy()
        arrays[key] = Array(vector[offset:offset + template.size].numpy()
                            .reshape(template.shape).astype(template.dtype))
        offset += template.size
    return ArrayRecord(arrays)


def flipped_labels(node: NodeSetup) -> NodeSetup:
    """The node with its training labels y replaced by C - 1 - y."""
    flipped = node.spec.num_classes - 1 - node.data.train_y
    return dataclasses.replace(node, data=dataclasses.replace(node.data, train_y=flipped))


_ESTIMATES: OrderedDict[tuple[Any, ...], tuple[ArrayRecord, MetricRecord]] = OrderedDict()
_CACHE_SIZE = 64


def _group_estimate(node: NodeSetup, partition_id: int, flip: bool, global_arrays: ArrayRecord,
                    server_round: int) -> tuple[ArrayRecord, MetricRecord]:
    """A member's honest update (on flipped labels for label flipping), computed once per round
    and global model in this process. Callers must not modify what it returns."""
    digest = hashlib.sha1(_flat(global_arrays, list(global_arrays.keys())).numpy().tobytes())
    key = (node.config, partition_id, node.num_partitions, flip, server_round, digest.hexdigest())
    if key not in _ESTIMATES:
        peer = (node if partition_id == node.partition_id
                else NodeSetup.for_partition(node.config, partition_id, node.num_partitions))
        _ESTIMATES[key] = honest_reply(flipped_labels(peer) if flip else peer, global_arrays,
                                       server_round)
        while len(_ESTIMATES) > _CACHE_SIZE:
            _ESTIMATES.popitem(last=False)
    return _ESTIMATES[key]
