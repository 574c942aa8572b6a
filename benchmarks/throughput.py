"""Attack throughput: the one-at-a-time reference loop against the vectorized engine, in one run.

For each attack (iDLG, DLG; GRNN with `--attacks grnn`) and model (lenet, lenet-snn with T=4) the same MNIST test targets,
each seen through a fresh DLG-initialised model (seed = target index), are attacked by
`attacks.invert` one at a time (the reference) and by `attacks.invert(..., vectorize=K)` for every
K, on `--targets-per-slot` × K targets (default 2: the engine's K slots are refilled as targets
finish, as in a bench or an audit with more targets than K; GRNN's generators run a fixed number of
steps, so `--targets-per-slot 1` suits it). Reported per row: reconstructions per second, success rate (MSE to the true image <= 1e-3),
label accuracy, the ratio to the reference's reconstructions/s, and the peak resident memory above
the process's baseline while the row ran (/proc/self/status sampled every 10 ms).

Usage:
    .venv/bin/python benchmarks/throughput.py --data mnist:/work/shared/data/mnist \\
        --ks 1 16 64 128 --out runs/throughput.jsonl
    .venv/bin/python benchmarks/throughput.py --attacks grnn --grnn-iterations 50 --ks 8 32 \
        --targets-per-slot 1 --reference-targets 4 --out runs/throughput-grnn.jsonl

Ratios come from one run on one machine; on a shared, loaded machine absolute times are inflated.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import torch

from attacks import AttackSettings, Observation, invert
from fedsnn.audit.cases import sample_cases
from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec

SUCCESS_MSE = 1e-3


def rss_bytes() -> int:
    """The process's resident set size now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak RSS above the value at entry, sampled in a background thread."""

    def __enter__(self) -> PeakMemory:
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2 ** 20


def measure(observations: list[Observation], x: torch.Tensor, y: torch.Tensor,
            settings: AttackSettings, vectorize: int | bool) -> dict[str, float]:
    """Attack, time, score."""
    with PeakMemory() as memory:
        started = time.perf_counter()
        results = invert(observations, settings, vectorize=vectorize)
        seconds = time.perf_counter() - started
    mse = [float(((r.inputs - x[i:i + 1]) ** 2).mean()) for i, r in enumerate(results)]
    return {"targets": len(results), "seconds": seconds, "recs_per_s": len(results) / seconds,
            "success": sum(m <= SUCCESS_MSE for m in mse) / len(mse),
            "label_acc": sum(int(r.labels[0]) == int(y[i]) for i, r in enumerate(results)) / len(results),
            "peak_mib": memory.mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist:/work/shared/data/mnist")
    parser.add_argument("--attacks", nargs="+", default=["idlg", "dlg"])
    parser.add_argument("--models", nargs="+", default=["lenet", "lenet-snn"])
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 16, 64, 128])
    parser.add_argument("--targets-per-slot", type=int, default=2,
                        help="a K row attacks this many times K targets through K slots")
    parser.add_argument("--reference-targets", type=int, default=8,
                        help="targets the one-at-a-time loop runs (the first of the K targets)")
    parser.add_argument("--iterations", type=int, default=20, help="L-BFGS steps per target")
    parser.add_argument("--grnn-iterations", type=int, default=50,
                        help="generator steps per GRNN target (the bench runs 1,000; GRNN rarely "
                             "stops early, so time per target scales with this)")
    parser.add_argument("--stop-loss", type=float, default=1e-7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/throughput.jsonl"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    n = max(max(args.ks) * args.targets_per_slot, args.reference_targets)
    x, y = data.test_x[:n], data.test_y[:n]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{'attack':6} {'model':10} {'mode':10} {'n':>4} {'rec/s':>8} {'succ':>5} {'label':>5} "
          f"{'ratio':>6} {'MiB':>6}", flush=True)
    with args.out.open("a") as out:
        for attack in args.attacks:
            grnn = attack == "grnn"  # the bench's GRNN: RMSprop generator, TV prior 1e-3
            settings = AttackSettings(attack=attack, stop_loss=args.stop_loss,
                                      iterations=args.grnn_iterations if grnn else args.iterations,
                                      tv_weight=1e-3 if grnn else 0.0)
            for model in args.models:
                observations = [case.observation for case in
                                sample_cases(ModelSpec(model, time_steps=4), x, y, name=model)]
                rows = [("reference", False, args.reference_targets)]
                rows += [(f"K={k}", k, k * args.targets_per_slot) for k in args.ks]
                reference = None
                for mode, vectorize, count in rows:
                    row = measure(observations[:count], x[:count], y[:count], settings, vectorize)
                    reference = reference or row["recs_per_s"]
                    row.update(attack=attack, model=model, mode=mode, iterations=settings.iterations,
                               ratio=row["recs_per_s"] / reference)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(f"{attack:6} {model:10} {mode:10} {count:4d} {row['recs_per_s']:8.3f} "
                          f"{row['success']:5.2f} {row['label_acc']:5.2f} {row['ratio']:6.1f} "
                          f"{row['peak_mib']:6.0f}", flush=True)


if __name__ == "__main__":
    main()
