"""Re-score stored grid figures against their nulls, without re-running the attacks.

A grid cell's clients are reproducible (`experiments.unrolled_grid.run_cell` draws client c's N
images with a generator seeded by the cell and c), and two of the three nulls need only those
images: `matched-noise` (native-format noise) and `public-draws` (test-split digits), scored
through the audit's pipeline (`fedsnn.audit.chance`). Each stored identified count (docs/results.md)
is then tested one-sided against the stronger of the two (Fisher's exact test), with a
client-clustered interval where per-client counts were stored. The permutation null needs the
reconstructions, which were not kept: it is left out here. The rate decoder's batch-1 victims
(MNIST, pool of 1,000) are re-scored the same way.

Example:
    python -m experiments.grid_nulls --draws 5
"""

from __future__ import annotations

import argparse
import zlib

import torch

from fedsnn.audit.chance import NullSources, Truth, score_nulls
from fedsnn.audit.decision import Count, rate_test
from fedsnn.core.data import load_dataset
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


def client_ids(model: str, images: int, steps: int, optimizer: str, client: int,
               train_size: int) -> torch.Tensor:
    """Client c's images in a grid cell, drawn as `run_cell` draws them."""
    generator = torch.Generator().manual_seed(zlib.crc32(
        f"{model}/{images}/{steps}/{optimizer}/{client}".encode()))
    return torch.randperm(train_size, generator=generator)[:images]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=5, help="draws of each null per client")
    parser.add_argument("--mnist", default="mnist:/work/shared/data/mnist",
                        help="the rate decoder's dataset ('' to leave it out)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("digits", 28)
    print("| cell | clients | identified (stored) | client-clustered 95 % | matched-noise | "
          "public-draws | p (vs strongest) |")
    print("|---|---|---|---|---|---|---|")
    for model, images, steps, optimizer, clients, hits, where in STORED:
        nulls: dict[str, Count] = {"matched-noise": Count(0, 0), "public-draws": Count(0, 0)}
        for client in range(clients):
            ids = client_ids(model, images, steps, optimizer, client, len(data.train_x))
            truth = Truth(data.train_x[ids], data.train_y[ids], ids, data.train_x)
            scored = score_nulls(truth, NullSources(data.test_x, data.test_y, data.native_size,
                                                    args.draws, seed=client))
            for name in nulls:
                for draw in scored[name]:
                    count = draw.count("identified")
                    assert count is not None
                    nulls[name] = nulls[name] + count
        attack = Count(sum(hits), clients * images)
        test = rate_test("identified", attack, nulls)
        interval = (clustered_rate_stat(hits, [images] * clients) if len(hits) == clients
                    else None)
        ci = "–" if interval is None else f"[{100 * interval['low']:.0f}, {100 * interval['high']:.0f}]"
        cells = " | ".join(f"{100 * n.rate:.1f} % ({n.hits}/{n.trials})" for n in nulls.values())
        print(f"| {model} N={images} {steps} steps {optimizer} ({where}) | {clients} | "
              f"{100 * attack.rate:.0f} % ({attack.hits}/{attack.trials}) | {ci} | {cells} | "
              f"{test.p_value:.2g} |", flush=True)
    if args.mnist:
        rate_decoder_nulls(args.mnist, args.draws)


if __name__ == "__main__":
    main()
