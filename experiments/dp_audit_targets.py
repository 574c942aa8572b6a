"""Issue 31's targets: the empirical ε lower bound of each mechanism beside its accounted ε.

Parts (each over --seeds; canaries drawn with the seed, mechanism noise from `secrets`):

- `dp-sgd`: white-box Dirac canaries (strategies.dp_audit's attack) at accounted ε ∈ {1, 4, 8},
  on the default run's LeNet (digits 28×28, partition 0 of 2): (a) the default run's sampling
  (q = 1/⌈n/16⌉, 10 rounds × 2 epochs of steps), (b) full batches (q = 1, 10 steps);
- `black-box`: canary *samples* (random images, random labels), one per canary client, scored by
  the loss of the returned model (plus the reply's count, which a correct reply does not leak);
- `spike`: per-bit randomized response at ε_bit ∈ {0.5, 1, 2};
- `client`: local DP (canary clients through the node's release) and central DP at ε ∈ {1, 4, 8}
  over 3 rounds;
- `broken`: the regression suite's broken mechanisms, one draw each;
- `validity`: how often a 95 % bound lands above the true ε (randomized response);
- `ideal`: the bound's ceiling for Gaussian noise (the optimal attack's scores, simulated);
- `cost`: a default DP-SGD run's wall time without and with `dp-audit`.

Example (the figures in docs/results.md, issue 31):

    python -m experiments.dp_audit_targets --parts dp-sgd,spike,client,broken --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
from opacus.accountants.utils import get_noise_multiplier

from clients.node import NodeSetup
from fedsnn.core.config import RunConfig
from fedsnn.core.data import ClientData, load_dataset
from fedsnn.core.models import ModelSpec, build_model, spec_for
from fedsnn.core.privacy.accounting import gaussian_epsilon, gaussian_noise_multiplier
from fedsnn.core.privacy.canaries import client_canary_scores, secret_inclusion, spike_canary_scores
from fedsnn.core.privacy.clipping import add_gaussian_noise, clip_update
from fedsnn.core.privacy.dpsgd import DpSgdSettings, poisson_sample_rate, private_epochs
from fedsnn.core.privacy.dpsgd_audit import (canary_client_scores, claimed_epsilon,
                                             dirac_canary_scores)
from fedsnn.core.privacy.one_run import bound_from_scores
from fedsnn.core.privacy.spikes import RandomizedResponse
from fedsnn.tools.local_grid import server_identity
from strategies.dp_audit import RunFacts, audit_dp_claims
from strategies.stack import build_strategy

DELTA = 1e-5
EPSILONS = (1.0, 4.0, 8.0)


def _row(part: str, setting: str, seed: int, claimed: float, bound: Any, seconds: float) -> dict:
    row = {"part": part, "setting": setting, "seed": seed, "accounted": round(claimed, 3),
           "bound": round(bound.epsilon, 3), "ratio": round(claimed / bound.epsilon, 2)
           if bound.epsilon > 0 else None, "guesses": bound.guesses, "correct": bound.correct,
           "m": bound.canaries, "seconds": round(seconds, 1)}
    print(json.dumps(row), flush=True)
    return row


def _default_client() -> tuple[RunConfig, ClientData, ModelSpec]:
    """The default run's config, partition 0 of 2 and its model spec."""
    config = RunConfig()
    dataset = load_dataset(config.dataset, config.image_size)
    return (config, NodeSetup.for_partition(config, 0, 2).data,
            spec_for(config, dataset.in_channels, dataset.num_classes, dataset.image_size))


def dp_sgd(seeds: list[int], canaries: int) -> list[dict]:
    config, data, spec = _default_client()
    q_run = poisson_sample_rate(len(data.train_x), config.batch_size)
    settings_list = [("run sampling", config.batch_size, q_run,
                      config.num_server_rounds * config.local_epochs * round(1 / q_run)),
                     ("full batch", len(data.train_x), 1.0, 10)]
    rows = []
    for name, batch, q, steps in settings_list:
        for target in EPSILONS:
            sigma = get_noise_multiplier(target_epsilon=target, target_delta=DELTA,
                                         sample_rate=q, steps=steps, accountant="rdp")
            for seed in seeds:
                started = time.monotonic()
                torch.manual_seed(seed)
                included = secret_inclusion(canaries, seed=seed)
                scores = dirac_canary_scores(
                    build_model(spec, seed=seed), data.train_x, data.train_y,
                    settings=DpSgdSettings(max_grad_norm=1.0, delta=DELTA, noise_multiplier=sigma),
                    batch_size=batch, steps=steps, included=included, coordinate_seed=seed)
                claimed = claimed_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps,
                                          delta=DELTA)
                rows.append(_row("dp-sgd white-box", f"{name}: q={q:.3g}, {steps} steps",
                                 seed, claimed, bound_from_scores(scores, included, delta=DELTA),
                                 time.monotonic() - started))
    return rows


def black_box(seeds: list[int], canaries: int) -> list[dict]:
    config, data, spec = _default_client()
    base_x, base_y = data.train_x[:64], data.train_y[:64]
    rows = []
    for target in EPSILONS:
        sigma = get_noise_multiplier(target_epsilon=target, target_delta=DELTA, sample_rate=1.0,
                                     steps=10, accountant="rdp")
        settings = DpSgdSettings(max_grad_norm=1.0, delta=DELTA, noise_multiplier=sigma)
        for seed in seeds:
            started = time.monotonic()
            gen = torch.Generator().manual_seed(seed)
            canary_x = torch.rand((canaries, *base_x.shape[1:]), generator=gen)
            canary_y = torch.randint(0, 10, (canaries,), generator=gen)

            def reply(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.nn.Module, dict]:
                model = build_model(spec, seed=seed)
                private_epochs(model, x, y, optimizer=torch.optim.SGD(model.parameters(), 0.5),
                               settings=settings, epochs=10, batch_size=len(base_x) + 1)
                return model.eval(), {}

            included = secret_inclusion(canaries, seed=seed)
            scores = canary_client_scores(reply, base_x, base_y, canary_x, canary_y, included)
            claimed = claimed_epsilon(noise_multiplier=sigma, sample_rate=1.0, steps=10,
                                      delta=DELTA)
            rows.append(_row("dp-sgd black-box", "full batch of 64(+1), 10 steps, loss score",
                             seed, claimed, bound_from_scores(scores, included, delta=DELTA),
                             time.monotonic() - started))
    return rows


def spike(seeds: list[int], bits: int) -> list[dict]:
    rows = []
    for epsilon_bit in (0.5, 1.0, 2.0):
        for seed in seeds:
            started = time.monotonic()
            included = secret_inclusion(bits, seed=seed)
            scores = spike_canary_scores(RandomizedResponse(epsilon_bit), included, seed=seed)
            rows.append(_row("spike-dp per bit", f"randomized response, {bits} canary bits",
                             seed, epsilon_bit, bound_from_scores(scores, included, delta=0.0),
                             time.monotonic() - started))
    return rows


def client(seeds: list[int], canaries: int) -> list[dict]:
    rows = []
    rounds = 3
    for target in EPSILONS:
        z = 2 * gaussian_noise_multiplier(target_epsilon=target, delta=DELTA, releases=rounds)
        config = RunConfig.from_mapping({"defenses": "local-dp,central-dp",
                                         "local-dp-noise-multiplier": z,
                                         "central-dp-noise-multiplier": z,
                                         "dp-audit-canaries": canaries})
        for seed in seeds:
            facts = RunFacts(config, None, None, rounds, 2, {})  # type: ignore[arg-type]
            with server_identity():
                for audit in audit_dp_claims(build_strategy(config), facts):
                    rows.append(_row(audit.mechanism, f"z={z:.3g}, {rounds} rounds", seed,
                                     audit.accounted_epsilon, audit.bound, audit.seconds))
    return rows


def broken(seeds: list[int], canaries: int) -> list[dict]:
    """One draw per broken mechanism; claimed ε = 1 (local DP, 3 rounds)."""
    rounds, clip = 3, 1.0
    z = 2 * gaussian_noise_multiplier(target_epsilon=1.0, delta=DELTA, releases=rounds)
    claimed = gaussian_epsilon(noise_multiplier=z / 2, releases=rounds, delta=DELTA)

    def local(noise_scale: float = 1.0, clipped: bool = True, known: bool = False):
        def mechanism(updates: np.ndarray, server_round: int) -> np.ndarray:
            # noise from the round number (known) or from the experiment's seed (reproducible)
            rng = np.random.default_rng(server_round if known else [seeds[0], server_round, 7])
            zeros = [np.zeros(updates.shape[1])]
            out = [add_gaussian_noise(
                clip_update([row], zeros, clipping_norm=clip).arrays if clipped else [row],
                std=noise_scale * z * clip, generator=rng)[0] for row in updates]
            return np.stack(out)
        return mechanism

    def derive(server_round: int) -> np.ndarray:
        rng = np.random.default_rng(server_round)
        return np.stack([rng.normal(0.0, z * clip, canaries) for _ in range(canaries)])

    rows = []
    for name, mechanism, derivable in [("noise x1/4", local(noise_scale=0.25), None),
                                       ("clip skipped", local(clipped=False), None),
                                       ("noise from a known seed", local(known=True), derive),
                                       ("correct, seed-deriving attacker", local(), derive)]:
        started = time.monotonic()
        included = secret_inclusion(canaries, seed=seeds[0])
        scores = client_canary_scores(mechanism, included, clipping_norm=clip, rounds=rounds,
                                      derivable_noise=derivable)
        rows.append(_row("broken local-dp", name, seeds[0], claimed,
                         bound_from_scores(scores, included, delta=DELTA),
                         time.monotonic() - started))
    return rows


def cost(seeds: list[int], canaries: int) -> list[dict]:
    """Wall time of a default DP run (every setting at its default, `defenses = "dp-sgd"`, the
    curious server off) without and with `dp-audit`, in-process with 2 nodes."""
    import tempfile
    from pathlib import Path

    from client_app import create_client_app
    from fedsnn.tools.local_grid import federate_in_process
    from server_app import run

    rows = []
    for seed in seeds:
        for audit in (False, True):
            with tempfile.TemporaryDirectory() as scratch:
                config = {"defenses": "dp-sgd", "audit-enabled": False, "dp-audit": audit,
                          "dp-audit-canaries": canaries, "seed": seed, "output-dir": scratch}
                started = time.monotonic()
                run_dir = federate_in_process(run, create_client_app(config), config, 2)
                results = json.loads((Path(run_dir) / "results.json").read_text())
                row = {"part": "cost", "seed": seed, "dp-audit": audit,
                       "wall-s": round(time.monotonic() - started, 1),
                       "status": results["status"],
                       "audit-s": [m["seconds"] for m in
                                   (results.get("dp-audit") or {}).get("mechanisms", [])],
                       "summary": [m["summary"] for m in
                                   (results.get("dp-audit") or {}).get("mechanisms", [])]}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def ideal(seeds: list[int], canaries: int) -> list[dict]:
    """The ceiling of this bound for Gaussian noise: scores drawn straight from N(±μ/2, 1), the
    optimal attack on a Gaussian mechanism with μ = 1/z (q = 1, one release of multiplier z),
    at accounted ε ∈ {1, 4, 8}, for m = `canaries` and 10× and 100× as many."""
    rows = []
    for target in EPSILONS:
        z = gaussian_noise_multiplier(target_epsilon=target, delta=DELTA, releases=1)
        for m in (canaries, 10 * canaries, 100 * canaries):
            for seed in seeds:
                rng = np.random.default_rng(seed)
                included = rng.random(m) < 0.5
                scores = np.where(included, 0.5, -0.5) / z + rng.standard_normal(m)
                claimed = gaussian_epsilon(noise_multiplier=z, releases=1, delta=DELTA)
                rows.append(_row("ideal Gaussian", f"z={z:.3g}, m={m}", seed, claimed,
                                 bound_from_scores(scores, included, delta=DELTA), 0.0))
    return rows


def validity(seeds: list[int], bits: int) -> list[dict]:
    """How often the 95 % bound lands above the truth: 300 runs of ε = 1 randomized response
    on `bits` // 2 canary bits (seeded by the first seed)."""
    rng = np.random.default_rng(seeds[0])
    bounds = []
    for _ in range(300):
        truth = rng.random(bits // 2) < 0.5
        seen = truth ^ (rng.random(bits // 2) < 1 / (1 + np.e))
        bounds.append(bound_from_scores(seen.astype(float), truth, delta=0.0).epsilon)
    row = {"part": "validity", "runs": 300, "bits": bits // 2,
           "above-1": int(sum(b > 1 for b in bounds)), "max": round(max(bounds), 3), "mean": round(float(np.mean(bounds)), 3)}
    print(json.dumps(row), flush=True)
    return [row]


PARTS = {"validity": validity, "ideal": ideal, "cost": cost, "dp-sgd": dp_sgd,
         "black-box": black_box, "spike": spike, "client": client, "broken": broken}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="dp-sgd,spike,client,broken")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--bits", type=int, default=100_000)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[dict] = []
    for part in args.parts.split(","):
        size = args.bits if part in ("spike", "validity") else args.canaries
        rows += PARTS[part](seeds, size)
    if args.out:
        with open(args.out, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
