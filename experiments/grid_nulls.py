"""Re-score stored grid figures against their nulls, without re-running the attacks.

A grid cell's clients are reproducible (`experiments.unrolled_grid.run_cell` draws client c's N
images with a generator seeded by the cell and c), and two of the three nulls need only those
images: `matched-noise` (native-format noise) and `public-draws` (test-split digits), scored
through the audit's pipeline (`fedsnn.audit.chance`). Each stored identified count (docs/results.md)
is then tested one-sided against the stronger of the two (Fisher's exact test), with a
client-clustered interval where per-client counts were stored. The permutation null needs the
reconstructions, which were not kept: it is left out here. The rate decoder's batch-1 victims
(MNIST, pool of 1,000) are re-scored the same way.

`--grid FILE` takes the cells from an `experiments.unrolled_grid` output instead (any dataset,
`--dataset` as the grid had it; the clients the file holds, e.g. held-out clients 2-7): each
null gets a row of its own, scored as the attack's rows are (identified with its
client-clustered interval, judge ASR with the grid's judge, fit on the test split, PSNR).

Example:
    python -m experiments.grid_nulls --draws 5
    python -m experiments.grid_nulls --dataset mnist:/work/shared/data/mnist \
        --grid runs/mnist-target-sgd.jsonl
    python -m experiments.grid_nulls --dataset mnist:/work/shared/data/mnist \
        --speed runs/mspeed-heldout.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.unrolled_grid import client_ids, design_of
from fedsnn.audit.chance import NullSources, Predict, Truth, score_nulls
from fedsnn.audit.decision import Count, rate_test
from fedsnn.core.data import load_dataset
from fedsnn.core.judges import load_judge
from fedsnn.core.metrics import clustered_rate_stat
from fedsnn.tools.bench.run import draw_attack_set

# (model, N, steps, optimizer, clients, identified per client or pooled [hits], where)
STORED = [
    ("lenet", 32, 4, "sgd", 8, [21, 20, 20, 26, 15, 17, 14, 10], "target cell, one label phase"),
    ("lenet", 32, 4, "sgd", 8, [20, 20, 18, 25, 16, 15, 14, 10], "target cell, two phases"),
    ("lenet", 32, 4, "sgd", 8, [2], "target cell, approximation"),
    ("lenet", 8, 1, "sgd", 2, [10], "grid, unrolled"),
    ("lenet", 8, 4, "sgd", 2, [15], "grid, unrolled"),
    ("lenet", 8, 16, "sgd", 2, [14], "grid, unrolled"),
    ("lenet", 8, 1, "adam", 2, [0], "grid, unrolled"),
    ("lenet", 8, 4, "adam", 2, [1], "grid, unrolled"),
    ("lenet", 8, 16, "adam", 2, [10], "grid, unrolled"),
]


@dataclass(frozen=True)
class Cell:
    """A grid cell's attack figure: `hits` per client of `clients` (or one pooled count)."""

    model: str
    images: int
    steps: int
    optimizer: str
    clients: tuple[int, ...]
    hits: tuple[int, ...]
    where: str
    rows: tuple[dict[str, Any], ...] = ()  # the grid's rows behind it (judge ASR, PSNR)


def stored_cells() -> list[Cell]:
    """STORED as cells (its clients are 0..n-1)."""
    return [Cell(model, images, steps, optimizer, tuple(range(clients)), tuple(hits), where)
            for model, images, steps, optimizer, clients, hits, where in STORED]


def grid_cells(rows: Iterable[dict[str, Any]]) -> list[Cell]:
    """An `experiments.unrolled_grid` output's cells (one per model, N, steps, design,
    optimizer and method), with the clients it holds and their identified counts."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["model"], row["images"], row["steps"], design_of(row), row["optimizer"],
               row["method"])
        groups.setdefault(key, []).append(row)
    cells = []
    for (model, images, steps, (epochs, batch), optimizer, method), group in sorted(
            groups.items()):
        group = sorted(group, key=lambda r: r["client"])
        cells.append(Cell(model, images, steps, optimizer, tuple(r["client"] for r in group),
                          tuple(int(r["identified"]) for r in group),
                          f"{method}, E × B = {epochs} × {batch}", tuple(group)))
    return cells


def speed_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """`benchmarks/unrolled_speed.py` output rows as grid rows: its clients are the target
    cell's (lenet, SGD, N = 32, 4 full-batch steps; `unrolled_grid.client_reply`), one method per
    arm, so its held-out clients get their own nulls."""
    return [{"dataset": row["dataset"], "model": "lenet", "images": row["images"], "steps": 4,
             "epochs": 4, "local-batch": row["images"], "optimizer": "sgd",
             "client": row["client"], "method": row["arm"], "identified": row["identified"]}
            for row in rows]


def cell_nulls(cell: Cell, data: Any, draws: int, predict: Predict | None = None
               ) -> dict[str, dict[str, list]]:
    """Each null's scores for each of the cell's clients, through the audit's pipeline
    (`fedsnn.audit.chance.score_nulls`): per null, "identified" and "asr" (one Count per client;
    "asr" only with a judge) and "psnr" (one value per null image)."""
    out: dict[str, dict[str, list]] = {name: {"identified": [], "asr": [], "psnr": []}
                                       for name in ("matched-noise", "public-draws")}
    for client in cell.clients:
        ids = client_ids(cell.model, cell.images, cell.steps, cell.optimizer, client,
                         len(data.train_x))
        truth = Truth(data.train_x[ids], data.train_y[ids], ids, data.train_x, predict)
        scored = score_nulls(truth, NullSources(data.test_x, data.test_y, data.native_size,
                                                draws, seed=client))
        for name, scores in out.items():
            for metric in ("identified", "asr"):
                counts = [c for c in (d.count(metric) for d in scored[name]) if c is not None]
                if counts:
                    scores[metric].append(sum(counts[1:], counts[0]))
            scores["psnr"] += [float(v) for d in scored[name] for v in d.values["psnr"]]
    return out


# the rate decoder's headline (README, docs/results.md): 100 MNIST victims, batch 1, identified
# in a pool of 1,000 test images (`experiments/rate_decoder.py` with its defaults)
RATE_DECODER = [(99, "rate decoder at initialisation"),
                (90, "rate decoder after 10 FedAvg rounds")]


def rate_decoder_nulls(mnist: str, draws: int) -> None:
    """The nulls of the rate decoder's victims (batch 1: no assignment to inflate a score; the
    chance level is the pool's own), public draws from the test images outside the pool."""
    data = load_dataset(mnist, 28)
    pool_ids = draw_attack_set(data, 1000, 0)
    pool = data.test_x[torch.tensor(pool_ids)]
    outside = torch.tensor(sorted(set(range(len(data.test_x))) - set(pool_ids)))
    nulls = {"matched-noise": Count(0, 0), "public-draws": Count(0, 0)}
    for victim in range(100):
        truth = Truth(pool[victim:victim + 1], data.test_y[pool_ids[victim]:pool_ids[victim] + 1],
                      torch.tensor([victim]), pool)
        scored = score_nulls(truth, NullSources(data.test_x[outside], data.test_y[outside],
                                                data.native_size, draws, seed=victim))
        for name in nulls:
            for draw in scored[name]:
                count = draw.count("identified")
                assert count is not None
                nulls[name] = nulls[name] + count
    for hits, where in RATE_DECODER:
        test = rate_test("identified", Count(hits, 100), nulls)
        cells = " | ".join(f"{100 * n.rate:.1f} % ({n.hits}/{n.trials})" for n in nulls.values())
        print(f"| MNIST, {where} | 100 | {hits} % ({hits}/100) | – | {cells} | "
              f"{test.p_value:.2g} |", flush=True)


def _pooled(counts: list[Count]) -> Count:
    return sum(counts[1:], counts[0]) if counts else Count(0, 0)


def _clustered(hits: Iterable[int], trials: Iterable[int]) -> str:
    stat = clustered_rate_stat(list(hits), list(trials))
    return (f"{100 * stat['value']:.1f} % [{100 * stat['low']:.1f}, {100 * stat['high']:.1f}] "
            f"({stat['successes']:.0f}/{stat['trials']:.0f})")


def stored_table(cells: list[Cell], data: Any, draws: int) -> list[str]:
    """docs/results.md's table of stored figures against the two nulls (Fisher, one-sided)."""
    lines = ["| cell | clients | identified (stored) | client-clustered 95 % | matched-noise | "
             "public-draws | p (vs strongest) |", "|---|---|---|---|---|---|---|"]
    for cell in cells:
        nulls = {name: _pooled(scores["identified"])
                 for name, scores in cell_nulls(cell, data, draws).items()}
        attack = Count(sum(cell.hits), len(cell.clients) * cell.images)
        test = rate_test("identified", attack, nulls)
        interval = (clustered_rate_stat(list(cell.hits), [cell.images] * len(cell.clients))
                    if len(cell.hits) == len(cell.clients) else None)
        ci = "–" if interval is None else f"[{100 * interval['low']:.0f}, {100 * interval['high']:.0f}]"
        counts = " | ".join(f"{100 * n.rate:.1f} % ({n.hits}/{n.trials})" for n in nulls.values())
        lines.append(f"| {cell.model} N={cell.images} {cell.steps} steps {cell.optimizer} "
                     f"({cell.where}) | {len(cell.clients)} | {100 * attack.rate:.0f} % "
                     f"({attack.hits}/{attack.trials}) | {ci} | {counts} | {test.p_value:.2g} |")
    return lines


def grid_table(cells: list[Cell], data: Any, draws: int, predict: Predict | None) -> list[str]:
    """Per grid cell, the attack's row and one row per null, each with identified (client-
    clustered), judge ASR and PSNR; p: the attack against the strongest null (Fisher)."""
    lines = ["| data | cell | clients | scored | identified (clustered 95 %) | judge ASR | "
             "PSNR | p (vs strongest null) |", "|---|---|---|---|---|---|---|---|"]
    name = Path(str(data.name).split(":")[0]).name
    for cell in cells:
        nulls = cell_nulls(cell, data, draws, predict)
        attack = Count(sum(cell.hits), len(cell.clients) * cell.images)
        test = rate_test("identified", attack,
                         {null: _pooled(s["identified"]) for null, s in nulls.items()})
        label = (f"| {name} | {cell.model} N={cell.images} {cell.steps} steps {cell.optimizer} "
                 f"({cell.where}) | {', '.join(map(str, cell.clients))} |")
        asr = [r["asr"] for r in cell.rows if r.get("asr") is not None]
        psnr = [r["psnr"] for r in cell.rows if r.get("psnr") is not None]
        lines.append(f"{label} attack | {_clustered(cell.hits, [cell.images] * len(cell.hits))} "
                     f"| {f'{100 * sum(asr) / len(asr):.0f} %' if asr else '–'} | "
                     f"{f'{sum(psnr) / len(psnr):.1f}' if psnr else '–'} | {test.p_value:.2g} |")
        for null, scores in nulls.items():
            hits = scores["identified"]
            judged = _pooled(scores["asr"])
            lines.append(
                f"{label} null: {null} | {_clustered([c.hits for c in hits], [c.trials for c in hits])} "
                f"| {f'{100 * judged.rate:.0f} %' if judged.trials else '–'} | "
                f"{sum(scores['psnr']) / len(scores['psnr']):.1f} | |")
    return lines


def judge_predict(data: Any) -> Predict:
    """The grid's judge (fit on the test split, disjoint from the victims) as labels of images."""
    judge = load_judge(data, split="test").model

    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return judge(images.clamp(0, 1)).argmax(1)
    return predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=5, help="draws of each null per client")
    parser.add_argument("--dataset", default="digits",
                        help="the grid's dataset: digits, mnist:<dir>, any spec load_dataset takes")
    parser.add_argument("--grid", type=Path, nargs="+", default=[],
                        help="experiments.unrolled_grid outputs: their cells and clients instead "
                             "of the stored digits figures")
    parser.add_argument("--speed", type=Path, nargs="+", default=[],
                        help="benchmarks/unrolled_speed.py outputs, read as grid cells (one per "
                             "arm)")
    parser.add_argument("--mnist", default="mnist:/work/shared/data/mnist",
                        help="the rate decoder's dataset ('' to leave it out; not with --grid)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, 28)
    if args.grid or args.speed:
        def read(paths: list[Path]) -> list[dict[str, Any]]:
            return [json.loads(line) for path in paths
                    for line in path.read_text().splitlines() if line.strip()]
        rows = read(args.grid) + speed_rows(read(args.speed))
        other = {r["dataset"] for r in rows if r.get("dataset", "digits") != data.name}
        if other:
            raise SystemExit(f"--grid holds rows of {sorted(other)}, not of --dataset {data.name}")
        print("\n".join(grid_table(grid_cells(rows), data, args.draws, judge_predict(data))),
              flush=True)
        return
    print("\n".join(stored_table(stored_cells(), data, args.draws)), flush=True)
    if args.mnist:
        rate_decoder_nulls(args.mnist, args.draws)


if __name__ == "__main__":
    main()
