"""Decoders for the learned inverter, compared on the same simulated rows (a development tool:
it reads the truth to score; docs/results.md, "A conv decoder for the learned inverter").

`simulate` stores what the inverter learns from, once: the class rows of `--simulated` client
updates the server simulates on shifted public test images (`attacks.learned_inverter.
simulated_rows`, seed `--seed`), and the real rows of `--clients` clients from `--first-client`
(8 MNIST train images, 5 full-batch Adam steps, lr 0.003, lenet-snn; the clients of
`experiments.learned_inverter`). `fit` trains one decoder on one or more stored sets of simulated
rows and scores it on the stored clients, class by class with the true class counts (no counter):
a class's decoded image is found when its nearest train-split image is one of that class's
samples (the by-class diagnostic of `experiments.learned_inverter`).

Example:
    python -m experiments.inverter_decoder_study simulate --simulated 2000 --seed 0 \
        --out runs/rows-0.pt
    python -m experiments.inverter_decoder_study fit --rows runs/rows-0.pt --decoder conv
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from attacks import AttackSettings, PublicData, Reconstruction
from attacks.idlg import last_linear_names
from attacks.learned_inverter import (image_decoder, nearest_member_loss, row_features,
                                      simulated_rows)
from attacks.rate_decoder import fit_mlp
from attacks.settings import INVERTER_DECODERS
from experiments.learned_inverter import MNIST, by_class, client_reply
from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec, build_model


def simulate(args: argparse.Namespace) -> None:
    data = load_dataset(MNIST, 28)
    public = PublicData(data.test_x, "test", labels=data.test_y)
    spec = ModelSpec("lenet-snn")
    net = build_model(spec, seed=0, dlg_init=True)
    weight, bias = last_linear_names(build_model(spec))
    real, truth, first = [], [], None
    for client in range(args.first_client, args.first_client + max(1, args.clients)):
        observation, ids = client_reply(client, data, spec, net, images=8, steps=5,
                                        optimizer="adam")
        first = first or observation
        assert observation.delta is not None and observation.training is not None
        real.append(row_features(observation.delta, observation.training, weight, bias))
        truth.append(ids)
    started = time.monotonic()
    settings = AttackSettings(attack="learned-inverter", inverter_clients=args.simulated)
    features, shares, targets = simulated_rows(first, public, settings, args.seed)
    print(f"simulated {args.simulated} updates in {time.monotonic() - started:.0f} s")
    torch.save({"features": features, "shares": shares, "targets": targets,
                "real": torch.stack(real)[:args.clients],
                "truth": torch.stack(truth)[:args.clients], "observation": first}, args.out)


def found_by_class(decoder: torch.nn.Module, real: torch.Tensor, truth: torch.Tensor,
                   data: object) -> dict[str, int]:
    """Classes seen once / twice or more, and how many of each the decoder's image finds
    (`experiments.learned_inverter.by_class`, each present class decoded once), over clients."""
    out: dict[str, int] = {}
    for rows, ids in zip(real, truth, strict=True):
        present = torch.unique(data.train_y[ids])
        with torch.no_grad():
            images = decoder(rows)[present]
        found = by_class(Reconstruction("study", "decoder", images, present, 0.0), ids, data)
        for key, value in found.items():
            out[key] = out.get(key, 0) + value
    out.pop("histogram-exact", None)
    return out


def fit(args: argparse.Namespace) -> None:
    data = load_dataset(MNIST, 28)
    stored = [torch.load(path, weights_only=False) for path in args.rows]
    features = torch.cat([s["features"] for s in stored])
    shares = torch.cat([s["shares"] for s in stored])
    targets = torch.cat([s["targets"] for s in stored])
    present = shares > 0
    mean, std = features.mean(0), features.std(0).clamp(min=1e-6)
    settings = AttackSettings(inverter_decoder=args.decoder, inverter_hidden=args.hidden)
    torch.manual_seed(0)
    decoder = image_decoder(stored[0]["observation"], mean, std, settings,
                            tuple(targets.shape[2:]))
    started = time.monotonic()
    fit_mlp(decoder, features[present], targets[present], args.epochs,
            torch.Generator().manual_seed(0), nearest_member_loss)
    seconds = time.monotonic() - started
    found = found_by_class(decoder.eval(), stored[0]["real"], stored[0]["truth"], data)
    print(json.dumps({"rows": [str(p) for p in args.rows], "decoder": args.decoder,
                      "hidden": args.hidden, "epochs": args.epochs,
                      "training rows": int(present.sum()), **found,
                      "found": found["single-found"] + found["shared-found"],
                      "fit-s": round(seconds)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulate")
    sim.add_argument("--simulated", type=int, default=2000)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--clients", type=int, default=40, help="real clients stored (0: none)")
    sim.add_argument("--first-client", type=int, default=0)
    sim.add_argument("--out", type=Path, required=True)
    fitting = commands.add_parser("fit")
    fitting.add_argument("--rows", type=Path, nargs="+", required=True,
                         help="stored simulations; the real clients are the first one's")
    fitting.add_argument("--decoder", choices=INVERTER_DECODERS, default="conv")
    fitting.add_argument("--hidden", type=int, default=2048)
    fitting.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    simulate(args) if args.command == "simulate" else fit(args)


if __name__ == "__main__":
    main()
