"""Can another round's update tell the attacker when its reconstruction is best? A diagnostic.

At the MNIST target cell today's unrolled attack identifies the most images mid-run and fewer at
the end, while its matching loss keeps falling (docs/results.md, "Speed with the public decoder
prior at the MNIST cell"). The hypothesis tested here: late steps fit round 1's update with
detail that is not the images.
The server also holds the same client's reply of round 2 (same samples, other global weights;
the default threat model, as the grid's `unrolled-rounds`). The true images match both updates;
detail fitted to round 1 alone need not match round 2. So round 2's matching loss, evaluated on
the attack's best iterate (images and soft labels) and never optimized, is a validation signal.

For each client of the cell (`experiments.unrolled_grid.client_reply`, full-batch design), the
attack (`unrolled_preset`, `--iterations` steps) runs on round 1's reply; every `--every` steps
its best iterate is scored: the validation loss (round 2's replay distance) and identified (an
oracle: it reads the client's images). Printed per client as JSON: the trajectory, identified
at the end, at the iterate of lowest validation loss, and at an attacker-side early stop (the
lowest validation loss once it has not improved for `--patience` steps) with the step it stops.

Example:
    python -m experiments.validation_round --dataset mnist:/work/shared/data/mnist --clients 18 19
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from attacks.progress import Step, watch
from attacks.settings import AttackSettings, unrolled_preset
from attacks.spiking import as_model_input, finalize
from attacks.unrolled import input_format, unrolled, update_distance
from experiments.unrolled_grid import (LEARNING_RATES, client_reply, epochs_and_batch,
                                       later_rounds)
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.chance import score_candidates
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.queue import AuditJob
from fedsnn.audit.reply import observe_reply
from fedsnn.core.data import load_dataset


def early_stop(trajectory: list[dict], patience: int) -> dict:
    """The snapshot an attacker keeps when it stops once the validation loss has not improved
    for `patience` steps (the last snapshot if it never stops): the lowest validation loss so far.

    Example:
        >>> t = [{"step": s, "validation": v} for s, v in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 2.5)]]
        >>> early_stop(t, 2)["step"], early_stop(t, 5)["step"]
        (2, 2)
    """
    best = trajectory[0]
    for snapshot in trajectory:
        if snapshot["validation"] < best["validation"]:
            best = snapshot
        if snapshot["step"] - best["step"] >= patience:
            break
    return best


def two_rounds(data, client: int, settings: AttackSettings, *, images: int = 32,
               steps: int = 4) -> tuple[torch.Tensor, AuditJob, AuditJob]:
    """A cell client's sample ids and its round-1 and round-2 replies as the audit observes them
    (lenet, SGD, full-batch design)."""
    epochs, batch = epochs_and_batch(images, steps, "full-batch")
    ids, spec, config, reply, trained = client_reply("lenet", images, steps, "sgd", client,
                                                     data=data, design="full-batch")
    (second,) = later_rounds(trained, data.train_x[ids], data.train_y[ids], client, 2,
                             epochs=epochs, batch=batch, lr=LEARNING_RATES["sgd"],
                             optimizer="sgd", steps=steps)
    plan = AuditPlan(rounds=None, max_clients=1, max_batch=images, settings=settings,
                     workers=0)
    job, job2 = (observe_reply(r, plan=plan, config=config, spec=spec,
                               native_size=data.native_size, target_id="validation")
                 for r in (reply, second))
    assert not isinstance(job, str) and not isinstance(job2, str), (job, job2)
    return ids, job, job2


def client_row(data, auditor: Auditor, client: int, *, iterations: int, every: int,
               patience: int, images: int = 32, steps: int = 4) -> dict:
    """One client's figures (module doc)."""
    settings: AttackSettings = unrolled_preset(iterations=iterations)
    ids, job, job2 = two_rounds(data, client, settings, images=images, steps=steps)
    auditor.ground_truth = lambda _round, _partition: ids.tolist()
    truth = auditor.truth(job)
    validation = update_distance(job2.observation, settings)
    expand = input_format(job.observation) or (lambda x: x)
    trajectory: list[dict] = []
    count = [0]

    def listener(step: Step) -> None:
        count[0] += 1
        if count[0] % every or step.best is None:
            return
        dummy, logits = step.best
        images_now = finalize(expand(dummy), settings)
        with torch.enable_grad():
            loss = float(validation(as_model_input(images_now, settings),
                                    logits.softmax(-1), False).detach())
        hits = int(score_candidates(images_now, None, truth).hits["identified"].sum())
        trajectory.append({"step": count[0], "validation": loss, "identified": hits})

    started = time.monotonic()
    with watch(listener):
        reconstruction = unrolled(job.observation, settings, seed=0)
    final = int(score_candidates(reconstruction.inputs, None, truth).hits["identified"].sum())
    lowest = min(trajectory, key=lambda s: s["validation"])
    stop = early_stop(trajectory, patience)
    return {"client": client, "images": len(ids), "final": final,
            "at-lowest-validation": lowest["identified"], "lowest-step": lowest["step"],
            "early-stop": stop["identified"], "early-stop-step": stop["step"],
            "peak": max(s["identified"] for s in trajectory), "seconds": time.monotonic() - started,
            "trajectory": trajectory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist:/work/shared/data/mnist")
    parser.add_argument("--clients", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--patience", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, 28)
    auditor = Auditor(data.train_x, data.train_y, native_size=data.native_size)
    for client in args.clients:
        print(json.dumps(client_row(data, auditor, client, iterations=args.iterations,
                                    every=args.every, patience=args.patience)), flush=True)


if __name__ == "__main__":
    main()
