"""How close the label-count estimates come to the clients' true class histograms.

Each cell is a kind of FedAvg reply: the unrolled grid's cells (digits, N = 32, 4 local steps of
batch 8, SGD lr 0.01 or Adam lr 0.003; lenet and lenet-snn; and the cell of results.md's
held-out comparisons, lenet N = 16, 2 epochs of batch 8) and the README's default run (lenet,
Adam lr 0.003, 2 epochs of batch 16 on 231 images: 30 steps). Clients are made as the grid makes
them (`experiments.unrolled_grid.client_update`: fresh DLG-initialised model, N random train
images) and observed as the audit observes them (`fedsnn.audit.reply.observe_reply`, default
threat model). Estimators, all from the observation alone:

- "dimitrov": `attacks.label_counts.infer_label_counts` (the audit's), noise probe;
- "rlu": `attacks.label_counts_rlu.rlu_label_counts`, noise probe (no public data);
- "rlu, public data": the same with labelled public images (the test split; only where the
  threat model grants `public-data`);
- nulls that read no update: "uniform" (N / C per class) and "class prior" (the public split's
  class frequencies), both rounded to integers summing to N.

Scores per client: total-variation distance to the true histogram and whether every count is
exact (`fedsnn.core.metrics.histogram_scores`). `--table` prints per cell the mean TV with a
bootstrap interval over clients, the exact-histogram rate with its clustered interval, and a
paired Wilcoxon test (scipy) of each estimator's TV against "dimitrov" and against the best null.

Example:
    python -m experiments.label_count_accuracy --clients 4 20 --out runs/label-counts.jsonl
    python -m experiments.label_count_accuracy --table --out runs/label-counts.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from attacks.label_counts import infer_label_counts
from attacks.label_counts_rlu import rlu_label_counts
from attacks.settings import unrolled_preset
from attacks.threat_model import ThreatModel
from attacks.types import Observation
from experiments.unrolled_grid import LEARNING_RATES, client_update
from fedsnn.audit.canary import Reply
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.reply import observe_reply
from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.metrics import clustered_rate_stat, histogram, histogram_scores, round_to_total
from fedsnn.core.models import ModelSpec

# cell name -> (model, N, epochs, batch, optimizer)
CELLS = {"lenet N=32 4 steps sgd": ("lenet", 32, 1, 8, "sgd"),
         "lenet N=32 4 steps adam": ("lenet", 32, 1, 8, "adam"),
         "lenet-snn N=32 4 steps sgd": ("lenet-snn", 32, 1, 8, "sgd"),
         "lenet-snn N=32 4 steps adam": ("lenet-snn", 32, 1, 8, "adam"),
         "lenet N=16 2 epochs x 8 sgd": ("lenet", 16, 2, 8, "sgd"),
         "lenet N=16 2 epochs x 8 adam": ("lenet", 16, 2, 8, "adam"),
         "lenet README default (N=231, E=2, B=16, adam)": ("lenet", 231, 2, 16, "adam")}
PUBLIC_PER_CLASS = 20  # labelled public images per class for "rlu, public data"
NULLS = ("uniform", "class prior")


def observation_of(cell: str, client: int, data: Any) -> tuple[Observation, torch.Tensor]:
    """The server's observation of one client's reply in a cell, and the true histogram."""
    model, images, epochs, batch, optimizer = CELLS[cell]
    spec = ModelSpec(model, in_channels=int(data.train_x.shape[1]), num_classes=data.num_classes)
    steps = epochs * -(-images // batch)
    ids, sent, trained = client_update(spec, data, client, images=images, steps=steps,
                                       optimizer=optimizer, epochs=epochs, batch=batch)
    config = RunConfig(update_mode="fedavg", optimizer=optimizer,
                       learning_rate=LEARNING_RATES[optimizer], momentum=0.0,
                       local_epochs=epochs, batch_size=batch)
    plan = AuditPlan(rounds=None, max_clients=1, max_batch=images, settings=unrolled_preset(),
                     workers=0, threat_model=ThreatModel())
    job = observe_reply(Reply(1, client, sent, trained.state_dict(), num_examples=images,
                              local_steps=steps), plan=plan, config=config, spec=spec,
                        native_size=data.native_size, target_id=cell)
    if isinstance(job, str):
        raise RuntimeError(f"{cell}, client {client} is not observed: {job}")
    return job.observation, histogram(data.train_y[ids], data.num_classes)


def public_probe(data: Any, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `per_class` test-split images of each class, and their labels."""
    picks = torch.cat([(data.test_y == c).nonzero().flatten()[:per_class]
                       for c in range(data.num_classes)])
    return data.test_x[picks], data.test_y[picks]


def estimators(data: Any) -> dict[str, Callable[[Observation], torch.Tensor]]:
    """Estimator name -> histogram of an observation (integers summing to N)."""
    probe, labels = public_probe(data, PUBLIC_PER_CLASS)
    prior = histogram(data.test_y, data.num_classes).double()

    def total(o: Observation) -> int:
        return o.training.num_examples

    return {"dimitrov": lambda o: infer_label_counts(o),
            "rlu": lambda o: rlu_label_counts(o),
            "rlu, bias rows": lambda o: rlu_label_counts(o, rows="bias"),
            "rlu, public data": lambda o: rlu_label_counts(o, probe=probe, probe_labels=labels),
            "uniform": lambda o: round_to_total(torch.ones(data.num_classes), total(o)),
            "class prior": lambda o: round_to_total(prior, total(o))}


def rows_of(cell: str, client: int, data: Any, methods: dict[str, Callable]) -> list[dict]:
    observation, truth = observation_of(cell, client, data)
    rows = []
    for name, estimate in methods.items():
        started = time.monotonic()
        counts = estimate(observation)
        rows.append({"cell": cell, "client": client, "method": name,
                     "seconds": time.monotonic() - started, "counts": counts.tolist(),
                     "truth": truth.tolist(), **histogram_scores(counts, truth)})
    return rows


def _mean_interval(values: np.ndarray) -> str:
    if len(values) < 2 or np.ptp(values) == 0:
        return f"{values.mean():.3f}"
    ci = stats.bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=2000,
                         method="percentile", random_state=np.random.default_rng(0))
    return (f"{values.mean():.3f} [{ci.confidence_interval.low:.3f}, "
            f"{ci.confidence_interval.high:.3f}]")


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> str:
    """Two-sided paired p of a against b, and which way a's mean TV lies (lower: better)."""
    if np.all(a == b):
        return "equal"
    return f"{stats.wilcoxon(a, b).pvalue:.2g} ({'lower' if a.mean() < b.mean() else 'higher'})"


def table(rows: list[dict], clients: range) -> str:
    """One markdown table per cell: the estimators and nulls on the given clients."""
    lines = []
    for cell in CELLS:
        picked = [r for r in rows if r["cell"] == cell and r["client"] in clients]
        if not picked:
            continue
        kept = sorted({r["client"] for r in picked})
        tv = {m: np.array([r["total-variation"] for c in kept for r in picked
                           if r["client"] == c and r["method"] == m])
              for m in dict.fromkeys(r["method"] for r in picked)}
        tv = {m: v for m, v in tv.items() if len(v) == len(kept)}
        best_null = min((m for m in NULLS if m in tv), key=lambda m: tv[m].mean())
        lines += [f"**{cell}** (clients {kept[0]}–{kept[-1]}, {len(kept)} clients)", "",
                  "| estimator | TV to the true histogram (mean, 95 % CI over clients) "
                  "| exact histograms | vs dimitrov (Wilcoxon p) | vs best null (p) |",
                  "|---|---|---|---|---|"]
        for method, values in tv.items():
            exact = [int(r["all-exact"]) for c in kept for r in picked
                     if r["client"] == c and r["method"] == method]
            stat = clustered_rate_stat(exact, [1] * len(exact))
            lines.append(
                f"| {method} | {_mean_interval(values)} | {stat['successes']}/{stat['trials']} "
                f"[{100 * stat['low']:.0f}, {100 * stat['high']:.0f}] % "
                f"| {_wilcoxon(values, tv['dimitrov']) if method != 'dimitrov' else ''} "
                f"| {_wilcoxon(values, tv[best_null]) if method not in NULLS else ''} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    parser.add_argument("--clients", nargs=2, type=int, default=[4, 20], metavar=("FIRST", "END"),
                        help="client indices FIRST..END-1 (0-3 were the estimator's "
                             "development set)")
    parser.add_argument("--out", type=Path, default=Path("runs/label-counts.jsonl"))
    parser.add_argument("--table", action="store_true", help="print the tables of --out and stop")
    args = parser.parse_args()
    clients = range(*args.clients)
    rows = ([json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
            if args.out.is_file() else [])
    if not args.table:
        torch.set_num_threads(1)
        data = load_dataset("digits", 28)
        methods = estimators(data)
        done = {(r["cell"], r["client"]) for r in rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for cell in args.cells:
            for client in clients:
                if (cell, client) in done:
                    continue
                new = rows_of(cell, client, data, methods)
                with args.out.open("a") as handle:
                    handle.writelines(json.dumps(row) + "\n" for row in new)
                rows += new
            print(f"{cell}: done", flush=True)
    print(table(rows, clients))


if __name__ == "__main__":
    main()
