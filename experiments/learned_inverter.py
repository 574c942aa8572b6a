"""The learned inverter on FedAvg replies, with public data granted (docs/results.md, "The
strongest attacker on FedAvg replies (issue 29)").

One round of a federation: one global model (DLG init, seed 0, as the run's default) sent to
`--clients` clients; client k holds N random MNIST train-split images (its own draw, seed
`--first-client` + k) and trains E = `--steps` full-batch epochs with the real client code
(`fedsnn.core.training.train_epochs`, Adam lr 0.003 or SGD lr 0.01). The server's observation is
made as in the in-line audit (`fedsnn.audit.observe`), the attack gets the test split with its
labels as public data (`audit-public-data = "test-split"`), and the auditor scores every client
(optimal assignment, then identified: the original is the reconstruction's nearest neighbour in
the whole train split). Nulls through the same scoring: N random public images per client, and N
uniform-noise images. Rates pooled over clients with the client-clustered interval
(`fedsnn.core.metrics.clustered_rate_stat`).

Example:
    python -m experiments.learned_inverter --model lenet-snn --images 8 --steps 5 \\
        --clients 40 --first-client 1000
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import zlib
from pathlib import Path
from typing import Any

import torch

from attacks import (AttackSettings, LocalTraining, Observation, PublicData, Reconstruction,
                     invert)
from attacks.settings import INVERTER_DECODERS
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.decision import Count, rate_test
from fedsnn.audit.observe import observe_update
from fedsnn.audit.queue import AuditJob
from fedsnn.core.data import load_dataset
from fedsnn.core.metrics import clustered_rate_stat
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.training import train_epochs

MNIST = "mnist:/work/shared/data/mnist"
LEARNING_RATES = {"sgd": 0.01, "adam": 0.003}


def run(args: argparse.Namespace) -> list[dict]:
    data = load_dataset(args.dataset, 28)
    public = PublicData(data.test_x, f"{args.dataset} test split ({len(data.test_x)} images)",
                        labels=data.test_y)
    auditor = Auditor(data.train_x, data.train_y)
    spec = ModelSpec(args.model)
    net = build_model(spec, seed=0, dlg_init=True)
    n, steps = args.images, args.steps
    settings = AttackSettings(attack="learned-inverter", inverter_epochs=args.decoder_epochs,
                              inverter_hidden=args.decoder_hidden,
                              inverter_decoder=args.decoder,
                              inverter_clients=args.simulated, inverter_shift=args.shift,
                              inverter_rotate=args.rotate, inverter_pairs=args.pairs)
    rows = []
    noise = torch.Generator().manual_seed(12345)
    for client in range(args.first_client, args.first_client + args.clients):
        observation, ids = client_reply(client, data, spec, net, images=n, steps=steps,
                                        optimizer=args.optimizer)
        truth = ids.tolist()
        auditor.ground_truth = lambda _round, _partition: truth
        started = time.monotonic()
        [reconstruction] = invert([observation], settings, public=public)
        wall = time.monotonic() - started
        guesses = null_guesses(public.images, n, noise)
        row = {"client": client, "images": n, "wall-s": round(wall, 1)}
        for name, rec in (("attack", reconstruction), *(
                (g, Reconstruction("null", g, images, torch.full((n,), -1), 0.0))
                for g, images in guesses.items())):
            scored = auditor.score(AuditJob(1, client, observation, settings), rec)
            row[name] = scored.get("identified", 0)
            if name == "attack":
                row.update(status=scored["status"], message=scored["message"],
                           psnr=scored.get("psnr"))
        row.update(by_class(reconstruction, ids, data))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def client_reply(client: int, data: Any, spec: ModelSpec, net: torch.nn.Module, *, images: int,
                 steps: int, optimizer: str) -> tuple[Observation, torch.Tensor]:
    """Client `client`'s FedAvg reply to the global model `net` as the server observes it (its
    own `images` train-split images, `steps` full-batch epochs of the real client code), and
    those images' indices."""
    lr = LEARNING_RATES[optimizer]
    ids = client_ids(client, images, len(data.train_x))
    trained = copy.deepcopy(net)
    train_epochs(trained, data.train_x[ids], data.train_y[ids], epochs=steps, batch_size=images,
                 lr=lr, optimizer=optimizer, seed=client)
    training = LocalTraining("fedavg", optimizer, lr, 0.0, steps, images, images)
    sent = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return observe_update(f"client-{client}", spec, sent, trained.state_dict(), lr=lr,
                          steps=steps, batch_size=images, training=training), ids


def null_guesses(public_images: torch.Tensor, n: int, generator: torch.Generator
                 ) -> dict[str, torch.Tensor]:
    """The nulls' N images per client, by NULLS name: random public images and uniform noise."""
    return {"random public images": public_images[torch.randperm(
                len(public_images), generator=generator)[:n]],
            "noise images": torch.rand(n, *public_images.shape[1:], generator=generator)}


def client_ids(client: int, images: int, train_size: int) -> torch.Tensor:
    """Client `client`'s `images` train-split indices (its own seeded draw), so that other
    scripts (`experiments.readout_oracle`) score the very same images."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"client/{client}".encode()))
    return torch.randperm(train_size, generator=generator)[:images]


def by_class(reconstruction: Reconstruction, ids: torch.Tensor, data: Any) -> dict[str, int]:
    """A diagnostic that reads the truth (not the attack's score): per class present in the
    client's batch and decoded, whether the first image decoded for it has one of the class's
    samples as its nearest train-split image; split by classes seen once ("single") and two or
    more times ("shared"), and whether the decoded histogram is exact."""
    labels = data.train_y[ids]
    true = torch.bincount(labels, minlength=int(data.train_y.max()) + 1)
    decoded = torch.bincount(reconstruction.labels.clamp(min=0), minlength=len(true))[:len(true)]
    out = {"single-classes": 0, "single-found": 0, "shared-classes": 0, "shared-found": 0,
           "histogram-exact": int(torch.equal(true, decoded))}
    pool = data.train_x.flatten(1)
    for c in torch.nonzero((true > 0) & (decoded > 0)).flatten().tolist():
        image = reconstruction.inputs[reconstruction.labels == c][0].flatten()[None]
        found = int(torch.cdist(image, pool).argmin()) in ids[labels == c].tolist()
        kind = "single" if true[c] == 1 else "shared"
        out[f"{kind}-classes"] += 1
        out[f"{kind}-found"] += int(found)
    return out


NULLS = ("random public images", "noise images")


def summary(rows: list[dict]) -> dict[str, dict]:
    """Per arm, identified pooled over clients (client-clustered interval); for the attack also
    the verdict's one-sided test against the stronger null (`rate_test`, Fisher's exact)."""
    trials = [r["images"] for r in rows]
    out = {name: clustered_rate_stat([r[name] for r in rows], trials)
           for name in ("attack", *NULLS)}

    def count(name: str) -> Count:
        return Count(sum(r[name] for r in rows), sum(trials))
    test = rate_test("identified", count("attack"), {name: count(name) for name in NULLS})
    out["attack"].update(p_value=test.p_value, strongest_null=test.strongest)
    if all("single-classes" in r for r in rows):  # the by-class diagnostic, pooled
        out["by class (diagnostic)"] = {key: sum(r[key] for r in rows) for key in (
            "single-classes", "single-found", "shared-classes", "shared-found", "histogram-exact")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=MNIST)
    parser.add_argument("--model", default="lenet-snn")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--optimizer", choices=list(LEARNING_RATES), default="adam")
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--first-client", type=int, default=1000,
                        help="client seeds start here (0-99 were used for tuning)")
    parser.add_argument("--simulated", type=int, default=AttackSettings().inverter_clients,
                        help="client updates simulated to learn from "
                             "(AttackSettings.inverter_clients; 2000 before 2026-12-08)")
    parser.add_argument("--decoder-epochs", type=int, default=AttackSettings().inverter_epochs,
                        help="the inverter's training epochs (AttackSettings.inverter_epochs; "
                             "40 before 2026-12-08)")
    parser.add_argument("--decoder-hidden", type=int, default=AttackSettings().inverter_hidden,
                        help="the inverter's decoder width (AttackSettings.inverter_hidden; "
                             "1024 before 2026-12-07)")
    parser.add_argument("--decoder", choices=INVERTER_DECODERS,
                        default=AttackSettings().inverter_decoder,
                        help="the inverter's image decoder (AttackSettings.inverter_decoder; "
                             "mlp before 2026-12-08)")
    parser.add_argument("--shift", type=int, default=AttackSettings().inverter_shift,
                        help="random shift of the public samples simulated on, in pixels "
                             "(AttackSettings.inverter_shift)")
    parser.add_argument("--rotate", type=float, default=AttackSettings().inverter_rotate,
                        help="random rotation of the public samples simulated on, in degrees "
                             "(AttackSettings.inverter_rotate)")
    parser.add_argument("--pairs", action="store_true",
                        help="decode a class seen twice or more as two images "
                             "(AttackSettings.inverter_pairs)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--summary", type=Path, default=None,
                        help="print the summary of a stored --out file (no run)")
    args = parser.parse_args()
    if args.summary is not None:
        print(json.dumps(summary(json.loads(args.summary.read_text())["rows"]), indent=1))
        return
    torch.set_num_threads(1)
    started = time.monotonic()
    rows = run(args)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
              "summary": summary(rows), "wall-s": round(time.monotonic() - started, 1)}
    print(json.dumps(result["summary"], indent=1), f"wall {result['wall-s']} s")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
