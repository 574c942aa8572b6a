"""Privacy–utility frontier of DP-SGD where DP can work: accuracy and in-line leakage against the
per-sample ε (add/remove one sample, Poisson batches; Opacus' accountant), ANN and SNN.

A setting with more data per client than the defense matrix: real MNIST (../shared/data/mnist,
8,000 train images at 16×16), 2 IID clients (~3,200 train samples each), 2 FedAvg rounds of one
local epoch on Poisson batches of expected size 128 (Adam), then:

- *tuning* (ANN only, at ε = --tune-epsilon): a small grid of clipping norm C × Adam learning
  rate; the best accuracy's (C, lr) is used everywhere;
- *training*: per model and ε (and without DP): final test accuracy and the ε and σ the run
  reports;
- *leakage*: the curious server's in-line iDLG on FedSGD replies of expected batch size 1 noised
  with the *same σ and C* as the training run (the attacker's most favourable view of one DP-SGD
  step at that ε), rounds 1–2, every client; PSNR beside the mean-image guess. A Poisson batch
  of expected size 1 is empty in about a third of the replies (nothing to score) and holds
  several samples in about a quarter (the attacker, told the expected size, reconstructs one).

A point is marked where the attack fails (mean PSNR below the guess + 1 dB) while accuracy holds
(within 10 points of the model without DP). Writes frontier.json (resumable), frontier.md and
frontier.png to --out.

Example (the committed frontier; see docs/results.md for its wall time):

    nice -n 10 python -m experiments.privacy_frontier --out docs/frontier
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from client_app import create_client_app
from fedsnn.audit.leakage import mean_leakage
from fedsnn.core.privacy.units import DEFENSE_UNITS
from experiments.figures import accuracy_psnr_panels, scored
from fedsnn.tools.local_grid import federate_in_process
from server_app import run

MNIST = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mnist"  # ../shared
GUESS_MARGIN_DB = 1.0     # "the attack fails": mean PSNR below the mean-image guess + this
ACCURACY_DROP = 0.10      # "accuracy holds": within this of the model without DP


def base_config(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    return {"dataset": f"mnist:{args.data}", "image-size": args.image_size, "seed": args.seed,
            "min-available-nodes": args.nodes, "output-dir": str(scratch)}


def federation(config: dict[str, Any], nodes: int) -> dict[str, Any]:
    """results.json (and audit.json when audited) of one in-process federation."""
    run_dir = federate_in_process(run, create_client_app(config), config, nodes)
    out = {"results": json.loads((run_dir / "results.json").read_text())}
    if (run_dir / "audit.json").is_file():
        out["audit"] = json.loads((run_dir / "audit.json").read_text())
    return out


def dp_sgd(epsilon: float | None, clip: float) -> dict[str, Any]:
    return {} if epsilon is None else {"defenses": "dp-sgd", "dp-sgd-target-epsilon": epsilon,
                                       "dp-sgd-max-grad-norm": clip}


def training(args: argparse.Namespace, model: str, epsilon: float | None, clip: float, lr: float,
             scratch: Path) -> dict[str, Any]:
    """Final accuracy, reported per-sample ε and σ of a FedAvg-mode DP-SGD run."""
    out = federation(base_config(args, scratch) | {
        "model": model, "num-server-rounds": args.rounds, "local-epochs": 1,
        "batch-size": args.batch_size, "learning-rate": lr, "audit-enabled": False}
        | dp_sgd(epsilon, clip), args.nodes)
    last = out["results"]["rounds"][-1]
    train = last.get("train", {})
    return {"accuracy": last["central"]["accuracy"], "status": out["results"]["status"],
            "epsilon": train.get("dp-sgd-sample-epsilon-max"),
            "sigma": train.get("dp-sgd-noise-multiplier-max")}


def leakage(args: argparse.Namespace, model: str, sigma: float | None, clip: float,
            scratch: Path) -> dict[str, Any]:
    """In-line iDLG on FedSGD replies (expected batch 1) noised with the training run's σ, C."""
    attack = ({"audit-optimizer": "adam", "audit-iterations": 60} if model.endswith("-snn")
              else {"audit-iterations": 100})
    defense = {} if sigma is None else {"defenses": "dp-sgd", "dp-sgd-noise-multiplier": sigma,
                                        "dp-sgd-max-grad-norm": clip}
    out = federation(base_config(args, scratch) | {
        "model": model, "num-server-rounds": 2, "update-mode": "gradient", "batch-size": 1,
        "learning-rate": 0.01, "audit-rounds": "1,2", "audit-max-clients": args.nodes,
        "audit-attack": "idlg", "audit-time-budget-s": 30.0, "audit-workers": 0}
        | attack | defense, args.nodes)
    return mean_leakage(out["audit"])


def cached(cells: dict[str, Any], key: str, path: Path, make: Callable[[], dict[str, Any]]
           ) -> dict[str, Any]:
    """cells[key], computed and saved (frontier.json) when missing."""
    if key not in cells:
        started = time.time()
        cells[key] = make() | {"seconds": round(time.time() - started, 1)}
        path.write_text(json.dumps(cells, indent=1))
        print(f"{key:40s} {json.dumps({k: v for k, v in cells[key].items() if k != 'mia'})}",
              flush=True)
    return cells[key]


def run_frontier(args: argparse.Namespace) -> dict[str, Any]:
    """Tune (C, lr) on the ANN, then train and attack every (model, ε)."""
    path = args.out / "frontier.json"
    cells: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    middle = args.tune_epsilon
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        tuning = {(clip, lr): cached(cells, f"tune|lenet|eps={middle:g}|C={clip:g}|lr={lr:g}",
                                     path, lambda c=clip, r=lr: training(
                                         args, "lenet", middle, c, r, scratch / f"t{c}-{r}"))
                  for clip in args.clips for lr in args.lrs}
        clip, lr = max(tuning, key=lambda key: tuning[key]["accuracy"])
        cells["chosen"] = {"clip": clip, "lr": lr}
        for model in args.models:
            for epsilon in [None, *args.epsilons]:
                name = f"{model}|eps={'none' if epsilon is None else f'{epsilon:g}'}"
                train = cached(cells, f"train|{name}", path, lambda m=model, e=epsilon: training(
                    args, m, e, clip, lr, scratch / f"train-{m}-{e}"))
                cached(cells, f"leak|{name}", path, lambda m=model, s=train["sigma"]: leakage(
                    args, m, s, clip, scratch / f"leak-{m}-{s}"))
    path.write_text(json.dumps(cells, indent=1))
    return cells


def points(cells: dict[str, Any], model: str) -> list[dict[str, Any]]:
    """One row per ε (None: no DP) with accuracy, leakage and the frontier verdict."""
    rows = []
    for key, train in cells.items():
        if not key.startswith(f"train|{model}|"):
            continue
        leak = cells.get("leak|" + key.removeprefix("train|"), {})
        rows.append({"model": model, "epsilon": train["epsilon"], "sigma": train["sigma"],
                     "accuracy": train["accuracy"], **{k: leak.get(k) for k in (
                         "psnr", "guess-psnr", "label-accuracy", "scored")}})
    none = next((r for r in rows if r["epsilon"] is None), None)
    for row in rows:  # None: no reply had a sample to score (empty Poisson batches)
        fails = (None if row["psnr"] is None
                 else row["psnr"] < row["guess-psnr"] + GUESS_MARGIN_DB)
        holds = none is not None and row["accuracy"] >= none["accuracy"] - ACCURACY_DROP
        row.update({"attack-fails": fails, "accuracy-holds": holds})
    return sorted(rows, key=lambda r: (r["epsilon"] is not None, r["epsilon"] or 0))


_YES_NO = {True: "yes", False: "no"}


def _fmt(value: Any, pattern: str = "{:.2f}") -> str:
    return "—" if value is None else pattern.format(value)


def markdown(cells: dict[str, Any], models: list[str]) -> str:
    unit = DEFENSE_UNITS["dp-sgd"]
    lines = [f"| model | ε ({unit.label()}) | σ | test acc. | iDLG PSNR dB (guess) | labels | "
             "scored | attack fails | accuracy holds |", "|---|---|---|---|---|---|---|---|---|"]
    for model in models:
        for row in points(cells, model):
            lines.append(
                f"| `{model}` | {_fmt(row['epsilon'], '{:.3g}') if row['epsilon'] else 'no DP'} | "
                f"{_fmt(row['sigma'], '{:.3g}')} | {100 * row['accuracy']:.1f}% | "
                f"{_fmt(row['psnr'], '{:.1f}')} ({_fmt(row['guess-psnr'], '{:.1f}')}) | "
                f"{_fmt(row['label-accuracy'])} | {row['scored']} | "
                f"{_YES_NO.get(row['attack-fails'], '—')} | "
                f"{'yes' if row['accuracy-holds'] else 'no'} |")
    return "\n".join(lines)


def plot(cells: dict[str, Any], models: list[str], path: Path) -> None:
    """Accuracy and PSNR against ε; a star where the attack fails while accuracy holds."""
    with accuracy_psnr_panels(path, xlabel="DP-SGD ε per sample (add/remove one, δ = 1e-5), "
                              "log scale", title="MNIST 16×16, 2 clients",
                              psnr_title="in-line iDLG PSNR (dB)") as (left, right):
        for model in models:
            rows = points(cells, model)
            dp = [r for r in rows if r["epsilon"]]
            none = next((r for r in rows if r["epsilon"] is None), None)
            eps = [r["epsilon"] for r in dp]
            line, = left.plot(eps, [r["accuracy"] for r in dp], "o-", label=model)
            right.plot(*scored(eps, [r["psnr"] for r in dp]), "o-", color=line.get_color(),
                       label=model)
            good = [r for r in dp if r["attack-fails"] and r["accuracy-holds"]]
            left.plot([r["epsilon"] for r in good], [r["accuracy"] for r in good], "*", ms=16,
                      color=line.get_color(), label=f"{model}: attack fails, accuracy holds")
            if none:
                left.axhline(none["accuracy"], color=line.get_color(), ls="--", alpha=0.6,
                             label=f"{model} without DP")
                right.axhline(none["psnr"], color=line.get_color(), ls="--", alpha=0.6,
                              label=f"{model} without DP")
                right.axhline(none["guess-psnr"], color="black", ls=":",
                              label="mean-image guess" if model == models[0] else None)
        left.legend(fontsize=7)
        right.legend(fontsize=7)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the missing cells, write the table and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=MNIST)
    parser.add_argument("--models", nargs="+", default=["lenet", "lenet-snn"])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 4.0, 16.0, 64.0, 256.0])
    parser.add_argument("--tune-epsilon", type=float, default=4.0)
    parser.add_argument("--clips", nargs="+", type=float, default=[0.5, 2.0])
    parser.add_argument("--lrs", nargs="+", type=float, default=[0.003, 0.01])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.data / "t10k-images-idx3-ubyte.gz").is_file():
        raise SystemExit(f"privacy_frontier: no MNIST IDX files in {args.data}")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    cells = run_frontier(args)
    (args.out / "frontier.md").write_text(markdown(cells, args.models) + "\n")
    plot(cells, args.models, args.out / "frontier.png")
    print(f"wrote {args.out / 'frontier.md'} and {args.out / 'frontier.png'}")


if __name__ == "__main__":
    main()
