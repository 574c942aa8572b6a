"""The unrolled FedAvg attack on a round's K replies: stacked (attacks/unrolled_batched.py)
against one reply at a time (attacks/unrolled.py), in the same run.

K clients of one round train the same fresh DLG-initialised model on their own `digits` images
with the real client code (`fedsnn.core.training.train_epochs`), and the server observes their
replies as the in-line audit does (`fedsnn.audit.observe.observe_update`). Both paths run the
same fixed number of attack iterations with no time budget (`attacks.invert` one at a time, and
`attacks.invert(..., vectorize=K)`), alternating which goes first over `--repeats`. Printed per
K: the median wall time of each path, their ratio (one at a time / stacked: > 1 means the
stacked run is faster), and the largest relative difference of the final matching losses
(float noise only, see tests/attacks/test_unrolled_batched.py).

Usage:
    .venv/bin/python benchmarks/unrolled_stack.py --model lenet --images 32 --epochs 4 \\
        --batch-size 32 --iterations 20 --ks 2 4

Ratios come from one run on one machine; on a shared, loaded machine absolute times are inflated.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from attacks import AttackSettings, LocalTraining, Observation, invert
from fedsnn.audit.observe import observe_update
from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.training import train_epochs


def round_replies(model: str, clients: int, *, images: int, epochs: int, batch_size: int,
                  optimizer: str, lr: float) -> list[Observation]:
    """One round: `clients` replies to the same global model, each client on its own images."""
    data = load_dataset("digits")
    spec = ModelSpec(model)
    net = build_model(spec, seed=0, dlg_init=True)
    sent = {k: v.detach().clone() for k, v in net.state_dict().items()}
    replies = []
    for client in range(clients):
        ids = slice(client * images, (client + 1) * images)
        trained = copy.deepcopy(net)
        result = train_epochs(trained, data.train_x[ids], data.train_y[ids], epochs=epochs,
                              batch_size=batch_size, lr=lr, optimizer=optimizer, seed=client)
        training = LocalTraining("fedavg", optimizer, lr, 0.0, epochs, batch_size, images)
        replies.append(observe_update(f"client-{client}", spec, sent, trained.state_dict(), lr=lr,
                                      steps=result.steps, batch_size=images, training=training))
    return replies


def timed(run: callable) -> tuple[float, list]:
    started = time.perf_counter()
    results = run()
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--images", type=int, default=32, help="N, images per client")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--iterations", type=int, default=20, help="attack iterations (fixed)")
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = AttackSettings(attack="unrolled", optimizer="adam", lr=0.1, distance="cosine",
                              iterations=args.iterations)
    steps = args.epochs * -(-args.images // args.batch_size)
    print(f"{args.model}, N = {args.images}, {args.epochs} epoch(s) of batches of "
          f"{args.batch_size} = {steps} {args.optimizer} steps, "
          f"{args.iterations} attack iterations, {args.threads} thread(s)")
    print("| K | one at a time (s) | stacked (s) | ratio | max rel. diff. of matching losses |")
    print("|---|---|---|---|---|")
    for k in args.ks:
        replies = round_replies(args.model, k, images=args.images, epochs=args.epochs,
                                batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr)
        one_times, stacked_times = [], []
        for repeat in range(args.repeats):
            runs = [("one", lambda: invert(replies, settings)),
                    ("stacked", lambda: invert(replies, settings, vectorize=k))]
            for name, run in runs if repeat % 2 == 0 else runs[::-1]:
                seconds, results = timed(run)
                (one_times if name == "one" else stacked_times).append(seconds)
                if name == "one":
                    single = results
                else:
                    stacked = results
        difference = max(abs(a.matching_loss - b.matching_loss) / abs(a.matching_loss)
                         for a, b in zip(single, stacked, strict=True))
        one, many = statistics.median(one_times), statistics.median(stacked_times)
        print(f"| {k} | {one:.1f} | {many:.1f} | {one / many:.2f} | {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
