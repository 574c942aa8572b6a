"""Time to reach the unrolled attack's identified fraction: today's attack against candidate
speed-ups, on the same clients and replies, arms interleaved per client (issue 29's speed target).

Each client is a client of the target cell of docs/results.md (lenet, SGD, N = 32, 4 full-batch
local steps; `experiments.unrolled_grid.client_reply`), observed as the in-line audit observes it
with the default threat model (data-format granted). Per client every arm runs
`attacks.unrolled.unrolled` (the audit's attack: learned labels and the final label refinement),
the arms' order rotated from client to client. Every `--every` steps the best iterate so far is
scored with the grid's identification (optimal assignment on MSE to the client's images, then
nearest neighbour in the train split: `fedsnn.audit.chance.score_candidates`); the scoring's time
is taken out of the arm's clock. Printed per arm: identified at the end, pooled with its
client-clustered interval; its wall time (the attack's own stopping rule, refinement included)
and the ratio today / arm; the time each client's run first reached today's final count on that
client (from the snapshots: an oracle figure, the attacker cannot see it) and its ratio; the
per-client paired test of the final counts against today's (Wilcoxon signed-rank, two-sided).

An arm is `name:field=value,field=value` over `unrolled_preset` (AttackSettings fields; the
baseline arm "today" is the preset with `--iterations`).

Usage:
    .venv/bin/python benchmarks/unrolled_speed.py --clients 0 1 --iterations 3000 \\
        --arm cosine1000:iterations=1000,lr_schedule=cosine --out runs/speed-dev.jsonl
    .venv/bin/python benchmarks/unrolled_speed.py --table --out runs/speed-dev.jsonl

Ratios come from one run on one machine (one thread); on a shared machine absolute times are
inflated, both arms alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from attacks.progress import Step, watch
from attacks.latent_prior import public_autoencoder
from attacks.rate_decoder import PublicData
from attacks.settings import AttackSettings, unrolled_preset
from attacks.spiking import finalize
from attacks.threat_model import PUBLIC_DATA, ThreatModel
from attacks.types import Observation
from attacks.unrolled import dummy_side, input_format, unrolled
from experiments.unrolled_grid import client_reply
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.chance import Truth, score_candidates
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.reply import observe_reply
from fedsnn.core.data import load_dataset
from fedsnn.core.metrics import clustered_rate_stat

BASELINE = "today"
FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(AttackSettings)}


def parse_arm(text: str) -> tuple[str, dict[str, Any]]:
    """`name:field=value,...` -> (name, changes), values cast as the field's default is.

    Example:
        >>> parse_arm("fast:iterations=1000,lr_schedule=cosine,lr=0.3")
        ('fast', {'iterations': 1000, 'lr_schedule': 'cosine', 'lr': 0.3})
    """
    name, _, body = text.partition(":")
    changes: dict[str, Any] = {}
    defaults = AttackSettings()
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in FIELD_TYPES:
            raise SystemExit(f"arm {name!r}: {key!r} is not an AttackSettings field")
        default = getattr(defaults, key)
        cast = (float if default is None else
                (lambda v: v.lower() in ("1", "true")) if isinstance(default, bool) else type(default))
        changes[key] = cast(value)
    return name, changes


def identified_count(images: torch.Tensor, truth: Truth) -> int:
    """The grid's identification of a reconstruction (labels play no part)."""
    return int(score_candidates(images, None, truth).hits["identified"].sum())


def timed_attack(observation: Observation, settings: AttackSettings, truth: Truth, every: int,
                 public: PublicData) -> dict[str, Any]:
    """One arm on one client: the attack's wall time without the snapshots' scoring, the
    optimization loop's time, and (steps, seconds, identified) every `every` steps. `public`
    is read only by arms with `public_init` or `public_prior` (a threat model that grants
    public-data); a `public_prior` arm's decoder is fitted before (`decoder_fit_seconds`)."""
    expand = input_format(observation) or (lambda x: x)
    spec, side = observation.model_spec, dummy_side(observation)

    def pixels(best: torch.Tensor) -> torch.Tensor:  # the latent phase's iterates are codes
        if best.dim() == 2:
            return public_autoencoder(public, spec.in_channels, side).decode(best)
        return best
    snapshots: list[tuple[int, float, int]] = []
    scoring, last_step, steps = [0.0], [0.0], [0]
    started = time.monotonic()

    def listener(step: Step) -> None:  # steps counted over the attack's phases
        now = time.monotonic()
        last_step[0] = now - started - scoring[0]
        steps[0] += 1
        if steps[0] % every == 0 and step.best is not None:
            images = finalize(expand(pixels(step.best[0])), settings)
            snapshots.append((steps[0], last_step[0], identified_count(images, truth)))
            scoring[0] += time.monotonic() - now

    with watch(listener):
        reconstruction = unrolled(observation, settings, seed=settings.seed, public=public)
    seconds = time.monotonic() - started - scoring[0]
    return {"seconds": seconds, "loop-s": last_step[0],
            "steps": len(reconstruction.loss_history),
            "matching-loss": reconstruction.matching_loss, "message": reconstruction.message,
            "identified": identified_count(reconstruction.inputs, truth),
            "snapshots": snapshots}


def uses_public(settings: AttackSettings) -> bool:
    """Whether an arm reads the public images (its threat model grants public-data)."""
    return settings.public_init or settings.public_prior != "none"


def decoder_fit_seconds(observation: Observation, settings: AttackSettings,
                        public: PublicData) -> float:
    """A `public_prior` arm's decoder fitted now, outside the arm's clock: the seconds it took
    (0 when this process has it already, or the arm has no decoder). The decoder depends on the
    public images only, so an audit fits it once, before any reply arrives."""
    if settings.public_prior == "none":
        return 0.0
    started = time.monotonic()
    public_autoencoder(public, observation.model_spec.in_channels, dummy_side(observation))
    return time.monotonic() - started


def run(clients: list[int], arms: dict[str, AttackSettings], every: int, out: Path,
        dataset: str = "digits") -> None:
    torch.set_num_threads(1)
    data = load_dataset(dataset, 28)
    auditor = Auditor(data.train_x, data.train_y, native_size=data.native_size)
    public = PublicData(data.test_x, f"{data.name} test split", labels=data.test_y)
    done = {(r["client"], r["arm"]) for r in read(out)}
    names = list(arms)
    process = f"{os.getpid()}@{time.time():.0f}"  # rows of one process share its decoder fit
    fits: dict[int, float] = {}  # the decoder's fit seconds in this process, by dummy side
    for position, client in enumerate(clients):
        ids, spec, config, reply, _ = client_reply("lenet", 32, 4, "sgd", client, data=data,
                                                   design="full-batch")
        auditor.ground_truth = lambda _round, _partition, ids=ids: ids.tolist()
        order = names[position % len(names):] + names[:position % len(names)]
        for name in order:
            if (client, name) in done:
                continue
            settings = arms[name]
            threat = ThreatModel().grant(PUBLIC_DATA) if uses_public(settings) else ThreatModel()
            plan = AuditPlan(rounds=None, max_clients=1, max_batch=32, settings=settings,
                             workers=0, threat_model=threat)
            job = observe_reply(reply, plan=plan, config=config, spec=spec,
                                native_size=data.native_size, target_id=name)
            assert not isinstance(job, str), job
            fit = decoder_fit_seconds(job.observation, settings, public)
            if fit:
                fits[dummy_side(job.observation)] = fit
            row = {"dataset": dataset, "client": client, "arm": name, "images": len(ids),
                   "process": process,
                   "decoder-fit-s": (fits.get(dummy_side(job.observation), 0.0)
                                     if settings.public_prior != "none" else 0.0),
                   "settings": {k: v for k, v in settings.to_dict().items()
                                if v != getattr(unrolled_preset(), k)},
                   **timed_attack(job.observation, settings, auditor.truth(job), every,
                                  public)}
            with out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"client {client} {name}: {row['identified']}/{len(ids)} in "
                  f"{row['seconds']:.0f} s ({row['steps']} steps, loss "
                  f"{row['matching-loss']:.2e})", flush=True)


def read(out: Path) -> list[dict]:
    return ([json.loads(line) for line in out.read_text().splitlines() if line.strip()]
            if out.is_file() else [])


def reach_seconds(row: dict, target: int) -> float | None:
    """When the run's best iterate first identified `target` images (None: never)."""
    return next((s for _, s, hits in row["snapshots"] if hits >= target), None)


def pooled_reach(group: list[dict], target: int) -> tuple[int, float] | None:
    """The first snapshot step at which the clients' pooled identified count reaches `target`,
    and the clients' summed time there (None: never). Each client is stopped at the same step;
    past its last snapshot a client counts with its final result and its whole time.

    Example:
        >>> rows = [{"snapshots": [[100, 1.0, 2], [200, 2.0, 5]], "identified": 5, "seconds": 2.5},
        ...         {"snapshots": [[100, 1.5, 4], [200, 3.0, 4]], "identified": 6, "seconds": 3.5}]
        >>> pooled_reach(rows, 9), pooled_reach(rows, 11), pooled_reach(rows, 12)
        ((200, 5.0), (201, 6.0), None)
    """
    last = max(step for row in group for step, _, _ in row["snapshots"])
    for step in sorted({s for row in group for s, _, _ in row["snapshots"]}) + [last + 1]:
        hits, seconds = 0, 0.0
        for row in group:
            at = {s: (t, h) for s, t, h in row["snapshots"]}.get(step)
            t, h = at if at is not None else (row["seconds"], row["identified"])
            hits, seconds = hits + h, seconds + t
        if hits >= target:
            return step, seconds
    return None


def table(rows: list[dict]) -> str:
    """Per arm, over the clients that have it and today's arm: identified (clustered interval),
    wall time and ratio, oracle time to today's final count and ratio, the paired test, and
    today's own count after the arm's steps (today's snapshot: the plain truncation)."""
    from scipy.stats import wilcoxon

    by = {(r["client"], r["arm"]): r for r in rows}
    lines = ["| arm | clients | identified (hits/images) | today after as many steps | wall s "
             "(sum) | today / arm | reached today's final (clients) | today / arm, reach | "
             "pooled: step, s to today's final | today / arm, pooled | decoder fits s | "
             "today / arm, pooled, fits counted | today's reach / arm's whole loop, fits counted | "
             "per-client hits (today's) | p (Wilcoxon) | steps | final loss (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        clients = sorted(c for c, a in by if a == arm and (c, BASELINE) in by)
        if not clients:
            continue
        group = [by[(c, arm)] for c in clients]
        base = [by[(c, BASELINE)] for c in clients]
        stat = _stat([r["identified"] for r in group], group)
        steps = max(r["steps"] for r in group)
        truncated = [next((h for s, _, h in b["snapshots"] if s >= steps), b["identified"])
                     for b in base]
        short = _stat(truncated, group)
        wall, base_wall = sum(r["seconds"] for r in group), sum(b["seconds"] for b in base)
        reach = [reach_seconds(r, b["identified"]) for r, b in zip(group, base)]
        base_reach = [reach_seconds(b, b["identified"]) or b["seconds"] for b in base]
        reached = [s for s in reach if s is not None]
        ratio = (f"{sum(base_reach) / sum(reached):.2f}x" if len(reached) == len(group)
                 else "not reached")
        target = sum(b["identified"] for b in base)
        pooled, base_pooled = pooled_reach(group, target), pooled_reach(base, target)
        pooled_text = "not reached" if pooled is None else f"{pooled[0]}, {pooled[1]:.0f}"
        # each process fitted its decoder once, whichever arm's row paid for it
        fits = sum({r.get("process", i): r.get("decoder-fit-s", 0.0)
                    for i, r in enumerate(group)}.values())
        pooled_ratio, fitted_ratio = (
            ("not reached", "not reached") if pooled is None or base_pooled is None
            else (f"{base_pooled[1] / pooled[1]:.2f}x",
                  f"{base_pooled[1] / (pooled[1] + fits):.2f}x"))
        # no oracle stop for the arm: all its steps (its final labels' refinement left out, as
        # the snapshots leave it out of today's reach), credited only if it ends at today's count
        whole = ("final below today's" if sum(r["identified"] for r in group) < target
                 or base_pooled is None
                 else f"{base_pooled[1] / (sum(r['loop-s'] for r in group) + fits):.2f}x")
        diffs = [r["identified"] - b["identified"] for r, b in zip(group, base)]
        p = "–" if arm == BASELINE or not any(diffs) else f"{wilcoxon(diffs).pvalue:.2g}"
        losses = sorted(r["matching-loss"] for r in group)
        lines.append(
            f"| {arm} | {clients} | {_fmt(stat)} | {_fmt(short)} | {wall:.0f} | "
            f"{base_wall / wall:.2f}x | {len(reached)}/{len(group)} | {ratio} | "
            f"{pooled_text} | {pooled_ratio} | {fits:.0f} | {fitted_ratio} | {whole} | "
            f"{[r['identified'] for r in group]} ({[b['identified'] for b in base]}) | {p} | "
            f"{sorted({r['steps'] for r in group})} | {losses[len(losses) // 2]:.1e} |")
    return "\n".join(lines)


def _stat(hits: list[int], group: list[dict]) -> dict[str, float]:
    return clustered_rate_stat(hits, [r["images"] for r in group])


def _fmt(stat: dict[str, float]) -> str:
    return (f"{stat['value']:.2f} [{stat['low']:.2f}, {stat['high']:.2f}] "
            f"({stat['successes']}/{stat['trials']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits",
                        help="digits, mnist:<dir> (IDX files): the grid's datasets")
    parser.add_argument("--clients", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--iterations", type=int, default=3000, help="today's attack's steps")
    parser.add_argument("--every", type=int, default=250, help="steps between snapshots")
    parser.add_argument("--arm", action="append", default=[], help="name:field=value,...")
    parser.add_argument("--out", type=Path, default=Path("runs/unrolled-speed.jsonl"))
    parser.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args()
    if not args.table:
        arms = {BASELINE: unrolled_preset(iterations=args.iterations)}
        for text in args.arm:
            name, changes = parse_arm(text)
            arms[name] = unrolled_preset(**{"iterations": args.iterations, **changes})
        run(args.clients, arms, args.every, args.out, args.dataset)
    print(table(read(args.out)))


if __name__ == "__main__":
    main()
