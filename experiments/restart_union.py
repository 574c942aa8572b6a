"""Do two restarts of the unrolled attack identify different images, and can the attacker tell
which? A diagnostic of the MNIST target cell with the public decoder prior.

For a grid cell's client (`experiments.unrolled_grid.client_reply`, lenet, SGD, N = 32, 4
full-batch steps; the test split granted as public images), the attack with the decoder prior
(`public_prior="decoder"`, 3,000 steps, the last 1,500 on free pixels, as the grid's
`unrolled-public-prior`) runs from two seeds. Printed per client: each seed's identified count,
how many images both identify and either does (the union: what a perfect per-image choice
between the two would reach; it reads the truth, an oracle), the seed the attacker keeps (the
lower matching loss, as `AttackSettings.restarts` keeps) and its count, and an attacker-side
merge: one greedy pass over the kept run's samples, each swapped for its counterpart in the
other run (optimal assignment on MSE) when the matching loss drops; its count and loss. And two
attacker-side per-image picks between each sample and its counterpart, from the public images
only: the one the public autoencoder reconstructs better (`ae-pick`: nearer the public images'
manifold), and the one a classifier fit on the public images is surer of (`judge-pick`).
And a consensus of the two (`mean`): each sample averaged with its counterpart, and, with
`--refine-steps K`, K more free-pixel steps from that average, labels held at the kept run's
(`mean-refined`), beside the same K steps from the kept run alone (`kept-refined`, the control:
what the extra steps give without the other run). With `--rounds R` every run matches the
client's rounds 1..R jointly (the grid's `unrolled-rounds-public-prior`; a fixed partition).

Example:
    python -m experiments.restart_union --dataset mnist:/work/shared/data/mnist --clients 0 1
    python -m experiments.restart_union --clients 0 --rounds 3 --refine-steps 500
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from attacks.latent_prior import public_autoencoder
from attacks.rate_decoder import PublicData
from attacks.settings import unrolled_preset
from attacks.threat_model import PUBLIC_DATA, ThreatModel
from attacks.types import Observation, Reconstruction
from attacks.unrolled import images_loss, match_from, unrolled
from experiments.unrolled_grid import LEARNING_RATES, client_reply, epochs_and_batch, later_rounds
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.chance import Truth, score_candidates
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.reply import observe_reply
from fedsnn.core.data import load_dataset
from fedsnn.core.judges import load_judge
from fedsnn.core.metrics.matching import match_by_mse


def merged_by_loss(observations: list[Observation], kept: Reconstruction, other: Reconstruction,
                   settings) -> tuple[torch.Tensor, float, int]:
    """The kept run with each sample in turn swapped for its MSE-assigned counterpart in the
    other run (image and label) when the matching loss (of every round observed) drops:
    (images, loss, swaps kept)."""
    loss = images_loss(observations, settings)
    order = match_by_mse(other.inputs, kept.inputs)
    images, labels = kept.inputs.clone(), kept.labels.clone()
    current, swaps = loss(images, labels), 0
    for k in range(len(images)):
        trial_images, trial_labels = images.clone(), labels.clone()
        trial_images[k], trial_labels[k] = other.inputs[order[k]], other.labels[order[k]]
        value = loss(trial_images, trial_labels)
        if value < current:
            images, labels, current, swaps = trial_images, trial_labels, value, swaps + 1
    return images, current, swaps


def picked(kept: torch.Tensor, other: torch.Tensor, score_kept: torch.Tensor,
           score_other: torch.Tensor) -> torch.Tensor:
    """Per sample, the kept image or its counterpart in `other` (same order), whichever scores
    lower.

    Example:
        >>> picked(torch.zeros(2, 1), torch.ones(2, 1), torch.tensor([1., 0.]),
        ...        torch.tensor([0., 1.])).flatten().tolist()
        [1.0, 0.0]
    """
    choose_other = (score_other < score_kept).view(-1, *([1] * (kept.dim() - 1)))
    return torch.where(choose_other, other, kept)


def client_row(data, auditor: Auditor, public: PublicData, client: int,
               iterations: int = 3000, pixel_steps: int = 1500, judge=None, rounds: int = 1,
               refine_steps: int = 0) -> dict:
    """One client's figures (module doc)."""
    settings = unrolled_preset(iterations=iterations, public_prior="decoder",
                               prior_pixel_steps=pixel_steps)
    ids, spec, config, reply, trained = client_reply("lenet", 32, 4, "sgd", client, data=data,
                                                     design="full-batch")
    epochs, batch = epochs_and_batch(32, 4, "full-batch")
    replies = [reply] + later_rounds(trained, data.train_x[ids], data.train_y[ids], client,
                                     rounds, epochs=epochs, batch=batch,
                                     lr=LEARNING_RATES["sgd"], optimizer="sgd", steps=4)
    auditor.ground_truth = lambda _round, _partition: ids.tolist()
    plan = AuditPlan(rounds=None, max_clients=1, max_batch=32, settings=settings, workers=0,
                     threat_model=ThreatModel().grant(PUBLIC_DATA))
    jobs = [observe_reply(r, plan=plan, config=config, spec=spec, native_size=data.native_size,
                          target_id="restart-union") for r in replies]
    assert not any(isinstance(j, str) for j in jobs), jobs
    job, observations = jobs[0], [j.observation for j in jobs]
    truth: Truth = auditor.truth(job)
    started = time.monotonic()
    runs = [unrolled(job.observation, settings, seed=seed, public=public,
                     other_rounds=observations[1:]) for seed in (0, 1)]
    hits = [score_candidates(r.inputs, None, truth).hits["identified"] for r in runs]
    kept_index = min((0, 1), key=lambda i: runs[i].matching_loss)
    kept, other = runs[kept_index], runs[1 - kept_index]
    images, loss, swaps = merged_by_loss(observations, kept, other, settings)
    counterpart = other.inputs[match_by_mse(other.inputs, kept.inputs)]
    mean = (kept.inputs + counterpart) / 2
    autoencoder = public_autoencoder(public, spec.in_channels, kept.inputs.shape[-1])

    def ae_error(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (autoencoder.decode(autoencoder.encode(x)) - x).pow(2).flatten(1).mean(1)

    picks = {"ae-pick-hits": picked(kept.inputs, counterpart, ae_error(kept.inputs),
                                    ae_error(counterpart)), "mean-hits": mean}
    if refine_steps:
        pixels = unrolled_preset(iterations=refine_steps)
        for name, start in (("mean-refined-hits", mean), ("kept-refined-hits", kept.inputs)):
            picks[name] = match_from(job.observation, pixels, kept.labels, start,
                                     other_rounds=observations[1:])
    if judge is not None:
        with torch.no_grad():
            doubt = lambda x: -judge(x.clamp(0, 1)).softmax(-1).max(-1).values  # noqa: E731
            picks["judge-pick-hits"] = picked(kept.inputs, counterpart, doubt(kept.inputs),
                                              doubt(counterpart))
    return {"client": client, "images": len(ids), "hits": [int(h.sum()) for h in hits],
            **{name: int(score_candidates(x, None, truth).hits["identified"].sum())
               for name, x in picks.items()},
            "both": int((hits[0] & hits[1]).sum()), "union": int((hits[0] | hits[1]).sum()),
            "losses": [r.matching_loss for r in runs], "kept-seed": kept_index,
            "kept-hits": int(hits[kept_index].sum()),
            "merged-hits": int(score_candidates(images, None, truth).hits["identified"].sum()),
            "merged-loss": loss, "swaps": swaps, "seconds": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist:/work/shared/data/mnist")
    parser.add_argument("--clients", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--rounds", type=int, default=1,
                        help="the client's rounds 1..R matched jointly by every run")
    parser.add_argument("--refine-steps", type=int, default=0,
                        help="free-pixel steps from the runs' mean and from the kept run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, 28)
    auditor = Auditor(data.train_x, data.train_y, native_size=data.native_size)
    public = PublicData(data.test_x, f"{data.name} test split", labels=data.test_y)
    judge = load_judge(data, split="test").model.eval()  # fit on the public (test) split
    for client in args.clients:
        print(json.dumps(client_row(data, auditor, public, client, judge=judge,
                                    rounds=args.rounds, refine_steps=args.refine_steps)),
              flush=True)


if __name__ == "__main__":
    main()
