"""Plain vs adaptive attackers on spiking networks (docs/results.md, "Adaptive attacks on spiking
networks").

Each sample of the attack set is attacked on a fresh DLG-initialised model, batch 1, exactly as
`fedsnn bench` does (same attack set, same victim seeds). For each sample the strongest mode's
candidates run once (`attacks.strongest_mode.run_candidates`: analytic, iDLG, smooth, DLG, as
selected) and the strongest row is the candidate `attacks.strongest_mode.select` keeps, by the
attacker's own consistency loss. Every candidate is scored too, so each attacker gets its own row
at no extra cost. Results go to <out>/<group>.jsonl (one line per sample and attacker) and
<out>/table.md.

Example (two shards of lenet-snn in parallel, then the table):
    python -m experiments.adaptive_snn run --group lenet-snn --shard 0/2 --out runs/adaptive
    python -m experiments.adaptive_snn run --group lenet-snn --shard 1/2 --out runs/adaptive
    python -m experiments.adaptive_snn table --out runs/adaptive
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from attacks import AttackSettings, Observation, Status
from attacks.runner import relative_loss
from attacks.strongest_mode import run_candidates, select
from fedsnn.audit.cases import victim_case, victim_seed
from fedsnn.audit.scoring import score_images
from fedsnn.core.data import ImageData, load_dataset
from fedsnn.tools.bench.command import parse_shard
from fedsnn.tools.bench.report import baselines
from fedsnn.tools.bench.run import draw_attack_set
from fedsnn.core.judges import judge_sentence, load_judge
from fedsnn.core.metrics import mean_stat, number_interval, percent_interval, rate_stat
from fedsnn.core.models import ModelSpec


@dataclass(frozen=True)
class Group:
    """A victim (model + encoding), the candidates run against it, and settings that differ from
    the command line's (shown next to the attacker's name in the table)."""

    model: str
    encoding: str
    attacks: tuple[str, ...]
    overrides: tuple[tuple[str, Any], ...] = ()

    def settings(self, base: AttackSettings) -> AttackSettings:
        return base.with_(**dict(self.overrides))

    @property
    def note(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.overrides)


# group name -> victim and attackers. The analytic attack runs last here (the strongest mode runs
# it first, and an exact result ends its search): the benchmark wants every attacker's row.
ANALYTIC_ONLY = ("analytic",)
ANNEALED = (("smooth_k_start", 2.0), ("smooth_k_end", 64.0), ("smooth_stages", 3),
            ("smooth_keep", "real-loss"))
GROUPS: dict[str, Group] = {
    "lenet-snn": Group("lenet-snn", "direct", ("idlg", "smooth", "analytic")),
    "lenet-snn-dlg": Group("lenet-snn", "direct", ("dlg",)),
    "mlp-snn": Group("mlp-snn", "direct", ("idlg", "smooth", "dlg", "analytic")),
    "mlp-snn-poisson": Group("mlp-snn", "poisson", ("idlg", "smooth", "analytic")),
    "mlp": Group("mlp", "direct", ("idlg", "dlg", "analytic")),
    "mlp-snn-smooth": Group("mlp-snn", "direct", ("smooth",)),
    "mlp-snn-poisson-smooth": Group("mlp-snn", "poisson", ("smooth",)),
    # annealing all the way toward the hard threshold, keeping the stage the real victim prefers
    **{f"{name}-annealed": Group(model, encoding, ("smooth",), ANNEALED)
       for name, model, encoding in (("lenet-snn", "lenet-snn", "direct"),
                                     ("mlp-snn", "mlp-snn", "direct"),
                                     ("mlp-snn-poisson", "mlp-snn", "poisson"))},
    "mlp-snn-analytic": Group("mlp-snn", "direct", ANALYTIC_ONLY),
    "mlp-snn-poisson-analytic": Group("mlp-snn", "poisson", ANALYTIC_ONLY),
    "mlp-analytic": Group("mlp", "direct", ANALYTIC_ONLY),
}


def observe(group: Group, index: int, x: torch.Tensor, y: torch.Tensor, data: ImageData,
            seed: int, time_steps: int) -> Observation:
    """The gradient a client with one sample sends for a fresh DLG-initialised model."""
    spec = ModelSpec(name=group.model, in_channels=data.in_channels, num_classes=data.num_classes,
                     image_size=data.image_size, time_steps=time_steps, encoding=group.encoding)
    model_seed = victim_seed(seed, index)
    return victim_case(spec, x, y, target_id=f"{group.model}/{group.encoding}/{index}",
                       seed=model_seed, encoder_seed=model_seed).observation


def run(args: argparse.Namespace) -> None:
    """Attack this shard's samples and append one JSON line per (sample, attacker)."""
    torch.set_num_threads(1)
    group = GROUPS[args.group]
    data = load_dataset(args.dataset)
    judge = load_judge(data, seed=0)
    ids = draw_attack_set(data, args.samples, args.seed)
    shard, shards = parse_shard(args.shard)
    settings = AttackSettings(attack="strongest", iterations=args.iters,
                              lbfgs_max_eval=args.lbfgs_max_eval, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.group}.{shard}.jsonl"
    done = {json.loads(line)["batch"] for line in path.read_text().splitlines()} if path.is_file() else set()
    with path.open("a") as sink:
        for batch in range(shard, len(ids), shards):
            if batch in done:
                continue
            index = torch.tensor([ids[batch]])
            x, y = data.test_x[index], data.test_y[index]
            observation = observe(group, batch, x, y, data, args.seed, args.time_steps)
            deadline = time.monotonic() + args.budget_s
            candidates = run_candidates(observation, group.settings(settings), seed=args.seed,
                                        deadline=deadline, names=group.attacks)
            kept = select(candidates, observation, group.settings(settings))
            rows = [*((name, rec, loss, False) for name, rec, loss in candidates),
                    ("strongest", kept[1], kept[2], kept[0])]
            for attacker, reconstruction, loss, winner in rows:
                if reconstruction.status == Status.FAILED:
                    scored = {"success": None, "label-correct": None, "mse": None, "ssim": None,
                              "psnr": None}
                else:
                    scored = score_images(reconstruction, x, y, judge.predict)[0][0]
                relative = relative_loss(replace(reconstruction, matching_loss=loss), observation,
                                         settings) if math.isfinite(loss) else None
                sink.write(json.dumps({
                    "group": args.group, "batch": batch, "sample": ids[batch], "attacker": attacker,
                    "winner": winner or "", "relative-loss": relative,
                    "status": reconstruction.status.value, "message": reconstruction.message[:200],
                    "seconds": round(reconstruction.seconds, 2),
                    **{k: scored[k] for k in ("success", "label-correct", "mse", "ssim", "psnr")},
                }) + "\n")
            sink.flush()
            print(f"{args.group} {batch}: kept {kept[0]} "
                  f"({', '.join(f'{n} {r.seconds:.0f}s' for n, r, _ in candidates)})", flush=True)


def table(args: argparse.Namespace) -> None:
    """Summarize every <group>.*.jsonl in --out into table.md (and print it)."""
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    for path in sorted(out.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = ["| Victim | Attacker | n | ASR (%) | MSE | SSIM | PSNR (dB) | Label acc. (%) | s/sample |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, group in GROUPS.items():
        alone = len(group.attacks) == 1  # a single attacker's run: its strongest row is itself
        for attacker in group.attacks if alone else (*group.attacks, "strongest"):
            tried = [r for r in rows if r["group"] == name and r["attacker"] == attacker]
            mine = [r for r in tried if r["status"] != "failed"]
            label = f"{group.model} ({group.encoding})"
            if tried and not mine:
                lines.append(f"| {label} | {attacker} | {len(tried)} | not determined: "
                             f"{tried[0]['message'][:90]}… | | | | | |")
            if not mine:
                continue
            n = len(mine)
            shown = f"{attacker} ({group.note})" if group.note else attacker
            means = {k: mean_stat([r[k] for r in mine]) for k in ("mse", "ssim", "psnr")}
            lines.append(
                f"| {label} | {shown} | {n} | "
                f"{percent_interval(rate_stat(sum(r['success'] for r in mine), n))} | "
                f"{number_interval(means['mse'], 3)} | {number_interval(means['ssim'], 3)} | "
                f"{number_interval(means['psnr'], 1)} | "
                f"{percent_interval(rate_stat(sum(r['label-correct'] for r in mine), n))} | "
                f"{sum(r['seconds'] for r in mine) / n:.1f} |")
        winners = [r["winner"] for r in rows if r["group"] == name and r["attacker"] == "strongest"]
        if winners and not alone:
            counts = {w: winners.count(w) for w in sorted(set(winners))}
            lines.append(f"| {group.model} ({group.encoding}) | strongest kept | "
                         f"{', '.join(f'{k}: {v}' for k, v in counts.items())} | | | | | | |")
    if args.baselines:
        data = load_dataset(args.dataset)
        judge = load_judge(data, seed=0)
        guesses = baselines(data, draw_attack_set(data, args.samples, args.seed), judge)
        lines += ["", judge_sentence(judge.card()), "",
                  "| Guess (no update) | judge ASR (%) | MSE | SSIM | PSNR (dB) |", "|---|---|---|---|---|"]
        for guess, s in guesses.items():
            lines.append(f"| {guess} | {100 * s['asr']['value']:.1f} | {s['mse']['value']:.3f} | "
                         f"{s['ssim']['value']:.3f} | {s['psnr']['value']:.2f} |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    print(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("run", "table"):
        p = sub.add_parser(command)
        p.add_argument("--dataset", default="mnist:../shared/data/mnist")
        p.add_argument("--samples", type=int, default=100)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", default="runs/adaptive")
    run_parser, table_parser = sub.choices["run"], sub.choices["table"]
    run_parser.add_argument("--group", choices=sorted(GROUPS), required=True)
    run_parser.add_argument("--shard", default="0/1", help="k/n: every n-th sample from the k-th")
    run_parser.add_argument("--iters", type=int, default=20, help="optimizer steps per attacker")
    run_parser.add_argument("--lbfgs-max-eval", type=int, default=20)
    run_parser.add_argument("--time-steps", type=int, default=4)
    run_parser.add_argument("--budget-s", type=float, default=60.0,
                            help="wall-clock budget per sample, shared by its attackers")
    table_parser.add_argument("--baselines", action="store_true")
    args = parser.parse_args(argv)
    {"run": run, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
