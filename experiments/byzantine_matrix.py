"""Attack × aggregator matrix for the ANN and SNN LeNets: final accuracy and the cosine of each
round's aggregate update to the honest-only FedAvg update.

Each cell is a federation of `--nodes` nodes whose first `--byzantine` partitions attack, run
in one process by `experiments.robust_bench.run_federation` (Flower's strategy objects and the
real ClientApp on real `Message`s; no Ray). Writes JSON (resumable: finished cells are kept),
one heatmap per model and a Markdown table.

Example (the committed matrix: 132 cells, 37 min on 2 cores shared with other jobs):

    .venv/bin/python -m experiments.byzantine_matrix --out docs/robust
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]

import torch  # noqa: E402

from fedsnn.core.config import BYZANTINE_ATTACKS  # noqa: E402
from experiments.figures import panels  # noqa: E402
from experiments.robust_bench import run_federation  # noqa: E402

# column -> run-config overrides (assumed-byzantine is set to --byzantine for the robust rules)
COLUMNS: dict[str, dict[str, Any]] = {
    "fedavg": {"aggregator": "fedavg"},
    "median": {"aggregator": "median"},
    "trimmed-mean": {"aggregator": "trimmed-mean", "trimmed-beta": 0.2},
    "krum": {"aggregator": "krum"},
    "multikrum": {"aggregator": "multikrum"},
    "bulyan": {"aggregator": "bulyan"},
    "fedavg+norm-filter": {"aggregator": "fedavg", "norm-filter": 3.0},
}


def cell_overrides(args: argparse.Namespace, model: str, attack: str, column: str
                   ) -> dict[str, Any]:
    """The run config of one cell."""
    robust = COLUMNS[column]["aggregator"] != "fedavg"
    return {"model": model, "num-server-rounds": args.rounds, "image-size": args.image_size,
            "learning-rate": args.learning_rate, "min-available-nodes": args.nodes,
            "seed": args.seed, "assumed-byzantine": args.byzantine if robust else 0,
            "byzantine-attack": attack, "num-byzantine": 0 if attack == "none" else args.byzantine,
            **COLUMNS[column]}


def run_matrix(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """Run every missing cell, saving the JSON after each one."""
    done = json.loads(path.read_text()) if path.is_file() else {}
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "models", "attacks")}
    if done.get("settings", settings) != settings:
        raise SystemExit(f"{path} was made with other settings; pick another --out")
    cells: dict[str, Any] = done.get("cells", {})
    for model in args.models:
        for attack in args.attacks:
            for column in args.columns:
                key = f"{model}|{attack}|{column}"
                if key in cells:
                    continue
                result = run_federation(cell_overrides(args, model, attack, column), args.nodes)
                cells[key] = {"model": model, "attack": attack, "aggregator": column,
                              "accuracy": result.accuracy, "cosine": result.cosine,
                              "final-accuracy": result.final_accuracy,
                              "mean-cosine": result.mean_cosine, "seconds": result.seconds}
                print(f"{key:45s} acc {result.final_accuracy:.3f}  cos {result.mean_cosine:+.2f}"
                      f"  {result.seconds:.0f}s", flush=True)
                path.write_text(json.dumps({"settings": settings, "cells": cells}, indent=1))
    return {"settings": settings, "cells": cells}


def _grid(cells: dict[str, Any], model: str, attacks: list[str], columns: list[str],
          key: str) -> list[list[float]]:
    return [[cells.get(f"{model}|{a}|{c}", {}).get(key, math.nan) for c in columns]
            for a in attacks]


def heatmap(cells: dict[str, Any], model: str, attacks: list[str], columns: list[str],
            path: Path) -> None:
    """Final accuracy and mean cosine, side by side, for one model."""
    measures = [("final-accuracy", "final test accuracy", 0.0, 1.0, "viridis"),
                ("mean-cosine", "cosine(aggregate, honest-only mean), mean over rounds",
                 -1.0, 1.0, "RdBu")]
    with panels(path, 2, (15, 0.45 * len(attacks) + 2.2)) as (fig, axes):
        for ax, (key, title, low, high, cmap) in zip(axes, measures, strict=True):
            values = _grid(cells, model, attacks, columns, key)
            image = ax.imshow(values, vmin=low, vmax=high, cmap=cmap, aspect="auto")
            ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
            ax.set_yticks(range(len(attacks)), attacks)
            ax.set_title(f"{model}: {title}", fontsize=10)
            for i, row in enumerate(values):
                for j, value in enumerate(row):
                    ax.text(j, i, "—" if math.isnan(value) else f"{value:.2f}", ha="center",
                            va="center", fontsize=8,
                            color="white" if key == "final-accuracy" and value < 0.5 else "black")
            fig.colorbar(image, ax=ax, fraction=0.04)


def markdown(cells: dict[str, Any], model: str, attacks: list[str], columns: list[str]) -> str:
    """One Markdown table: rows are attacks, cells 'accuracy % / cosine'."""
    lines = [f"| {model} | " + " | ".join(f"`{c}`" for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for attack in attacks:
        row = []
        for column in columns:
            cell = cells.get(f"{model}|{attack}|{column}")
            row.append("—" if cell is None else
                       f"{100 * cell['final-accuracy']:.1f}% / {cell['mean-cosine']:+.2f}")
        lines.append(f"| `{attack}` | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the missing cells, write the figures and the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "robust")
    parser.add_argument("--models", nargs="+", default=["lenet", "lenet-snn"])
    parser.add_argument("--attacks", nargs="+", default=list(BYZANTINE_ATTACKS))
    parser.add_argument("--columns", nargs="+", default=list(COLUMNS)[:-1], choices=list(COLUMNS),
                        help="default: the six aggregators (add fedavg+norm-filter to see the "
                             "norm filter)")
    parser.add_argument("--nodes", type=int, default=11)
    parser.add_argument("--byzantine", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    matrix = run_matrix(args, args.out / "byzantine_matrix.json")
    tables = []
    for model in args.models:
        heatmap(matrix["cells"], model, args.attacks, args.columns,
                args.out / f"byzantine_{model}.png")
        tables.append(markdown(matrix["cells"], model, args.attacks, args.columns))
    (args.out / "byzantine_matrix.md").write_text("\n\n".join(tables) + "\n")
    print("\n\n".join(tables))
    print(f"done in {time.perf_counter() - start:.0f}s; outputs in {args.out}")


if __name__ == "__main__":
    main()
