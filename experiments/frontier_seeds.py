"""The frontier's threshold claim with seeds (issue 27, item 5): final test accuracy of DP-SGD
around the "accuracy holds" threshold (within 10 points of the model without DP), over several
seeds and a chosen number of rounds, with a 95 % t-interval on the mean drop. Accuracy only (no
leakage cells); the frontier's tuned C = 2 and lr = 0.01; the setting of
`experiments.privacy_frontier` otherwise (real MNIST 16×16, 2 IID clients, Poisson batches of
expected size 128, one local epoch a round).

Example:

    nice -n 10 python -m experiments.frontier_seeds --models lenet --epsilons 64 \
        --seeds 0 1 2 --rounds 2 --out docs/frontier/seeds.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from experiments.privacy_frontier import ACCURACY_DROP, MNIST, training


def interval(drops: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of the per-seed accuracy drops (no-DP minus DP)."""
    values = np.asarray(drops, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=MNIST)
    parser.add_argument("--models", nargs="+", default=["lenet"])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[64.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clip", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--table", action="store_true", help="print the table of --out only")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(1)
    cells: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for seed in args.seeds:
                for epsilon in [None, *args.epsilons]:
                    key = f"{model}|rounds={args.rounds}|seed={seed}|eps={epsilon or 'none'}"
                    if key in cells:
                        continue
                    started = time.time()
                    args.seed = seed
                    cells[key] = training(args, model, epsilon, args.clip, args.lr,
                                          Path(tmp) / key.replace("|", "-")) | {
                        "seconds": round(time.time() - started, 1)}
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(cells, indent=1))
                    print(key, json.dumps(cells[key]), flush=True)
    print(table(cells))


def table(cells: dict[str, Any]) -> str:
    """A markdown row per (model, rounds, ε) with every seed of it in `cells`."""
    groups: dict[tuple[str, str, str], dict[int, float]] = {}
    for key, cell in cells.items():
        model, rounds, seed, eps = (part.split("=")[-1] for part in key.split("|"))
        groups.setdefault((model, rounds, eps), {})[int(seed)] = cell["accuracy"]
    lines = ["| model | rounds | ε (sample, add/remove-one) | σ | seeds | acc. without DP | acc. with DP "
             "| drop, points (95 % CI) | accuracy within 10 points |", "|---|---|---|---|---|---|---|---|---|"]
    for (model, rounds, eps), accuracy in sorted(
            groups.items(), key=lambda item: (item[0][0], int(item[0][1]), item[0][2] != "none"
                                              and float(item[0][2]))):
        if eps == "none":
            continue
        plain = groups.get((model, rounds, "none"), {})
        seeds = sorted(set(accuracy) & set(plain))
        if not seeds:
            continue
        mean, low, high = interval([plain[s] - accuracy[s] for s in seeds])
        verdict = ("yes" if high < ACCURACY_DROP else "no" if low > ACCURACY_DROP
                   else "undecided")
        sigma = cells[f"{model}|rounds={rounds}|seed={seeds[0]}|eps={eps}"]["sigma"]
        lines.append(f"| `{model}` | {rounds} | {float(eps):g} | {sigma:.3g} | {len(seeds)} | "
                     + ", ".join(f"{100 * plain[s]:.1f}" for s in seeds) + " | "
                     + ", ".join(f"{100 * accuracy[s]:.1f}" for s in seeds)
                     + f" | {100 * mean:.1f} ({100 * low:.1f}, {100 * high:.1f}) | {verdict} |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
