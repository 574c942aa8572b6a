"""How far a class-by-class reading of the head can go: each class's readout features, exactly.

The learned inverter (attacks/learned_inverter.py) reads a FedAvg reply class by class: the
head's row for class c becomes one image. This experiment gives that design its best case, a
diagnostic that reads the truth and is no attack: instead of the row (mixed with the other
samples' errors, distorted by Adam, moved by the conv layers' training), each class present in
a client's batch hands over the exact sum of its k samples' readout features (the firing-rate map
for lenet-snn) at the global model, with the class and k. A decoder per k (k = 1 .. `--max-k`;
the last serves every larger k), trained on `--public-sets` sums of k random same-class public
samples (the test split, each sample shifted by up to 2 px as the inverter's are) towards the
nearest of them (`nearest_member_loss`), turns each sum into one image, given k times, as the
inverter gives its decoded image. Scored as every attack (optimal assignment, identified = the
original is the image's nearest neighbour in the train split), beside the same nulls.

So a class seen once is read as well as a batch-1 gradient allows; a class seen k >= 2 times
shows what its samples' sum keeps of any one of them. The figure grows with the decoder's
width (docs/results.md), so it is a best case for a given decoder, not a ceiling; nor does it
speak for every attack: the other rows weigh the samples differently (by each sample's
probability of their class), which a joint reading of the whole update could use.

The clients are `experiments.learned_inverter`'s (`client_ids`, the same global model and local
training): the same seeds give the same images, so the two can be compared client by client.
Each client's real rows are measured too (`row_values`): how much of each present class's row
moved sign-like (by the full learning rate at every step), which is what a row would do if Adam
kept only the sign of its gradient.

Example:
    python -m experiments.readout_oracle --clients 40 --first-client 7000
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from attacks import AttackSettings, Reconstruction
from attacks.idlg import last_linear_names
from attacks.learned_inverter import nearest_member_loss, shifted
from attacks.rate_decoder import Decoder, fit_mlp, public_features
from experiments.learned_inverter import (LEARNING_RATES, MNIST, by_class, client_ids,
                                          null_guesses, summary)
from fedsnn.audit.chance import Truth, score_candidates
from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.training import train_epochs

ADAM_LR = LEARNING_RATES["adam"]
SATURATED = 0.9  # a row entry moved by at least this share of lr x steps counts as sign-like
SHIFT = AttackSettings().inverter_shift  # the public samples moved as the inverter's are (2)
PUBLIC_COPIES = 4  # shifted copies of each public sample the decoders learn from


def with_class(sums: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The decoder's input: the summed features and the class as a one-hot."""
    return torch.cat([sums, F.one_hot(classes, num_classes).float()], 1)


def class_sums(features: torch.Tensor, labels: torch.Tensor, images: torch.Tensor, k: int,
               sets: int, num_classes: int, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """`sets` random sets of k same-class samples: (decoder inputs [sets, F + classes],
    members [sets, k, ...])."""
    inputs, members = [], []
    for _ in range(sets):
        c = int(torch.randint(num_classes, (1,), generator=generator))
        pool = (labels == c).nonzero().flatten()
        pick = pool[torch.randperm(len(pool), generator=generator)[:k]]
        inputs.append(with_class(features[pick].sum(0, keepdim=True), torch.tensor([c]),
                                 num_classes))
        members.append(images[pick])
    return torch.cat(inputs), torch.stack(members)


def train_decoders(model: torch.nn.Module, public_x: torch.Tensor, public_y: torch.Tensor,
                   args: argparse.Namespace, num_classes: int) -> dict[int, Decoder]:
    """One decoder per k = 1 .. args.max_k, each fit on args.public_sets sums of k samples."""
    generator = torch.Generator().manual_seed(0)
    images = torch.cat([shifted(public_x.float(), SHIFT, generator)
                        for _ in range(PUBLIC_COPIES)])
    labels = public_y.repeat(PUBLIC_COPIES)
    features = public_features(model, images)
    decoders = {}
    for k in range(1, args.max_k + 1):
        inputs, members = class_sums(features, labels, images, k, args.public_sets,
                                     num_classes, generator)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(k)
            decoder = Decoder(inputs.mean(0), inputs.std(0).clamp(min=1e-3),
                              args.decoder_hidden, tuple(images.shape[1:]))
        fit_mlp(decoder, inputs, members, args.decoder_epochs, generator, nearest_member_loss)
        decoders[k] = decoder.eval()
        print(f"decoder for k = {k} fit on {args.public_sets} sets", flush=True)
    return decoders


def oracle_reading(model: torch.nn.Module, decoders: dict[int, Decoder], x: torch.Tensor,
                   y: torch.Tensor, num_classes: int) -> Reconstruction:
    """A client's images as the oracle reads them: per class present, its samples' summed
    features decoded (by the decoder of its k, capped at the largest), the image given k times."""
    features = public_features(model, x)
    images, labels = [], []
    for c in y.unique().tolist():
        mine = y == c
        k = int(mine.sum())
        decoder = decoders[min(k, max(decoders))]
        with torch.no_grad():
            image = decoder(with_class(features[mine].sum(0, keepdim=True), torch.tensor([c]),
                                       num_classes))
        images.append(image.expand(k, *image.shape[1:]))
        labels.append(torch.full((k,), c))
    return Reconstruction("oracle", "readout-oracle", torch.cat(images), torch.cat(labels), 0.0)


def row_values(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int
               ) -> torch.Tensor:
    """|ΔW[c]| / (lr × steps) of the head rows of the classes present, after the client's real
    local training (full-batch Adam, as `experiments.learned_inverter` trains its clients): 1
    where every step moved the weight by the full learning rate, as a sign-like update would."""
    trained = copy.deepcopy(model)
    train_epochs(trained, x, y, epochs=steps, batch_size=len(x), lr=ADAM_LR, optimizer="adam",
                 seed=seed)
    weight_name, _ = last_linear_names(model)
    change = trained.state_dict()[weight_name] - model.state_dict()[weight_name]
    return (change[y.unique()] / (ADAM_LR * steps)).abs().flatten()


def run(args: argparse.Namespace) -> list[dict]:
    data = load_dataset(args.dataset, 28)
    num_classes = data.num_classes
    model = build_model(ModelSpec(args.model), seed=0, dlg_init=True)  # the inverter runs' global
    model.train()  # as the client runs it (no dropout or batch norm in these models)
    decoders = train_decoders(model, data.test_x, data.test_y, args, num_classes)
    noise = torch.Generator().manual_seed(12345)
    rows = []
    for client in range(args.first_client, args.first_client + args.clients):
        ids = client_ids(client, args.images, len(data.train_x))
        x, y = data.train_x[ids].float(), data.train_y[ids]
        truth = Truth(x, y, ids, data.train_x)
        reading = oracle_reading(model, decoders, x, y, num_classes)
        row = {"client": client, "images": args.images}
        candidates = {"attack": (reading.inputs, reading.labels),
                      **{name: (images, None) for name, images in
                         null_guesses(data.test_x, args.images, noise).items()}}
        for name, (images, labels) in candidates.items():
            count = score_candidates(images, labels, truth).count("identified")
            row[name] = 0 if count is None else count.hits
        row.update(by_class(reading, ids, data))
        values = row_values(model, x, y, args.steps, client)
        row.update({"row-values": len(values), "row-saturated": int((values >= SATURATED).sum()),
                    "row-median": round(float(values.median()), 4)})
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def row_summary(rows: list[dict]) -> dict[str, float]:
    """The real rows' entries pooled over clients: the share moved sign-like (>= SATURATED of
    lr x steps) and the mean of the clients' medians."""
    return {"saturated share": sum(r["row-saturated"] for r in rows)
            / max(sum(r["row-values"] for r in rows), 1),
            "median (mean over clients)": sum(r["row-median"] for r in rows) / max(len(rows), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=MNIST)
    parser.add_argument("--model", default="lenet-snn")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5,
                        help="full-batch Adam steps of the clients' real training (row values)")
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--first-client", type=int, default=7000,
                        help="client seeds (experiments.learned_inverter's: the same images)")
    parser.add_argument("--max-k", type=int, default=3,
                        help="decoders for k = 1 .. this; the last serves larger k")
    parser.add_argument("--public-sets", type=int, default=20000)
    parser.add_argument("--decoder-epochs", type=int, default=40)
    parser.add_argument("--decoder-hidden", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.monotonic()
    rows = run(args)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
              "summary": {**summary(rows), "row values (real rows)": row_summary(rows)},
              "wall-s": round(time.monotonic() - started, 1)}
    print(json.dumps(result["summary"], indent=1), f"wall {result['wall-s']} s")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
