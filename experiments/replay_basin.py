"""Does the unrolled attack's matching loss lead back to the client's images? A diagnostic.

For a grid cell's client (`experiments.unrolled_grid.client_reply`, full-batch design), the
attack is started from the client's own images plus Gaussian noise of standard deviation
`--sigma` (clamped to [0, 1]), with the true labels held fixed, and run for `--iterations`
steps. Printed per client: the matching loss at the truth, at the start and at the end, and the
mean squared distance of the dummies to the truth at the start and at the end. Where the loss
leads back, the distance shrinks; where it falls while the distance grows, low matching loss is
reached by other images and the attack has no basin to find. Not a threat model: it reads the
client's images (a diagnostic, as `--oracle-counts` in the grid).

Example:
    python -m experiments.replay_basin --dataset mnist:/work/shared/data/mnist \
        --optimizer adam --images 8 --sigma 0.2 --clients 2
"""

from __future__ import annotations

import argparse

import torch

from attacks.settings import unrolled_preset
from attacks.unrolled import match_from, update_distance
from experiments.unrolled_grid import client_reply
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.reply import observe_reply
from fedsnn.core.data import load_dataset


def basin_row(data, *, client: int, optimizer: str, images: int, steps: int, sigma: float,
              iterations: int, adam_smoothing: float = 0.0, lr: float | None = None
              ) -> dict[str, float]:
    """One client's figures (module doc); `adam_smoothing` > 0 runs every step on the smoothed
    Adam replay (`AttackSettings.adam_smoothing`), the end loss still the client's replay's;
    `lr`: the dummies' Adam learning rate (None: the attack's 0.1, which moves every pixel
    by about 0.1 in the first step)."""
    ids, spec, config, reply, _ = client_reply("lenet", images, steps, optimizer, client,
                                               data=data, design="full-batch")
    settings = unrolled_preset(iterations=iterations, learn_labels=False,
                               **({} if lr is None else {"lr": lr}))
    plan = AuditPlan(rounds=None, max_clients=1, max_batch=images, settings=settings, workers=0)
    # the model's resolution: the start is the client's own images as the model saw them
    job = observe_reply(reply, plan=plan, config=config, spec=spec, native_size=None)
    assert not isinstance(job, str), job
    x, y = data.train_x[ids].float(), data.train_y[ids]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(client))
    start = (x + sigma * noise).clamp(0, 1)
    end = match_from(job.observation, settings, y, start, adam_eps_scale=adam_smoothing)
    with torch.enable_grad():
        loss = update_distance(job.observation, settings)
        figures = [float(loss(v, y, False).detach()) for v in (x, start, end)]
    return {"client": client, "loss-truth": figures[0], "loss-start": figures[1],
            "loss-end": figures[2], "mse-start": float((start - x).pow(2).mean()),
            "mse-end": float((end - x).pow(2).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist:/work/shared/data/mnist")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="adam")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--sigma", type=float, default=0.2)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--adam-smoothing", type=float, default=0.0)
    parser.add_argument("--lr", type=float, default=None, help="the dummies' (default 0.1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, 28)
    print("| client | loss at the truth | at the start | at the end | MSE to the truth, start "
          "| end |\n|---|---|---|---|---|---|")
    for client in range(args.clients):
        row = basin_row(data, client=client, optimizer=args.optimizer, images=args.images,
                        steps=args.steps, sigma=args.sigma, iterations=args.iterations,
                        adam_smoothing=args.adam_smoothing, lr=args.lr)
        print(f"| {client} | {row['loss-truth']:.1e} | {row['loss-start']:.1e} | "
              f"{row['loss-end']:.1e} | {row['mse-start']:.4f} | {row['mse-end']:.4f} |")


if __name__ == "__main__":
    main()
