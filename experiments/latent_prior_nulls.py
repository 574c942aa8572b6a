"""Nulls of the learned prior (attacks/latent_prior.py): what the decoder alone "identifies".

The unrolled attack with `public_prior = "decoder"` returns decoder outputs, which look like
digits whatever the update says. These nulls read no update: per grid client, `--draws` sets of
N decoder outputs, scored through the audit's pipeline (`fedsnn.audit.chance.score_candidates`:
optimal assignment to the client's N images, nearest neighbour in the train split, the grid's
judge fit on the test split), as the attack's rows are:

- decoded-public: decoder(encoder(x)) of N random public (test-split) images;
- decoded-public, client's classes: the same, drawn with the client's true class histogram (a
  null stronger than the attack's own start, which uses the estimated histogram);
- decoded-random-codes: decoder(z), z drawn from a diagonal Gaussian fit to the public codes;
- with `--ceiling`, a diagnostic that is no null and no attack (it reads the client's images):
  decoder(encoder(the client's own images)), the best the decoder's range holds.

Example:
    python -m experiments.latent_prior_nulls --dataset mnist:/work/shared/data/mnist \\
        --first-client 2 --clients 8 --draws 4
"""

from __future__ import annotations

import argparse

import torch

from attacks.latent_prior import public_autoencoder
from attacks.rate_decoder import PublicData
from experiments.unrolled_grid import client_update, epochs_and_batch, LEARNING_RATES
from fedsnn.audit.chance import Truth, score_candidates
from fedsnn.core.data import load_dataset
from fedsnn.core.judges import load_judge
from fedsnn.core.metrics import clustered_rate_stat
from fedsnn.core.models import ModelSpec

NULLS = ("decoded-public", "decoded-public, client's classes", "decoded-random-codes")


CEILING = "ceiling: the client's own images through the autoencoder (diagnostic)"


def null_images(name: str, data, autoencoder, truth: Truth, generator: torch.Generator
                ) -> torch.Tensor:
    """One draw of a null: N decoder outputs, N = the client's images (its labels are read by the
    class-matched null only, its images by the ceiling only)."""
    public, labels = data.test_x.float(), truth.labels
    n = len(labels)
    with torch.no_grad():
        if name == CEILING:
            return autoencoder.decode(autoencoder.encode(truth.images.float()))
        if name == "decoded-public":
            ids = torch.randperm(len(public), generator=generator)[:n]
        elif name == "decoded-public, client's classes":
            ids = torch.stack([(data.test_y == c).nonzero().flatten()[torch.randint(
                int((data.test_y == c).sum()), (1,), generator=generator)][0]
                for c in labels.tolist()])
        else:
            codes = autoencoder.encode(public)
            z = codes.mean(0) + codes.std(0) * torch.randn((n, codes.shape[1]),
                                                           generator=generator)
            return autoencoder.decode(z)
        return autoencoder.decode(autoencoder.encode(public[ids]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist:/work/shared/data/mnist")
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--first-client", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--ceiling", action="store_true",
                        help="also the diagnostic ceiling (module doc)")
    args = parser.parse_args()
    names = (*NULLS, CEILING) if args.ceiling else NULLS
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, 28)
    judge = load_judge(data, split="test")

    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return judge.model(images.clamp(0, 1)).argmax(1)

    autoencoder = public_autoencoder(PublicData(data.test_x, "test split", labels=data.test_y),
                                     int(data.train_x.shape[1]), int(data.train_x.shape[-1]))
    spec = ModelSpec(args.model, in_channels=int(data.train_x.shape[1]),
                     num_classes=data.num_classes)
    epochs, batch = epochs_and_batch(args.images, args.steps, "full-batch")
    hits: dict[str, list[int]] = {name: [] for name in names}
    psnr: dict[str, list[float]] = {name: [] for name in names}
    asr: dict[str, list[int]] = {name: [] for name in names}
    clients = list(range(args.first_client, args.clients))
    for client in clients:
        ids, _, _ = client_update(spec, data, client, images=args.images, steps=args.steps,
                                  optimizer=args.optimizer, epochs=epochs, batch=batch,
                                  lr=LEARNING_RATES[args.optimizer])
        truth = Truth(data.train_x[ids], data.train_y[ids], ids, data.train_x, predict)
        for name in names:
            generator = torch.Generator().manual_seed(client)
            scored = [score_candidates(null_images(name, data, autoencoder, truth, generator),
                                       None, truth)
                      for _ in range(args.draws if name != CEILING else 1)]
            hits[name].append(sum(int(s.hits["identified"].sum()) for s in scored))
            asr[name].append(sum(int(s.hits["asr"].sum()) for s in scored))
            psnr[name] += [float(v) for s in scored for v in s.values["psnr"]]
        print(f"client {client}: " + ", ".join(f"{n} {hits[n][-1]}" for n in names), flush=True)
    print("| null | clients | identified (clustered 95 %) | judge ASR | PSNR |")
    print("|---|---|---|---|---|")
    for name in names:
        trials = [args.images * (args.draws if name != CEILING else 1)] * len(clients)
        stat = clustered_rate_stat(hits[name], trials)
        print(f"| {name} | {clients[0]}–{clients[-1]} | {100 * stat['value']:.1f} % "
              f"[{100 * stat['low']:.1f}, {100 * stat['high']:.1f}] "
              f"({sum(hits[name])}/{sum(trials)}; per client {', '.join(map(str, hits[name]))}) | "
              f"{100 * sum(asr[name]) / sum(trials):.0f} % | "
              f"{sum(psnr[name]) / len(psnr[name]):.1f} |")


if __name__ == "__main__":
    main()
