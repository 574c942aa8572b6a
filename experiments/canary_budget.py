"""How many steps the audit's attack needs: its canary in the README's setting, scored at checkpoints.

The canary is the round's positive control (`fedsnn.audit.canary`): the global model trained with
the run's local settings on test-split images, attacked as the audit attacks a client reply (the
plan's attack for the reply, `fedsnn.audit.reply.observe_reply`). Here it is attacked once for
`--iterations` steps (within `--budget-s`); the best iterate is snapshotted at each checkpoint
(`attacks.progress.watch`) and scored as the audit scores the canary (identified in the test
split, beside a matched-noise null), with the wall time to that step. The step at which the
identified fraction stops rising is the budget the canary asks for; docs/results.md ("A verdict
you can trust") gives the figures.

Example:
    python -m experiments.canary_budget --models lenet --iterations 200 \\
        --checkpoints 25 50 100 200 --images 64
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from attacks import invert
from attacks.progress import Step, watch
from fedsnn.audit.canary import make_canary
from fedsnn.audit.chance import Scored, Truth, matched_noise, score_candidates
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.reply import observe_reply
from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.image_format import resize
from fedsnn.core.models import build_model, spec_for


def measure(model: str, iterations: int, checkpoints: list[int], images: int | None,
            budget_s: float | None = None) -> list[dict]:
    """One canary of `model` in the default run config's setting (round 1), attacked for
    `iterations` steps; a row per checkpoint: identified, the noise null, seconds."""
    config = RunConfig(model=model)
    data = load_dataset(config.dataset, config.image_size)
    spec = spec_for(config, data.in_channels, data.num_classes, data.image_size)
    sent = build_model(spec, dlg_init=config.dlg_init, seed=config.seed).state_dict()
    # a client's share of the train split in the README's run (5 clients, 80 % local train)
    size = images or int(len(data.train_x) / 5 * (1 - config.local_test_fraction))
    reply, ids = make_canary(config, spec, sent, {"lr": config.learning_rate}, data.test_x,
                             data.test_y, images=size, server_round=1)
    plan = AuditPlan.from_config(config)
    job = observe_reply(reply, plan=plan, config=config, spec=spec,
                        native_size=data.native_size, canary_ids=ids)
    assert not isinstance(job, str), job
    settings = replace(job.settings, iterations=iterations, time_budget_s=budget_s)
    pool_ids = torch.tensor(ids)
    truth = Truth(data.test_x[pool_ids], data.test_y[pool_ids], pool_ids, data.test_x)
    noise = score_candidates(matched_noise(len(ids), tuple(data.test_x.shape[1:]),
                                           data.native_size, torch.Generator().manual_seed(0)),
                             None, truth).count("identified")
    snapshots: dict[int, tuple[torch.Tensor, float]] = {}
    started = time.monotonic()

    def listener(step: Step) -> None:
        if step.index + 1 in checkpoints and step.best is not None:
            best = step.best[0] if isinstance(step.best, tuple) else step.best
            snapshots[step.index + 1] = (best.detach().clone(), time.monotonic() - started)

    with watch(listener):
        final = invert([job.observation], settings)[0]
    rows = []
    for step, (dummy, seconds) in sorted(snapshots.items()):
        images_ = resize(dummy.float().clamp(0, 1).flatten(0, -4), data.image_size)
        images_ = images_[-len(ids):] if len(images_) > len(ids) else images_
        hits = score_candidates(images_, None, truth).count("identified")
        rows.append({"model": model, "images": len(ids), "step": step, "seconds": seconds,
                     "identified": [hits.hits, hits.trials],
                     "matched-noise": [noise.hits, noise.trials]})
    rows.append({"model": model, "images": len(ids), "step": len(final.loss_history),
                 "seconds": final.seconds, "final": True, "status": final.status.value,
                 "identified": _counts(score_candidates(final.inputs.float(), None, truth)),
                 "matched-noise": [noise.hits, noise.trials]})
    return rows


def _counts(scored: Scored) -> list[int]:
    count = scored.count("identified")
    assert count is not None
    return [count.hits, count.trials]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet", "lenet-snn"])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--checkpoints", nargs="+", type=int, default=[25, 50, 100, 200, 400])
    parser.add_argument("--images", type=int, default=None,
                        help="canary size (default: a README client's share, ~230)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="the attack's time budget (its final label refinement runs until "
                             "no move helps or the budget is spent)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for model in args.models:
        for row in measure(model, args.iterations, args.checkpoints, args.images,
                           args.budget_s):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
