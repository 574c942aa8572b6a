"""dp-audit: correct mechanisms keep their claim over seeds; a regression suite of deliberately
broken mechanisms (noise ×¼, clipping skipped, noise from a seed the server knows, the sample
count leaked in the reply) each yields a lower bound above its claimed ε."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord
from opacus.accountants.utils import get_noise_multiplier
from torch import nn

from clients.ledgers import NodeLedgers
from clients.privacy import plan_round
from fedsnn.core.config import RunConfig
from fedsnn.core.models import build_model, spec_for
from fedsnn.core.privacy.accounting import gaussian_epsilon, gaussian_noise_multiplier
from fedsnn.core.privacy.canaries import client_canary_scores, secret_inclusion, spike_canary_scores
from fedsnn.core.privacy.clipping import add_gaussian_noise, clip_update
from fedsnn.core.privacy.dpsgd import DpSgdSettings, private_epochs
from fedsnn.core.privacy.dpsgd_audit import (canary_client_scores, claimed_epsilon,
                                             dirac_canary_scores)
from fedsnn.core.privacy.one_run import bound_from_scores
from fedsnn.core.privacy.spikes import RandomizedResponse
from fedsnn.core.protocol import CLIENT_DP_FLAG
from fedsnn.tools.local_grid import server_identity
from strategies.dp_audit import RunFacts, audit_dp_claims, audit_summary
from strategies.stack import build_strategy

DELTA = 1e-5
C, ROUNDS, M = 1.0, 3, 500
Z = 2 * gaussian_noise_multiplier(target_epsilon=1.0, delta=DELTA, releases=ROUNDS)  # Δ = 2C
CLAIMED_LOCAL = gaussian_epsilon(noise_multiplier=Z / 2, releases=ROUNDS, delta=DELTA)  # 1.0


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _node_release(updates: np.ndarray, server_round: int) -> np.ndarray:
    """The node's own local-DP step (clients.privacy: RoundPrivacy.release), once per canary
    client."""
    config = {"local-dp-clipping-norm": C, "local-dp-noise-multiplier": Z, "dp-delta": DELTA,
              "dp-accountant": "rdp", CLIENT_DP_FLAG: 1}
    run = RunConfig()
    sent = ArrayRecord({"w": Array(np.zeros(len(updates), np.float32))})
    return np.stack([plan_round(config, run, spec_for(run, 1, 10, 28), NodeLedgers(), public_examples=1)
                     .release(ArrayRecord({"w": Array(row.astype(np.float32))}), {}, sent=sent)[0]
                     ["w"].numpy() for row in updates])


def _broken_release(*, noise_scale: float = 1.0, clip: bool = True, seed_known: bool = False):
    """Local DP done wrong on purpose."""
    def local_dp(updates: np.ndarray, server_round: int) -> np.ndarray:
        zeros = [np.zeros(updates.shape[1])]
        rng = np.random.default_rng(server_round if seed_known else None)
        out = []
        for row in updates:
            arrays = clip_update([row], zeros, clipping_norm=C).arrays if clip else [row]
            out.append(add_gaussian_noise(arrays, std=noise_scale * Z * C, generator=rng)[0])
        return np.stack(out)
    return local_dp


def _server_derives(server_round: int, m: int = M) -> np.ndarray:
    """What the server computes if the noise came from the round number as the seed."""
    rng = np.random.default_rng(server_round)
    return np.stack([rng.normal(0.0, Z * C, m) for _ in range(m)])


def _local_bound(release_fn, derivable=None, m: int = M) -> float:
    included = secret_inclusion(m)
    scores = client_canary_scores(release_fn, included, clipping_norm=C, rounds=ROUNDS,
                                  derivable_noise=derivable)
    return bound_from_scores(scores, included, delta=DELTA).epsilon


@pytest.mark.parametrize("draw", [0, 1, 2])
def test_correct_local_dp_keeps_its_claim_even_against_a_seed_deriving_server(draw: int) -> None:
    # three independent draws: the node's noise and the canaries come from `secrets`
    bound = _local_bound(_node_release, derivable=_server_derives)
    assert bound <= CLAIMED_LOCAL


@pytest.mark.parametrize("broken", [
    pytest.param(dict(noise_scale=0.25), id="noise-x1/4"),
    pytest.param(dict(clip=False), id="clip-skipped"),
    pytest.param(dict(seed_known=True), id="noise-from-a-known-seed"),
])
def test_broken_local_dp_is_caught(broken: dict) -> None:
    derivable = (lambda r: _server_derives(r, 2000)) if broken.get("seed_known") else None
    bound = _local_bound(_broken_release(**broken), derivable=derivable, m=2000)
    assert bound > CLAIMED_LOCAL, f"{broken}: bound {bound:.3g} <= claimed {CLAIMED_LOCAL:.3g}"


# -- DP-SGD, white-box Dirac canaries -----------------------------------------------------------

def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _dirac_bound(sigma: float, tamper=None, steps: int = 10) -> float:
    torch.manual_seed(1)
    x, y = torch.rand(128, 1, 8, 8), torch.randint(0, 10, (128,))
    included = secret_inclusion(2000)
    scores = dirac_canary_scores(_mlp(), x, y, settings=DpSgdSettings(
        max_grad_norm=1.0, delta=DELTA, noise_multiplier=sigma), batch_size=128, steps=steps,
        included=included, tamper=tamper)
    return bound_from_scores(scores, included, delta=DELTA).epsilon


SIGMA_AT_2 = get_noise_multiplier(target_epsilon=2.0, target_delta=DELTA, sample_rate=1.0,
                                  steps=10, accountant="rdp")


def test_dp_sgd_claim_is_the_accountants() -> None:
    assert claimed_epsilon(noise_multiplier=SIGMA_AT_2, sample_rate=1.0, steps=10,
                           delta=DELTA) == pytest.approx(2.0, rel=1e-2)


@pytest.mark.parametrize("draw", [0, 1, 2])
def test_correct_dp_sgd_keeps_its_claim(draw: int) -> None:
    bound = _dirac_bound(SIGMA_AT_2)
    assert 0 < bound <= 2.0  # the attack has power, and proves no more than accounted


def _quarter_noise(optimizer) -> None:
    optimizer.noise_multiplier /= 4


def _skip_clipping(optimizer) -> None:
    clip_and_accumulate = optimizer.clip_and_accumulate

    def unclipped() -> None:
        norm, optimizer.max_grad_norm = optimizer.max_grad_norm, float("inf")
        try:
            clip_and_accumulate()
        finally:
            optimizer.max_grad_norm = norm  # the noise is still sized with C
    optimizer.clip_and_accumulate = unclipped


@pytest.mark.parametrize("tamper", [_quarter_noise, _skip_clipping],
                         ids=["noise-x1/4", "clip-skipped"])
def test_broken_dp_sgd_is_caught(tamper) -> None:
    assert _dirac_bound(SIGMA_AT_2, tamper=tamper) > 2.0


# -- DP-SGD, black-box: the sample count in the reply -----------------------------------------

def _count_bound(leak: bool) -> tuple[float, float]:
    torch.manual_seed(2)
    base_x, base_y = torch.rand(31, 1, 8, 8), torch.randint(0, 10, (31,))
    canary_x, canary_y = torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,))
    settings = DpSgdSettings(max_grad_norm=1.0, delta=DELTA, noise_multiplier=6.0)

    def dp_sgd_reply(x: torch.Tensor, y: torch.Tensor) -> tuple[nn.Module, Mapping[str, float]]:
        model = _mlp()
        outcome = private_epochs(model, x, y, optimizer=torch.optim.SGD(model.parameters(), 0.1),
                                 settings=settings, epochs=1, batch_size=32)
        # the leak: what private_epochs returns (len(x)) goes into the reply as num-examples;
        # the fix reports a public figure (here the base size) or nothing
        return model, {"num-examples": outcome.num_examples if leak else len(base_x)}

    included = secret_inclusion(40)
    scores = canary_client_scores(dp_sgd_reply, base_x, base_y, canary_x, canary_y, included)
    claimed = claimed_epsilon(noise_multiplier=6.0, sample_rate=1.0, steps=1, delta=DELTA)
    return bound_from_scores(scores, included, delta=DELTA).epsilon, claimed


def test_sample_count_leaked_in_the_reply_is_caught() -> None:
    bound, claimed = _count_bound(leak=True)
    assert bound > claimed


def test_reply_without_the_count_keeps_its_claim() -> None:
    bound, claimed = _count_bound(leak=False)
    assert bound <= claimed


# -- spike-level DP (per bit) -------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spike_dp_per_bit_bound_is_within_10_percent_and_never_above(seed: int) -> None:
    included = secret_inclusion(50_000, seed=seed)
    scores = spike_canary_scores(RandomizedResponse(1.0), included, seed=seed)
    bound = bound_from_scores(scores, included, delta=0.0).epsilon
    assert 0.9 <= bound <= 1.0


def test_spike_dp_with_too_few_flips_is_caught() -> None:
    broken = RandomizedResponse(3.0)  # flips as for ε_bit = 3 while claiming 1
    included = secret_inclusion(50_000)
    assert bound_from_scores(spike_canary_scores(broken, included), included,
                             delta=0.0).epsilon > 1.0


# -- the run's audit, from a config -------------------------------------------------------------

def test_the_runs_audit_reports_both_figures_per_mechanism() -> None:
    config = RunConfig.from_mapping({
        "defenses": "central-dp,local-dp,dp-sgd,spike-dp", "dataset": "digits", "image-size": 8,
        "model": "lenet", "update-mode": "gradient", "batch-size": 8, "dp-audit": True,
        "dp-audit-canaries": 200, "num-server-rounds": 2, "dp-sgd-noise-multiplier": 2.0})
    from fedsnn.core.data import load_dataset
    data = load_dataset(config.dataset, config.image_size)
    spec = spec_for(config, data.in_channels, data.num_classes, data.image_size)
    strategy = build_strategy(config)
    facts = RunFacts(config, spec, build_model(spec), rounds=2, num_partitions=4, reported={})
    with server_identity():
        summary = audit_summary(audit_dp_claims(strategy, facts))
    rows = {row["mechanism"]: row for row in summary["mechanisms"]}
    assert set(rows) == {"central-dp", "local-dp", "dp-sgd", "spike-dp"}
    assert summary["claims"] == "hold"
    assert rows["spike-dp"]["unit"] == "bit" and rows["dp-sgd"]["unit"] == "sample"
    for row in rows.values():
        assert 0 <= row["empirical-epsilon-lower-bound"] <= row["accounted-epsilon"]
        assert "accounted ε" in row["summary"] and "at 95%" in row["summary"]
