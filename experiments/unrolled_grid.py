"""Leakage of FedAvg updates: the unrolled attack vs today's gradient approximation, same replies.

Each cell (model, images per client N, local steps, optimizer) has `--clients` clients. Each
holds N random `digits` training images, starts from a fresh model (DLG init, as the run's
default) and trains with the real client code (`fedsnn.core.training.train_epochs`). `--design` picks
E and the batch size B that give the cell's local steps: "mini-batch" (the default:
B = max(N / steps, min(N, 8)), E = steps * B / N, one epoch of mini-batches where N allows it,
so the replay costs N * E sample passes, not N * steps) or "full-batch" (B = N, E = steps). The
server's observation is made as in the in-line audit (`fedsnn.audit.observe`); both attacks see
the same one; the auditor scores both (identified, judge ASR, PSNR/SSIM, class histogram). The
unrolled attack runs as the audit runs it (`unrolled_preset`: Adam lr 0.1, learned and refined
labels; 1,000 steps by default) with the dataset's native resolution granted (row "unrolled",
the default threat model) and withheld (row "unrolled, data-format withheld"); `--methods` picks
the rows. Rows are appended to --out client by client (a re-run skips the clients and methods it
has); `--table` prints docs/results.md's table from that file.

Example:
    python -m experiments.unrolled_grid --models lenet --images 32 --steps 4 \\
        --optimizers sgd --clients 4 --out runs/unrolled-grid.jsonl
    python -m experiments.unrolled_grid --table --out runs/unrolled-grid.jsonl
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
import zlib
from functools import partial
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Any

import torch

from attacks import AttackSettings, ThreatModel, invert
from attacks.settings import LABEL_COUNTS, LR_SCHEDULES, unrolled_preset
from attacks.rate_decoder import PublicData
from attacks.threat_model import DATA_FORMAT, PUBLIC_DATA
from attacks.types import Observation, Reconstruction
from attacks.unrolled import match_update, unrolled
from fedsnn.core.config import RunConfig
from fedsnn.core.metrics import clustered_rate_stat, histogram
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.canary import Reply
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.reply import audit_reply, observe_reply
from fedsnn.audit.session import score_finished
from fedsnn.audit.verdict import leakage_summary
from fedsnn.core.data import load_dataset
from fedsnn.core.judges import load_judge
from fedsnn.core.models import ModelSpec, build_model
from fedsnn.core.training import train_epochs

LEARNING_RATES = {"sgd": 0.01, "adam": 0.003}  # adam: the run's default
DESIGNS = ("full-batch", "mini-batch")
SMALLEST_BATCH = 8  # the mini-batch design's smallest local batch
# --methods keys -> row names: the approximation; the unrolled attack with the data format (the
# default threat model) and with it withheld (audit-withhold = "data-format")
METHODS = {"approximation": "approximation", "unrolled": "unrolled",
           "unrolled-withheld": "unrolled, data-format withheld",
           "unrolled-copies": "unrolled, per-epoch copies",
           "unrolled-rounds": "unrolled, rounds jointly",
           "unrolled-public-prior": "unrolled, public decoder prior (public-data granted)",
           "unrolled-rounds-public-prior":
               "unrolled, rounds jointly, public decoder prior (public-data granted)",
           "learned-inverter": "learned inverter (public-data granted)"}
# the methods whose threat model grants the public images (the test split, disjoint from victims)
PUBLIC_METHODS = ("unrolled-public-prior", "unrolled-rounds-public-prior", "learned-inverter")
# the methods that attack rounds 1..--rounds of the client jointly
ROUNDS_METHODS = ("unrolled-rounds", "unrolled-rounds-public-prior")
# the rows a run makes unless --methods says otherwise (per-epoch copies: opt in)
DEFAULT_METHODS = ("approximation", "unrolled", "unrolled-withheld")


def attack_settings(iterations: int, budget: float, tv_weight: float = 0.0,
                    learn_labels: bool = True, label_phases: int = 1, epoch_prior: float = 1.0,
                    restarts: int = 1, label_counts: str = "dimitrov",
                    prior_pixel_steps: int = 0, prior_anchor_weight: float = 0.0,
                    prior_code_swaps: int = 0, prior_pixel_lr: float | None = None,
                  **unrolled_changes: Any
                    ) -> dict[str, AttackSettings]:
    """The attacks compared, by METHODS key: the unrolled one (`unrolled_preset`, as the audit
    runs it; "unrolled-withheld" runs it too, under another threat model), the same with
    per-epoch copies tied by a prior of weight `epoch_prior` (attacks/epoch_copies.py), and iDLG
    on (w - w') / (lr * steps) with the in-line audit's former defaults (L-BFGS, 50 iterations).
    `unrolled_changes`: further AttackSettings fields of every unrolled method."""
    unrolled = unrolled_preset(iterations=iterations, time_budget_s=budget, tv_weight=tv_weight,
                               learn_labels=learn_labels, label_phases=label_phases,
                               restarts=restarts, label_counts=label_counts, **unrolled_changes)
    public_prior = unrolled.with_(public_prior="decoder", prior_pixel_steps=prior_pixel_steps,
                                  prior_anchor_weight=prior_anchor_weight,
                                  prior_code_swaps=prior_code_swaps,
                                  prior_pixel_lr=prior_pixel_lr)
    return {"unrolled": unrolled, "unrolled-withheld": unrolled,
            "unrolled-copies": unrolled.with_(epoch_prior=epoch_prior),
            "unrolled-rounds": unrolled,
            "unrolled-public-prior": public_prior,
            "unrolled-rounds-public-prior": public_prior,
            "learned-inverter": AttackSettings(attack="learned-inverter", time_budget_s=budget),
            "approximation": AttackSettings(attack="idlg", iterations=50, time_budget_s=budget)}


def settings_id(settings: AttackSettings, method: str, rounds: int) -> str:
    """A short digest of the settings a METHODS key's row was made with (its time budget aside)
    and the rounds it attacked jointly (`rounds` for ROUNDS_METHODS, else 1): rows of one method
    made with other settings (`--consensus-restarts`, `--prior-pixel-lr`, `--rounds`, ...) are
    neither counted as done on resume nor pooled in one table line."""
    joint = rounds if method in ROUNDS_METHODS else 1
    text = repr((settings.with_(time_budget_s=None), joint))
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def epochs_and_batch(images: int, steps: int, design: str) -> tuple[int, int]:
    """(E, B) giving `steps` local steps over `images` samples under a design (module doc).

    Example:
        >>> epochs_and_batch(32, 4, "mini-batch"), epochs_and_batch(32, 4, "full-batch")
        ((1, 8), (4, 32))
    """
    if design == "full-batch":
        return steps, images
    batch = max(images // steps, min(images, SMALLEST_BATCH))
    epochs, remainder = divmod(steps * batch, images)
    if epochs == 0 or remainder or images % batch:
        raise ValueError(f"{steps} steps do not split {images} images into whole batches")
    return epochs, batch


def client_ids(model: str, images: int, steps: int, optimizer: str, client: int,
               train_size: int) -> torch.Tensor:
    """Client `client`'s N train-split indices in a cell: a draw seeded by the cell and the
    client, so the nulls (`experiments.grid_nulls`) can score the very same images later."""
    generator = torch.Generator().manual_seed(zlib.crc32(
        f"{model}/{images}/{steps}/{optimizer}/{client}".encode()))
    return torch.randperm(train_size, generator=generator)[:images]


def client_reply(model: str, images: int, steps: int, optimizer: str, client: int, *,
                 data: Any, design: str = "mini-batch"
                 ) -> tuple[torch.Tensor, ModelSpec, RunConfig, Reply, torch.nn.Module]:
    """Client `client` of a grid cell: its N train-split ids (drawn with a generator seeded by
    the cell and the client, so every script sees the same clients), the model spec, the run
    config the server sent, the client's round-1 reply (a fresh DLG-initialised model trained
    with the real client code) and the trained model."""
    spec = ModelSpec(model, in_channels=int(data.train_x.shape[1]), num_classes=data.num_classes)
    lr = LEARNING_RATES[optimizer]
    epochs, batch = epochs_and_batch(images, steps, design)
    ids, sent, trained = client_update(spec, data, client, images=images, steps=steps,
                                       optimizer=optimizer, epochs=epochs, batch=batch, lr=lr)
    config = RunConfig(update_mode="fedavg", optimizer=optimizer, learning_rate=lr,
                       momentum=0.0, local_epochs=epochs, batch_size=batch)
    reply = Reply(1, client, sent, trained.state_dict(), num_examples=images, local_steps=steps)
    return ids, spec, config, reply, trained


def run_cell(model: str, images: int, steps: int, optimizer: str, *, clients: Iterable[int],
             settings: dict[str, AttackSettings], auditor: Auditor, data: Any,
             oracle_counts: bool = False, methods: Iterable[str] = tuple(METHODS),
             design: str = "mini-batch", on_client: Callable[[list[dict]], None] | None = None,
             rounds: int = 2) -> list[dict]:
    """Rows (one per client and method) of one grid cell, for the given client indices;
    `on_client` gets each client's rows as soon as they are scored. `methods`: keys of METHODS
    (the unrolled attack with the dataset's format granted and/or withheld, the approximation).
    `oracle_counts` replaces the unrolled rows by a diagnostic: the attack given the true class
    histogram (not a threat model: it measures what the label-count errors cost).
    "unrolled-rounds" attacks round 1's reply jointly with the same client's replies of rounds
    2..`rounds` (same samples, a fresh shuffle each round; the global weights of round r + 1 are
    the client's round-r result, as a federation of this one client would send them); every row
    scores the round-1 reconstruction of the same samples ("unrolled-rounds-public-prior": the
    same with the public decoder prior below). "unrolled-public-prior" grants the
    attack the test split as public images (capability public-data, a stronger threat model):
    the dummies are a decoder's outputs, the decoder trained on them (attacks/latent_prior.py)."""
    methods = list(methods)
    lr = LEARNING_RATES[optimizer]
    epochs, batch = epochs_and_batch(images, steps, design)
    rows = []
    for client in clients:
        client_rows = []
        ids, spec, config, reply, trained = client_reply(model, images, steps, optimizer, client,
                                                         data=data, design=design)
        later = (later_rounds(trained, data.train_x[ids], data.train_y[ids], client, rounds,
                              epochs=epochs, batch=batch, lr=lr, optimizer=optimizer, steps=steps)
                 if set(ROUNDS_METHODS) & set(methods) else [])
        truth = ids.tolist()
        auditor.ground_truth = lambda _round, _partition: truth
        true_counts = histogram(data.train_y[ids], spec.num_classes)
        for key in [m for m in METHODS if m in methods]:
            attack = settings[key]
            threat = (ThreatModel().withhold(DATA_FORMAT) if key == "unrolled-withheld"
                      else ThreatModel().grant(PUBLIC_DATA) if key in PUBLIC_METHODS
                      else ThreatModel())
            public = (PublicData(data.test_x, f"{data.name} test split", labels=data.test_y)
                      if key in PUBLIC_METHODS else None)
            plan = AuditPlan(rounds=None, max_clients=1, max_batch=images, settings=attack,
                             workers=0, threat_model=threat)
            name = METHODS[key]
            started = time.monotonic()
            if oracle_counts and key != "approximation":
                job = observe_reply(reply, plan=plan, config=config, spec=spec,
                                    native_size=data.native_size, target_id=name)
                assert not isinstance(job, str), job
                reconstruction = match_update(job.observation, attack.with_(learn_labels=False),
                                              true_counts, seed=0)
                row = score_finished(auditor, [(job, reconstruction)])[0]
                name = f"{name}, true histogram (diagnostic)"
            elif oracle_counts:
                continue
            else:
                jobs = [observe_reply(r, plan=plan, config=config, spec=spec,
                                      native_size=data.native_size, target_id=name)
                        for r in later] if key in ROUNDS_METHODS else []
                refused = [job for job in jobs if isinstance(job, str)]
                if refused:
                    raise RuntimeError(f"a later round is not attacked: {refused[0]}")
                run = (jointly([job.observation for job in jobs], public) if jobs
                       else partial(invert, public=public))
                row = audit_reply(reply, plan=plan, config=config, spec=spec, auditor=auditor,
                                  native_size=data.native_size, public=public,
                                  attack=lambda observations, s, _public: run(observations, s)
                                  ).row
            row.pop("_images", None)
            client_rows.append({"dataset": data.name, "model": model, "images": images,
                                "steps": steps,
                                "epochs": epochs, "local-batch": batch,
                                "optimizer": optimizer, "client": client, "method": name,
                                "rounds": rounds if key in ROUNDS_METHODS else 1,
                                "settings": settings_id(attack, key, rounds),
                                "wall-s": time.monotonic() - started,
                                **{k: v for k, v in row.items()
                                   if k not in ("inferred-labels", "true-labels")}})
        rows += client_rows
        if on_client is not None:
            on_client(client_rows)
    return rows


def client_update(spec: ModelSpec, data: Any, client: int, *, images: int, steps: int,
                  optimizer: str, epochs: int, batch: int, lr: float | None = None
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.nn.Module]:
    """One grid client's round: (its sample ids in the train split, the weights sent, the
    model it returns). N random train images (seeded by the cell and client), a fresh
    DLG-initialised model, trained with the real client code (lr: the optimizer's default)."""
    ids = client_ids(spec.name, images, steps, optimizer, client, len(data.train_x))
    net = build_model(spec, seed=client, dlg_init=True)
    sent = {k: v.detach().clone() for k, v in net.state_dict().items()}
    trained = copy.deepcopy(net)
    train_epochs(trained, data.train_x[ids], data.train_y[ids], epochs=epochs, batch_size=batch,
                 lr=LEARNING_RATES[optimizer] if lr is None else lr, optimizer=optimizer,
                 seed=client)
    return ids, sent, trained


def later_rounds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, client: int,
                 rounds: int, **training: Any) -> list[Reply]:
    """The client's replies of rounds 2..`rounds` on the same samples, each round starting from
    the previous round's result (a federation of this one client) with a fresh shuffle."""
    replies = []
    for round_ in range(2, rounds + 1):
        sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model = copy.deepcopy(model)
        train_epochs(model, x, y, epochs=training["epochs"], batch_size=training["batch"],
                     lr=training["lr"], optimizer=training["optimizer"],
                     seed=client + 1000 * round_)
        replies.append(Reply(round_, client, sent, model.state_dict(), num_examples=len(x),
                             local_steps=training["steps"]))
    return replies


def jointly(other_rounds: list[Observation], public: PublicData | None = None
            ) -> Callable[..., list[Reconstruction]]:
    """An attack callback (as `invert`) that attacks its one observation jointly with
    `other_rounds` (`attacks.unrolled.unrolled`), within the settings' time budget; `public`:
    the public images the threat model grants (read by `settings.public_prior`)."""
    def attack(observations: list[Observation], settings: AttackSettings
               ) -> list[Reconstruction]:
        (observation,) = observations
        deadline = (None if settings.time_budget_s is None
                    else time.monotonic() + settings.time_budget_s)
        return [unrolled(observation, settings, seed=settings.seed, deadline=deadline,
                         other_rounds=other_rounds, public=public)]
    return attack


def _rate(stat: dict[str, float] | None) -> str:
    if not stat:
        return "–"
    return f"{stat['value']:.2f} [{stat['low']:.2f}, {stat['high']:.2f}]"


def design_of(row: dict) -> tuple[int, int]:
    """(E, B) of a row; rows written before the mini-batch design are full-batch."""
    return row.get("epochs", row["steps"]), row.get("local-batch", row["images"])


def _identified(group: list[dict]) -> dict[str, float]:
    """Identified, pooled over the group's clients with a client-clustered interval (rows
    without "images" are older rows: their batch size is N)."""
    return clustered_rate_stat([int(r["identified"]) for r in group],
                               [int(r.get("images") or r["batch-size"]) for r in group])


def _chance(summary: dict) -> str:
    """The strongest null's identified rate and counts, and the one-sided p-value ("–" for rows
    written before the nulls)."""
    test = (summary.get("tests") or {}).get("identified")
    if not test or not test.get("strongest"):
        return "– | –"
    hits, trials = test["counts"][test["strongest"]]
    return f"{test['chance']:.2f} ({hits}/{trials}, {test['strongest']}) | {test['p_value']:.2g}"


def table(rows: list[dict]) -> str:
    """docs/results.md's table: per cell and method, identified pooled over clients with its
    client-clustered 95 % interval and counts, beside its strongest null and the one-sided
    p-value (rows scored with nulls), judge ASR, PSNR/SSIM and the histograms."""
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((row.get("dataset", "digits"), row["model"], row["images"], row["steps"],
                          *design_of(row), row["optimizer"], row["method"],
                          row.get("settings", "")), []).append(row)
    lines = ["| data | model | N | steps | E × B | opt | attack | clients | identified (hits/images) "
             "| chance (strongest null) | p | judge ASR | PSNR | SSIM | histogram exact (clients) | "
             "classes exact | prior: histogram exact |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    methods_settings: dict[str, set[str]] = {}  # each method's settings digests
    for row in rows:
        methods_settings.setdefault(row["method"], set()).add(row.get("settings", ""))
    for (dataset, model, images, steps, epochs, batch, optimizer, method, made_with), group in \
            sorted(cells.items()):
        if len(methods_settings[method]) > 1:  # one method under several settings: say which
            method = f"{method} [settings {made_with or 'unrecorded'}]"
        cell = (f"| {dataset.split('/')[-1]} | {model} | {images} | {steps} | {epochs} × {batch} "
                f"| {optimizer} | {method} | {len(group)} |")
        summary = leakage_summary({"attacks": group})
        identified = _identified(group)
        histogram = summary["histogram"] or {}
        prior = summary["prior-histogram"] or {}
        psnr = [r["psnr"] for r in group if r.get("psnr") is not None]
        ssim = [r["ssim"] for r in group if r.get("ssim") is not None]
        asr = [(r["asr"], int(r.get("images") or r["batch-size"])) for r in group
               if r.get("asr") is not None]
        asr_rate = (sum(a * n for a, n in asr) / sum(n for _, n in asr)) if asr else None
        classes = histogram.get("classes-exact", {}).get("value")
        lines.append(
            f"{cell} {_rate(identified)} ({identified['successes']}/{identified['trials']}) | "
            f"{_chance(summary)} | {'–' if asr_rate is None else f'{asr_rate:.2f}'} | "
            f"{sum(psnr) / len(psnr):.1f} | {sum(ssim) / len(ssim):.2f} | "
            f"{_rate(histogram.get('clients-exact'))} | "
            f"{'–' if classes is None else f'{classes:.2f}'} | {_rate(prior.get('clients-exact'))} |"
            if psnr else f"{cell} not scored | | | | | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits",
                        help="digits, mnist:<dir> (IDX files), or any spec load_dataset takes")
    parser.add_argument("--models", nargs="+", default=["lenet", "lenet-snn"])
    parser.add_argument("--images", nargs="+", type=int, default=[8, 32, 128])
    parser.add_argument("--steps", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "adam"])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--design", choices=DESIGNS, default="mini-batch",
                        help="how E and the batch size give the local steps (module doc)")
    parser.add_argument("--first-client", type=int, default=0,
                        help="start at this client index (to split a cell between processes)")
    parser.add_argument("--iterations", type=int, default=1000,
                        help="Adam steps of the unrolled attack (more identify more: "
                             "docs/results.md, target cell)")
    parser.add_argument("--budget-s", type=float, default=1800.0,
                        help="per attack and client (the run stops early when it is spent)")
    parser.add_argument("--fixed-labels", action="store_true",
                        help="ablation: keep the estimated label histogram fixed (no learned "
                             "soft labels)")
    parser.add_argument("--tv-weight", type=float, default=0.0, help="the unrolled attack's TV prior")
    parser.add_argument("--label-phases", type=int, default=1,
                        help="the unrolled attack's steps in this many phases, labels refined "
                             "after each (attacks/unrolled.py)")
    parser.add_argument("--out", type=Path, default=Path("unrolled-grid.jsonl"))
    parser.add_argument("--table", action="store_true", help="print the table of --out and stop")
    parser.add_argument("--restarts", type=int, default=1,
                        help="the unrolled attack's restarts (the lowest matching loss is kept)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of one client attacked jointly (method unrolled-rounds)")
    parser.add_argument("--epoch-prior", type=float, default=1.0,
                        help="the per-epoch copies' prior weight (method unrolled-copies)")
    parser.add_argument("--label-counts", choices=LABEL_COUNTS, default="dimitrov",
                        help="the unrolled attack's label-count estimate (AttackSettings)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(DEFAULT_METHODS),
                        help="rows per client: the approximation, the unrolled attack with the "
                             "dataset's native resolution (capability data-format), and without")
    parser.add_argument("--prior-pixel-steps", type=int, default=0,
                        help="method unrolled-public-prior: the last this many steps free the "
                             "pixels from the decoder's images (AttackSettings)")
    parser.add_argument("--prior-pixel-lr", type=float, default=None,
                        help="method unrolled-public-prior: the pixel steps' learning rate "
                             "(default: the attack's, 0.1; AttackSettings)")
    parser.add_argument("--consensus-restarts", type=int, default=1,
                        help="the unrolled methods run this many times and merge the runs by "
                             "consensus (attacks/consensus.py; AttackSettings)")
    parser.add_argument("--consensus-steps", type=int, default=0,
                        help="free-pixel steps from the consensus (AttackSettings)")
    parser.add_argument("--prior-anchor-weight", type=float, default=0.0,
                        help="method unrolled-public-prior: the pixel steps keep the codes and "
                             "add this weight x |pixels - decoder(codes)|^2 (AttackSettings)")
    parser.add_argument("--prior-code-swaps", type=int, default=0,
                        help="method unrolled-public-prior: public codes tried per dummy before "
                             "the latent search (AttackSettings)")
    parser.add_argument("--adam-smoothing", type=float, default=0.0,
                        help="Adam clients: the first --adam-smoothing-steps replay Adam with "
                             "its epsilon raised to this x mean sqrt(v_hat) (AttackSettings)")
    parser.add_argument("--adam-smoothing-steps", type=int, default=0)
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                        help="the unrolled attack's learning rate over its steps (AttackSettings)")
    parser.add_argument("--lr-final", type=float, default=0.01,
                        help="the cosine schedule's last rate, a fraction of the first")
    parser.add_argument("--oracle-counts", action="store_true",
                        help="diagnostic only: the unrolled attack given the true histograms")
    args = parser.parse_args()
    rows = ([json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
            if args.out.is_file() else [])
    if args.table:
        print(table(rows))
        return
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, 28)
    judge = load_judge(data, split="test")  # the victims are train-split images: a disjoint judge
    auditor = Auditor(data.train_x, data.train_y, judge.model, public_x=data.test_x,
                      public_y=data.test_y, native_size=data.native_size)
    done = {(r["model"], r["images"], r["steps"], design_of(r), r["optimizer"], r["client"],
             r["method"], r.get("settings")) for r in rows}

    def append(client_rows: list[dict]) -> None:  # each client's rows as soon as they exist
        with args.out.open("a") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in client_rows)

    settings = attack_settings(args.iterations, args.budget_s, args.tv_weight,
                               learn_labels=not args.fixed_labels, label_phases=args.label_phases,
                               epoch_prior=args.epoch_prior, restarts=args.restarts,
                               label_counts=args.label_counts,
                               prior_pixel_steps=args.prior_pixel_steps,
                               prior_anchor_weight=args.prior_anchor_weight,
                               prior_code_swaps=args.prior_code_swaps,
                               prior_pixel_lr=args.prior_pixel_lr,
                               consensus_restarts=args.consensus_restarts,
                               consensus_steps=args.consensus_steps,
                               adam_smoothing=args.adam_smoothing,
                               adam_smoothing_steps=args.adam_smoothing_steps,
                               lr_schedule=args.lr_schedule, lr_final=args.lr_final)
    for model in args.models:
        for images in args.images:
            for steps in args.steps:
                for optimizer in args.optimizers:
                    started = time.monotonic()
                    design = epochs_and_batch(images, steps, args.design)
                    for client in range(args.first_client, args.clients):  # what it lacks
                        todo = [m for m in args.methods
                                if (model, images, steps, design, optimizer, client, METHODS[m],
                                    settings_id(settings[m], m, args.rounds)) not in done]
                        if todo:
                            run_cell(model, images, steps, optimizer, clients=[client],
                                     settings=settings, auditor=auditor, data=data,
                                     oracle_counts=args.oracle_counts, methods=todo,
                                     design=args.design, on_client=append,
                                     rounds=args.rounds)
                    print(f"{model} N={images} steps={steps} {optimizer}: "
                          f"{time.monotonic() - started:.0f} s", flush=True)
    print(table([json.loads(line) for line in args.out.read_text().splitlines() if line]))


if __name__ == "__main__":
    main()
