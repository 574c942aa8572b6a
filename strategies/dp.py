"""Central DP around FedAvg: Flower's DP wrappers, made safe, accounted with dp-accounting.

`CentralDP` wraps the plain mean (FedAvg) and builds one of Flower's four wrappers
(`DifferentialPrivacy{Server,Client}Side{Fixed,Adaptive}Clipping`) once it knows m, the number of
clients sampled per round. It keeps the Gaussian mechanism's sensitivity honest:

- **the mean only**: the noise z·C/m bounds the sensitivity of a mean of m clipped updates; a
  median, Krum or a filter in front has another sensitivity, so wrapping one is refused;
- **equal weights**: FedAvg weighted by `num-examples` is not a mean of m updates; clients are
  told (train-config key `central-dp`) to report `dp-weight = 1`, the inner FedAvg must weight
  by it, and a reply without it is refused;
- **exactly m replies**: with fewer (failures, rejected replies) the noise would be too small for
  the mean the aggregator takes, so the round is not released (no model update, no ε spent);
  likewise when a client-side-clipped update is larger than C;
- **safe clipping** (`fedsnn.core.privacy.clipping`): a zero update or an integer array no longer
  crashes Flower's clipping; noise goes to floating arrays only, from a secret generator;
- **adaptive clipping**: noise is sized with the clipping norm the round's updates were clipped
  with (Flower 1.39 sizes it with the norm already updated for the next round).

Neighbouring relation (what ε means): **replace one client** (all of its data), client level.
With exactly m replies the denominator m is public and fixed, so "add or remove one client" is
not a relation this mechanism has (m would change); replacing one client moves the mean by at
most 2C/m, and noise z·C/m is the Gaussian mechanism with multiplier z/2 on that sensitivity
(`fedsnn.core.privacy.accounting.replace_one_multiplier`). No sampling amplification is claimed.

Adaptive clipping (Andrew et al. 2021, Flower's split of z) also releases a noisy count of
unclipped updates (m minus the clipped ones: Flower 1.39 feeds the clipped count into the paper's
rule for the unclipped one, which moves C the wrong way; issue 27), σ_b noise on a sum of
*uncentred* 0/1 bits. Under replace-one that sum has
sensitivity 1 (a bit flips), exactly as the paper's centred bits ±½ do, and the update's
multiplier halves as above; so Flower's split z_u = (z⁻² − (2σ_b)⁻²)^-½ leaves the pair at
(z_u/2)⁻² + σ_b⁻² = (z/2)⁻²: the same ε as fixed clipping. (Under add/remove, uncentred bits
would have sensitivity 1 where the split assumes ½.) The ledger composes both mechanisms with
dp-accounting rather than trusting the formula; `tests/privacy/test_central_dp_accounting.py`
checks that they agree. The count's noise comes from the wrapper's secret generator.

Figures (train metrics, every round): `central-dp-client-epsilon` (after the releases so far) and
`central-dp-client-epsilon-round` (one release), at `central-dp-delta`. They come from the
wrapper's `GaussianLedger` (dp-accounting), never from a formula here, and the ledger (with the
adaptive clipping norm) is saved in every checkpoint (`state_dict`).

Central DP protects the *released aggregate* (the global model and anything derived from it); the
server itself still sees every client's update in the clear (see docs/results.md, Defenses). The
round's published train metrics carry the DP figures only: the inner mean of the clients' raw
train loss and counts is no DP release, so it is left out of results.json (issue 27).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from logging import INFO, WARNING

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.exception import AggregationError
from flwr.serverapp.strategy import (DifferentialPrivacyClientSideAdaptiveClipping,
                                     DifferentialPrivacyClientSideFixedClipping,
                                     DifferentialPrivacyServerSideAdaptiveClipping,
                                     DifferentialPrivacyServerSideFixedClipping, FedAvg, Strategy)
from flwr.serverapp.strategy.dp_fixed_clipping import validate_replies
from flwr.supercore.differential_privacy import (KEY_NORM_BIT, compute_adaptive_noise_params,
                                                 compute_stdv)

from fedsnn.core.privacy.accounting import composed_gaussian_epsilon, replace_one_multiplier
from fedsnn.core.privacy.ledger import GaussianLedger, LedgerError
from fedsnn.core.privacy.units import CENTRAL_UNIT
from fedsnn.core.privacy.clipping import add_gaussian_noise, clip_update, update_norm
from fedsnn.core.protocol import ADAPTIVE_FLAG, CENTRAL_DP_FLAG, EQUAL_WEIGHT_KEY, TRAIN_METRICS
from strategies.base import StrategyWrapper


class CentralDPError(ValueError):
    """Central DP cannot be made to hold around this strategy; the message says why."""


def _arrays(record: ArrayRecord, noisy: list[np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in zip(record.keys(), noisy, strict=True)})


def clip_replies(replies: list[Message], sent: ArrayRecord, clipping_norm: float) -> int:
    """Clip every reply's arrays to `clipping_norm` around `sent`, in place; returns how many
    replies were scaled down."""
    reference = [sent[key].numpy() for key in sent.keys()]
    clipped = 0
    for reply in replies:
        for name, record in list(reply.content.array_records.items()):
            result = clip_update([record[key].numpy() for key in sent.keys()], reference,
                                 clipping_norm=clipping_norm)
            reply.content[name] = _arrays(sent, result.arrays)
            clipped += int(result.clipped)
    return clipped


def _norm_bits(replies: list[Message]) -> int:
    """Clients' norm bits (client-side adaptive clipping); a reply without one is refused."""
    count = 0
    for reply in replies:
        metrics = next(iter(reply.content.metric_records.values()))
        if KEY_NORM_BIT not in metrics:
            raise AggregationError(f"central DP: a reply has no '{KEY_NORM_BIT}' metric; clients "
                                   "need clients.privacy.release for client-side adaptive clipping")
        count += int(bool(metrics[KEY_NORM_BIT]))
    return count


class _SafeRelease:
    """`aggregate_train` shared by the four Flower wrappers below (see the module docstring)."""

    server_side_clipping = False
    adaptive = False
    strategy: Strategy
    clipping_norm: float
    noise_multiplier: float
    num_sampled_clients: int
    current_arrays: ArrayRecord

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._rng = np.random.default_rng(secrets.randbits(128))  # secret: not the run's seed
        self.last_noise_std = 0.0
        self.last_clipping_norm = 0.0

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Clip (server-side modes), aggregate, add noise sized with this round's clipping norm,
        then adapt the norm (adaptive modes)."""
        replies = list(replies)
        if not validate_replies(replies, self.num_sampled_clients, strict=True):
            return None, None
        norm = self.last_clipping_norm = self.clipping_norm
        if self.server_side_clipping:
            clipped = clip_replies(replies, self.current_arrays, norm)
        else:
            clipped = _norm_bits(replies) if self.adaptive else 0
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if arrays is not None:
            self.last_noise_std = compute_stdv(self.noise_multiplier, norm, self.num_sampled_clients)
            arrays = _arrays(arrays, add_gaussian_noise(arrays.to_numpy_ndarrays(),
                                                        std=self.last_noise_std, generator=self._rng))
            log(INFO, "central DP: clipped %d/%d updates at C=%.4g; noise std %.4g added",
                clipped, len(replies), norm, self.last_noise_std)
        if self.adaptive:  # Andrew et al.: the *unclipped* fraction drives C (Flower's is flipped)
            unclipped = len(replies) - clipped
            self._geometric_update(self._noisy_fraction(unclipped, len(replies)))  # type: ignore[attr-defined]
        return arrays, metrics

    def _noisy_fraction(self, count: int, total: int) -> float:
        """The fraction `count / total` with N(0, σ_b²) on the count, from the secret generator
        (Flower draws it from numpy's global one).

        Flower 1.39 passes the *clipped* fraction to `_geometric_update`, C ← C·exp(−η(b − γ)),
        which is Andrew et al. 2021's rule for the *unclipped* fraction b: with most updates
        clipped C shrinks further (issue 27). Here b is the unclipped fraction (m − clipped),
        so C converges to the γ-quantile of the update norms. The count's sensitivity is still 1.
        """
        return float(count + self._rng.normal(0.0, self.clipped_count_stddev)) / float(total)

    def release_multipliers(self) -> tuple[float, ...]:
        """σ/Δ of each Gaussian mechanism one release composes, under replace-one: the update
        (noise z_u·C on a sum whose sensitivity is 2C) and, when adaptive, the clipped count
        (noise σ_b on a sum of 0/1 bits whose sensitivity is 1)."""
        update = replace_one_multiplier(self.noise_multiplier)
        return (update, self.clipped_count_stddev) if self.adaptive else (update,)

    def resize(self, num_sampled_clients: int, nominal_noise_multiplier: float) -> None:
        """Use a new m (the number of clients sampled this round)."""
        self.num_sampled_clients = num_sampled_clients
        if self.adaptive:
            self.clipped_count_stddev, self.noise_multiplier = compute_adaptive_noise_params(
                nominal_noise_multiplier, num_sampled_clients,
                clipped_count_stddev(nominal_noise_multiplier, num_sampled_clients))


class ServerFixed(_SafeRelease, DifferentialPrivacyServerSideFixedClipping):
    """Flower's server-side fixed clipping with `_SafeRelease`."""

    server_side_clipping = True


class ClientFixed(_SafeRelease, DifferentialPrivacyClientSideFixedClipping):
    """Flower's client-side fixed clipping with `_SafeRelease` (clients clip: `clients.privacy.release`)."""


class ServerAdaptive(_SafeRelease, DifferentialPrivacyServerSideAdaptiveClipping):
    """Flower's server-side adaptive clipping with `_SafeRelease`."""

    server_side_clipping = True
    adaptive = True


class ClientAdaptive(_SafeRelease, DifferentialPrivacyClientSideAdaptiveClipping):
    """Flower's client-side adaptive clipping with `_SafeRelease`."""

    adaptive = True


def clipped_count_stddev(noise_multiplier: float, num_sampled_clients: int) -> float:
    """σ_b of the noisy clipped-count query of adaptive clipping (Andrew et al. 2021).

    Flower's default, m/20, only admits z < m/10 (z = 1 needs 10+ clients a round); a small
    federation uses σ_b = z instead, which leaves the update's multiplier (z⁻² − (2σ_b)⁻²)^-½
    = 1.15 z so that update and count together are still a Gaussian release with multiplier z/2
    under replace-one (see the module docstring).
    """
    return max(num_sampled_clients / 20, noise_multiplier)


# name -> (inner, z, C, m) -> wrapper
CLIPPING_MODES: dict[str, Callable[[Strategy, float, float, int], _SafeRelease]] = {
    "server-fixed": lambda inner, z, c, m: ServerFixed(inner, z, c, m),
    "client-fixed": lambda inner, z, c, m: ClientFixed(inner, z, c, m),
    "server-adaptive": lambda inner, z, c, m: ServerAdaptive(
        inner, z, m, initial_clipping_norm=c, clipped_count_stddev=clipped_count_stddev(z, m)),
    "client-adaptive": lambda inner, z, c, m: ClientAdaptive(
        inner, z, m, initial_clipping_norm=c, clipped_count_stddev=clipped_count_stddev(z, m)),
}


def require_mean(strategy: Strategy) -> FedAvg:
    """`strategy` if it is FedAvg's plain weighted mean by `dp-weight`; else `CentralDPError`."""
    name = type(strategy).__name__
    if not isinstance(strategy, FedAvg) or type(strategy).aggregate_train is not FedAvg.aggregate_train:
        raise CentralDPError(
            f"central DP refuses to wrap {name}: its noise z*C/m is sized for the mean of m "
            f"clipped updates, and {name} does not return that mean (a median or Krum has another "
            f"sensitivity); use aggregator 'fedavg' without norm-filter")
    if strategy.weighted_by_key != EQUAL_WEIGHT_KEY:
        raise CentralDPError(
            f"central DP needs FedAvg(weighted_by_key={EQUAL_WEIGHT_KEY!r}) (equal client weights); "
            f"weighting by {strategy.weighted_by_key!r} breaks the C/m sensitivity")
    return strategy


class CentralDP(StrategyWrapper):
    """Central DP around FedAvg (see the module docstring).

    Args:
        strategy: FedAvg weighted by `dp-weight`.
        clipping: one of `CLIPPING_MODES`.
        clipping_norm: C (the initial C for adaptive modes).
        noise_multiplier: z.
        delta: δ of the reported ε.
        accountant: "rdp" or "pld".

    Example:
        >>> inner = FedAvg(weighted_by_key="dp-weight")
        >>> dp = CentralDP(inner, clipping="server-fixed", clipping_norm=1.0,
        ...                noise_multiplier=1.0, delta=1e-5)
    """

    label = "central DP"

    def __init__(self, strategy: Strategy, *, clipping: str, clipping_norm: float,
                 noise_multiplier: float, delta: float, accountant: str = "rdp") -> None:
        if clipping not in CLIPPING_MODES:
            raise CentralDPError(f"Unknown clipping {clipping!r}; expected one of {sorted(CLIPPING_MODES)}")
        if not noise_multiplier > 0:
            raise CentralDPError(f"central DP needs a positive noise multiplier, got {noise_multiplier}")
        super().__init__(require_mean(strategy))
        self.inner = strategy
        self.clipping = clipping
        self.clipping_norm = clipping_norm
        self.noise_multiplier = noise_multiplier
        self.delta = delta
        self.accountant = accountant
        self.dp: _SafeRelease | None = None
        self.ledger = GaussianLedger(accountant, unit=CENTRAL_UNIT)
        self._restored_clipping_norm: float | None = None
        # nominal: adaptive clipping's split of z gives the same ε (module docstring)
        self.epsilon_round = composed_gaussian_epsilon(
            history=[((replace_one_multiplier(noise_multiplier),), 1)], delta=delta,
            accountant=accountant)

    @property
    def releases(self) -> int:
        return self.ledger.releases

    def epsilon(self) -> float:
        """Client-level ε (replace one client) of every release so far."""
        return self.ledger.epsilon(self.delta)

    def state_dict(self) -> dict[str, object]:
        """The ledger and the current clipping norm (adaptive modes), for checkpoints."""
        norm = self.dp.clipping_norm if self.dp is not None else self._restored_clipping_norm
        return {"ledger": self.ledger.state_dict(), "relation": "replace-one",
                "clipping-norm": float(norm if norm is not None else self.clipping_norm)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Continue from a checkpoint's `state_dict`.

        Raises:
            LedgerError: the state was written under another neighbouring relation.
        """
        if state.get("relation") != "replace-one":
            raise LedgerError(f"central DP ledger made under {state.get('relation')!r}, this "
                              "version accounts replace-one; start a new run")
        self.ledger.load_state_dict(state["ledger"])  # type: ignore[arg-type]
        self._restored_clipping_norm = float(state["clipping-norm"])  # type: ignore[arg-type]
        if self.dp is not None:
            self.dp.clipping_norm = self._restored_clipping_norm

    def describe(self) -> str:
        return (f"central DP ({self.clipping}, C={self.clipping_norm:g}, z={self.noise_multiplier:g},"
                f" δ={self.delta:g}; client-level ε (replace one client) per round "
                f"{self.epsilon_round:.4g})")

    def _expected_sample_size(self, grid: Grid) -> int:
        """m, as FedAvg will sample it (FedAvg.configure_train's rule)."""
        available = int(len(list(grid.get_node_ids())) * self.inner.fraction_train)
        return max(available, self.inner.min_train_nodes)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Tell clients to report equal weights (and norm bits), build Flower's wrapper for m,
        and configure through it."""
        self.round_arrays = arrays
        config[CENTRAL_DP_FLAG] = 1
        config[ADAPTIVE_FLAG] = int(self.clipping == "client-adaptive")
        if self.dp is None:
            self.dp = CLIPPING_MODES[self.clipping](self.inner, self.noise_multiplier,
                                                    self.clipping_norm,
                                                    self._expected_sample_size(grid))
            if self._restored_clipping_norm is not None:
                self.dp.clipping_norm = self._restored_clipping_norm
            self.strategy = self.dp  # type: ignore[assignment]
        messages = list(self.dp.configure_train(server_round, arrays, config, grid))
        if messages and len(messages) != self.dp.num_sampled_clients:
            self.dp.resize(len(messages), self.noise_multiplier)
        return messages

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """Flag evaluation too: clients then report `dp-weight` = their example count there (the
        inner FedAvg weights every aggregation by `dp-weight`)."""
        config[CENTRAL_DP_FLAG] = 1
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Release the round only with exactly m equal-weight replies; report ε."""
        assert self.dp is not None, "configure_train must run before aggregate_train"
        ok = [reply for reply in replies if not reply.has_error()]
        problem = self._refusal(ok)
        if problem:
            log(WARNING, "central DP: round %d not released: %s", server_round, problem)
            return None, None
        arrays, metrics = self.dp.aggregate_train(server_round, ok)
        if arrays is None:
            return None, metrics
        self.ledger.record(noise_multipliers=self.dp.release_multipliers())
        # the mean of the clients' train loss and counts is no DP release: not published
        withheld = sorted(key for key in (metrics or {}) if key in TRAIN_METRICS)
        if withheld:
            log(INFO, "central DP: round %d: %s left out of the published metrics", server_round,
                ", ".join(withheld))
        metrics = MetricRecord({key: value for key, value in (metrics or {}).items()
                                if key not in TRAIN_METRICS})
        metrics.update({
            "central-dp-client-epsilon": self.epsilon(),
            "central-dp-client-epsilon-round": composed_gaussian_epsilon(
                history=[(self.dp.release_multipliers(), 1)], delta=self.delta,
                accountant=self.accountant),
            "central-dp-delta": self.delta,
            "central-dp-noise-multiplier": self.noise_multiplier,
            "central-dp-noise-std": self.dp.last_noise_std,
            "central-dp-clipping-norm": float(self.dp.last_clipping_norm),
        })
        return arrays, metrics

    def _refusal(self, replies: list[Message]) -> str:
        """Why these replies cannot be released under the configured noise ('' if they can)."""
        assert self.dp is not None
        m = self.dp.num_sampled_clients
        if len(replies) != m:
            return (f"{len(replies)} usable replies, but the noise z*C/m was sized for m={m}; "
                    "a mean of fewer updates would need more noise")
        client_side = not self.dp.server_side_clipping
        reference = [self.round_arrays[k].numpy() for k in self.round_arrays.keys()] \
            if client_side and self.round_arrays is not None else None
        for reply in replies:
            records = list(reply.content.metric_records.values())
            if len(records) != 1 or records[0].get(EQUAL_WEIGHT_KEY) != 1:
                return (f"a reply does not report {EQUAL_WEIGHT_KEY}=1 (clients need "
                        "clients.privacy.release); unequal weights break the C/m sensitivity")
            if self.dp.adaptive and client_side and KEY_NORM_BIT not in records[0]:
                return f"a reply has no '{KEY_NORM_BIT}' (client-side adaptive clipping)"
            if reference is not None:
                (record,) = reply.content.array_records.values()
                norm = update_norm([record[k].numpy() for k in self.round_arrays.keys()],
                                   reference)
                if norm > self.dp.clipping_norm * (1 + 1e-6):
                    return (f"a client-clipped update has norm {norm:.4g} > C="
                            f"{self.dp.clipping_norm:.4g}; the noise would not cover it")
        return ""
