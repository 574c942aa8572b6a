"""The unrolled FedAvg attack (Dimitrov et al., TMLR 2022; breaching's `local_update` user).

The server knows the update w_sent - w_returned and how the client trained (optimizer and its
hyper-parameters, epochs, batch size, num-examples). It makes N dummy images (N = num-examples)
with labels from the label-count estimate (`attacks/label_counts.py`), replays the client's local
training on them (`attacks/local_training.py`, differentiable) and moves the dummies until the
replayed update matches the observed one (cosine or L2, `settings.distance`). With
`settings.learn_labels` each dummy's label is a soft label optimized alongside it, started on the
estimated histogram: the matching loss is far lower at the true histogram than at a wrong one, so
the labels move towards it (DLG's joint labels, here from a good start).

Batch assignment: by default every epoch reuses the same N dummies. Without the client's shuffle
the replay visits them in their own order each epoch; when the threat model grants the client's
randomness (`LocalTraining.shuffle_seed`), it visits them in the client's order. With
`settings.epoch_prior` > 0 and the shuffle unknown, each epoch gets its own copy of the dummies,
tied by an order-invariant prior (`attacks/epoch_copies.py`, Dimitrov et al.'s epoch-order-invariant
replay). FedSGD with a batch > 1 is the special case of one epoch and one batch. ANN and SNN alike
(the SNN's surrogate gradients through its T steps); a Poisson-encoded SNN is replayed on its
expected spikes (the rates), since its draws are the client's secret.

When the threat model grants the dataset's format (`Observation.native_size`, capability
data-format) and the images were upsampled from a smaller native size, the dummies live at that
size and go through the dataset's own resize (`fedsnn.core.image_format.resize`) before the replay:
far fewer unknowns (digits: 64 per image instead of 784) for the same equations.

When the threat model grants public images and `settings.public_prior` is "decoder", the
optimized variables are latents z and the dummies decoder(z), a decoder trained on the public
images (`attacks/latent_prior.py`): a learned prior, under that stronger threat model only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from attacks import consensus, epoch_copies
from attacks.label_counts import labels_from_counts
from attacks.label_counts_rlu import estimate_label_counts
from attacks.label_refinement import refine_labels
from attacks.latent_prior import latent_start, public_autoencoder, swap_codes
from attacks.local_training import client_batches, simulate_update
from attacks.matching import DISTANCES, optimize, total_variation
from attacks.rate_decoder import CapabilityError, PublicData, require_public
from attacks.settings import AttackSettings
from attacks.spiking import as_model_input, finalize, init_dummy, project_
from attacks.types import Observation, Reconstruction, Status
from fedsnn.core.image_format import resize, upsampled_from
from fedsnn.core.models import build_model
from fedsnn.core.models.encoders import DirectEncoder


# Starting logit of a dummy's estimated class when labels are learned (softmax 0.69 of 10 classes):
# confident enough to start from the estimate, soft enough for Adam (lr 0.1) to move in ~30 steps.
LABEL_LOGIT = 3.0
# Steps between two re-assignments of the per-epoch copies (an N x N assignment per copy).
REMATCH_EVERY = 10


def replay_model(observation: Observation) -> nn.Module:
    """The victim architecture for the replay (weights come from the observation); a spiking
    model reads the dummy images as rates on every step."""
    model = build_model(observation.model_spec)
    if getattr(model, "is_spiking", False):
        model.encoder = DirectEncoder(model.time_steps)
    return model.train()


def input_format(observation: Observation) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The map from native-resolution dummies to the model's input when the observation carries
    the dataset's native size (capability data-format) and it is smaller than the model's input;
    None otherwise (the dummies are full-size images)."""
    size = observation.model_spec.image_size
    if not upsampled_from(observation.native_size, size):
        return None
    return lambda images: resize(images, size)


def dummy_labels(counts: torch.Tensor, seed: int) -> torch.Tensor:
    """Labels of the N dummies: the inferred histogram, in a seeded random order so each
    replayed batch gets a mix of classes, as a shuffled client batch does."""
    labels = labels_from_counts(counts)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def unrolled(observation: Observation, settings: AttackSettings, *, seed: int,
             deadline: float | None = None, other_rounds: Sequence[Observation] = (),
             public: PublicData | None = None) -> Reconstruction:
    """One restart of the unrolled attack, its labels from the inferred class histogram. With
    learned labels and `settings.label_phases` > 1 the steps are split into phases: after each,
    the labels are refined and the next phase starts from its dummies, with soft labels reset on
    the refined ones (images that co-adapted to a wrong label get to follow its correction).

    `other_rounds`: the same client's replies in other rounds, on the same samples from other
    global weights (a fixed partition); the dummies then match every round's update at once
    (the mean of the rounds' matching losses): R rounds give R times the equations.
    `public`: the public images the threat model grants, read only with `settings.public_init`
    (the dummies start from their classes' public means, `public_start`) or
    `settings.public_prior` (the dummies are a public-trained decoder's outputs, started from
    the codes of public images of their classes, `attacks.latent_prior`).

    Raises:
        CapabilityError: `settings.public_init` without labelled public images, or
            `settings.public_prior` without public images."""
    if settings.consensus_restarts > 1:
        return _consensus(observation, settings, seed=seed, deadline=deadline,
                          other_rounds=other_rounds, public=public)
    counts = estimate_label_counts(observation, settings.label_counts, seed=seed)
    phases = min(settings.label_phases, settings.iterations) if settings.learn_labels else 1
    if _uses_copies(observation, settings):
        phases = 1  # a phase's start would be the E copies, its labels the merged N
    started = time.monotonic()
    labels, history = dummy_labels(counts, seed), []
    start = (public_start(observation, settings, labels, public, seed=seed)
             if settings.public_init else None)
    decode = None
    if settings.public_prior == "decoder":
        side = dummy_side(observation)
        autoencoder = public_autoencoder(public, observation.model_spec.in_channels, side)
        assert public is not None
        decode = autoencoder.decode
        start = latent_start(autoencoder, public, labels, side=side, seed=seed)
        if settings.prior_code_swaps:
            start = swap_codes(start, labels, autoencoder, public,
                               replay_loss(observation, settings, labels, decode), side=side,
                               tries=settings.prior_code_swaps, seed=seed)
    iterations = settings.iterations - (settings.prior_pixel_steps if decode is not None else 0)
    # each _match below is one phase: the phases (warm, smoothed Adam, label, pixel) run here
    one_phase = settings.with_(warm_steps=0, prior_pixel_steps=0, prior_anchor_weight=0.0,
                               prior_latent_refine=True, prior_pixel_lr=None,
                               adam_smoothing=0.0, adam_smoothing_steps=0)
    if settings.warm_steps > 0 and warm_applies(observation, settings):
        warm, start, _ = _match(first_epoch(observation), one_phase.with_(
            iterations=settings.warm_steps), labels, seed=seed,
            start=start,
            decode=decode, deadline=deadline, other_rounds=[first_epoch(o) for o in other_rounds])
        history, labels, iterations = warm.loss_history, warm.labels, iterations - settings.warm_steps
        if warm.status != Status.OK:
            warm.seconds = time.monotonic() - started
            return warm
    if settings.adam_smoothing_steps > 0:  # a smoothed Adam replay first, then the client's own
        smooth, start, _ = _match(
            observation, one_phase.with_(iterations=settings.adam_smoothing_steps), labels,
            seed=seed, start=start, decode=decode, deadline=deadline, other_rounds=other_rounds,
            adam_eps_scale=settings.adam_smoothing)
        history, labels = history + smooth.loss_history, smooth.labels
        iterations -= settings.adam_smoothing_steps
        if smooth.status != Status.OK:
            smooth.loss_history, smooth.seconds = history, time.monotonic() - started
            return smooth
    phases = min(phases, iterations)
    for phase in range(phases):
        steps = iterations // phases + (iterations % phases if phase == 0 else 0)
        reconstruction, start, positions = _match(
            observation, one_phase.with_(iterations=steps),
            labels, seed=seed,
            start=start, decode=decode,
            deadline=deadline, other_rounds=other_rounds)
        if decode is None or not settings.prior_pixel_steps or settings.prior_latent_refine:
            reconstruction = refine_reconstruction(observation, reconstruction, settings,
                                                   deadline=deadline, positions=positions,
                                                   other_rounds=other_rounds)
        history += reconstruction.loss_history
        labels = reconstruction.labels
        if reconstruction.status != Status.OK:
            break
    if decode is not None and settings.prior_pixel_steps and reconstruction.status == Status.OK:
        codes = start
        with torch.no_grad():  # "latent then pixels": free pixels from the decoder's best images
            start = decode(codes)
        reconstruction, _, positions = _match(
            observation, one_phase.with_(iterations=settings.prior_pixel_steps,
                                         lr=settings.prior_pixel_lr or settings.lr),
            labels, seed=seed, start=start, deadline=deadline, other_rounds=other_rounds,
            anchor=(decode, codes, settings.prior_anchor_weight)
            if settings.prior_anchor_weight > 0 else None)
        reconstruction = refine_reconstruction(observation, reconstruction, settings,
                                               deadline=deadline, positions=positions,
                                               other_rounds=other_rounds)
        history += reconstruction.loss_history
    reconstruction.loss_history = history
    reconstruction.seconds = time.monotonic() - started
    return reconstruction


def _consensus(observation: Observation, settings: AttackSettings, *, seed: int,
               deadline: float | None, other_rounds: Sequence[Observation],
               public: PublicData | None) -> Reconstruction:
    """`settings.consensus_restarts` runs of `unrolled` (seeds seed, seed + 1, ...) merged by
    `attacks.consensus.aligned_mean`, then `settings.consensus_steps` free-pixel steps from the
    merge, labels held at the lowest-loss run's (not refined again). A run that does not end ok
    (time budget, failure) is returned as it is, the steps of the runs before it in its history
    (an unfinished consensus counts every step it took)."""
    started = time.monotonic()
    single = settings.with_(consensus_restarts=1, consensus_steps=0)
    runs = []
    for k in range(settings.consensus_restarts):
        run = unrolled(observation, single, seed=seed + k, deadline=deadline,
                       other_rounds=other_rounds, public=public)
        if run.status != Status.OK:
            run.loss_history = [v for done in runs for v in done.loss_history] + run.loss_history
            run.seconds = time.monotonic() - started
            return run
        runs.append(run)
    anchor = consensus.anchor_run(runs)
    merged = consensus.aligned_mean(runs)
    history = [value for run in runs for value in run.loss_history]
    if not settings.consensus_steps:
        return replace(anchor, inputs=merged, loss_history=history,
                       matching_loss=images_loss([observation, *other_rounds], single)(
                           merged, anchor.labels),
                       seconds=time.monotonic() - started,
                       message=f"consensus of {len(runs)} runs; {anchor.message}")
    pixels = single.with_(iterations=settings.consensus_steps, public_prior="none",
                          prior_pixel_steps=0, prior_pixel_lr=None, prior_latent_refine=True,
                          prior_anchor_weight=0.0, prior_code_swaps=0, warm_steps=0,
                          adam_smoothing=0.0, adam_smoothing_steps=0, learn_labels=False)
    side = dummy_side(observation)
    start = merged if merged.shape[-1] == side else resize(merged, side)
    reconstruction, _, _ = _match(observation, pixels, anchor.labels, seed=seed, start=start,
                                  deadline=deadline, other_rounds=other_rounds)
    reconstruction.loss_history = history + reconstruction.loss_history
    reconstruction.seconds = time.monotonic() - started
    reconstruction.message = (f"consensus of {len(runs)} runs, {settings.consensus_steps} "
                              f"steps from their mean; {anchor.message}")
    return reconstruction


def images_loss(observations: Sequence[Observation], settings: AttackSettings
                ) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """loss(images, labels): the matching loss of model-input images with hard labels against
    every observed round (`rounds_distance`, built once; no graph kept: for merges that only
    compare values)."""
    distance = rounds_distance(observations, settings)

    def loss(images: torch.Tensor, labels: torch.Tensor) -> float:
        with torch.enable_grad():
            return float(distance(as_model_input(images, settings), labels, False).detach())

    return loss


def replay_loss(observation: Observation, settings: AttackSettings, labels: torch.Tensor,
                decode: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], float]:
    """The matching loss of latent codes: the replay of decode(codes) with hard `labels`
    against the observed update (no graph kept: for searches that only compare values)."""
    distance = update_distance(observation, settings)
    expand = input_format(observation)

    def loss(codes: torch.Tensor) -> float:
        with torch.no_grad():
            images = decode(codes)
        images = images if expand is None else expand(images)
        with torch.enable_grad():
            return float(distance(as_model_input(images, settings), labels, False).detach())

    return loss


def warm_applies(observation: Observation, settings: AttackSettings) -> bool:
    """Whether `settings.warm_steps` changes anything: FedAvg replies of several epochs (one
    epoch is then a cheaper replay), without per-epoch copies."""
    training = observation.training
    return (training is not None and training.update_mode == "fedavg" and training.epochs > 1
            and not _uses_copies(observation, settings))


def first_epoch(observation: Observation) -> Observation:
    """The observation with its local training cut to the first epoch, the update unchanged:
    under the cosine distance (scale-free) a one-epoch replay matches the update's direction,
    which the E epochs' update nearly keeps while the weights move little."""
    assert observation.training is not None
    return replace(observation, training=replace(observation.training, epochs=1))


def dummy_side(observation: Observation) -> int:
    """The dummies' side: the native size when the data format is granted and smaller, else the
    model's input size."""
    return (observation.native_size if input_format(observation) is not None  # type: ignore[return-value]
            else observation.model_spec.image_size)


def public_start(observation: Observation, settings: AttackSettings, labels: torch.Tensor,
                 public: PublicData | None, *, seed: int) -> torch.Tensor:
    """Dummies started from the mean public image of each one's label, at the dummies'
    resolution (the native size when the data format is granted), plus the "gray" init's
    seeded noise: dummies of one class would otherwise get identical gradients forever.

    Raises:
        CapabilityError: no public images granted, or none labelled, or of another shape."""
    if public is None or public.labels is None:
        raise CapabilityError("public_init needs labelled public images (capability "
                              "public-data); the threat model grants none")
    public = require_public(public, observation.model_spec)
    images = resize(public.images.float(), dummy_side(observation))
    classes = observation.model_spec.num_classes
    means = torch.stack([images[public.labels == c].mean(0) if bool((public.labels == c).any())
                         else images.mean(0) for c in range(classes)])
    noise = init_dummy((len(labels), *means.shape[1:]), settings.with_(init="gray"),
                       torch.Generator().manual_seed(seed)).detach() - 0.5
    start = means[labels] + noise
    project_(start, settings)
    return start


def refine_reconstruction(observation: Observation, reconstruction: Reconstruction,
                          settings: AttackSettings, *, deadline: float | None = None,
                          positions: torch.Tensor | None = None,
                          other_rounds: Sequence[Observation] = ()) -> Reconstruction:
    """With learned labels, the reconstruction with its labels moved sample by sample while the
    matching loss drops (`attacks/label_refinement.py`), images fixed; unchanged otherwise, or
    when the deadline has passed or the reconstruction has no finite loss. `positions`: the
    per-epoch copies' layout (`attacks.epoch_copies.layout`) the replay uses, if any;
    `other_rounds` as in `unrolled`."""
    if (not settings.learn_labels or not math.isfinite(reconstruction.matching_loss)
            or (deadline is not None and time.monotonic() >= deadline)):
        return reconstruction
    started = time.monotonic()
    batches = None if positions is None else epoch_copies.copy_batches(observation.training)
    distance = rounds_distance([observation, *other_rounds], settings, batches=batches)
    images = as_model_input(reconstruction.inputs, settings)
    place = (lambda x: x) if positions is None else (lambda x: x[positions])

    def loss_of_targets(targets: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            return distance(place(images), place(targets), targets.requires_grad)

    refined = refine_labels(loss_of_targets, reconstruction.labels,
                            observation.model_spec.num_classes, deadline=deadline)
    changes = ", ".join(f"sample {i}: {old} -> {new}" for i, old, new in refined.changes)
    note = (f"label refinement: {len(refined.changes)} label change(s)"
            + (f" ({changes})" if changes else ""))
    return replace(reconstruction, labels=refined.labels, matching_loss=refined.loss,
                   message="; ".join(m for m in (reconstruction.message, note) if m),
                   seconds=reconstruction.seconds + time.monotonic() - started)


def update_distance(observation: Observation, settings: AttackSettings, *,
                    batches: list[torch.Tensor] | None = None, adam_eps_scale: float = 0.0
                    ) -> Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]:
    """distance(images, targets, create_graph): `settings.distance` (in float64: 1 - cosine of
    near-parallel float32 updates rounds to exactly 0) between the update replayed on model
    inputs with labels or class-probability targets and the observed one. `batches`: the
    replay's visiting order (default `client_batches`); `adam_eps_scale`: a smoothed Adam
    replay (`simulate_update`), 0 for the client's own."""
    training, delta = observation.training, observation.delta
    model = replay_model(observation)
    names = [n for n, _ in model.named_parameters() if n in delta]
    params = {n: observation.global_state[n].float() for n in names}
    observed = [delta[n].double() for n in names]
    batches = client_batches(training) if batches is None else batches
    distance = DISTANCES[settings.distance]

    def replayed_distance(images: torch.Tensor, targets: torch.Tensor, create_graph: bool
                          ) -> torch.Tensor:
        replayed = simulate_update(model, params, images, targets, training, batches=batches,
                                   create_graph=create_graph, adam_eps_scale=adam_eps_scale)
        return distance([replayed[n].double() for n in names], observed)

    return replayed_distance


def rounds_distance(observations: Sequence[Observation], settings: AttackSettings, *,
                    batches: list[torch.Tensor] | None = None, adam_eps_scale: float = 0.0
                    ) -> Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]:
    """`update_distance` of one client's replies in several rounds (same samples, each from its
    own global weights), averaged; one reply's own distance when there is one."""
    distances = [update_distance(o, settings, batches=batches, adam_eps_scale=adam_eps_scale)
                 for o in observations]
    if len(distances) == 1:
        return distances[0]

    def mean_distance(images: torch.Tensor, targets: torch.Tensor, create_graph: bool
                      ) -> torch.Tensor:
        return torch.stack([d(images, targets, create_graph) for d in distances]).mean()

    return mean_distance


def match_update(observation: Observation, settings: AttackSettings, counts: torch.Tensor, *,
                 seed: int, deadline: float | None = None) -> Reconstruction:
    """The dummies' optimization starting from a given class histogram (as `optimize_inputs`
    takes iDLG's labels); diagnostics call it with other histograms to measure what wrong counts
    cost. With `settings.learn_labels` the labels move too (soft labels whose logits start at
    LABEL_LOGIT on the histogram's classes) and the returned labels are their argmax.

    Raises:
        ValueError: the observation lacks the update or the client's local training.
    """
    return _match(observation, settings, dummy_labels(counts, seed), seed=seed,
                  deadline=deadline)[0]


def match_from(observation: Observation, settings: AttackSettings, labels: torch.Tensor,
               start: torch.Tensor, *, seed: int = 0, adam_eps_scale: float = 0.0,
               other_rounds: Sequence[Observation] = ()) -> torch.Tensor:
    """The images the dummies' optimization ends at from `start` (at the dummies' resolution),
    the labels held fixed; for diagnostics that start it where no attacker can
    (`experiments/replay_basin.py`) or from a merge of restarts (`experiments/restart_union.py`).
    `adam_eps_scale` as in `_match`, `other_rounds` as in `unrolled`."""
    reconstruction, _, _ = _match(observation, settings.with_(learn_labels=False), labels,
                                  seed=seed, start=start, adam_eps_scale=adam_eps_scale,
                                  other_rounds=other_rounds)
    return reconstruction.inputs


def _uses_copies(observation: Observation, settings: AttackSettings) -> bool:
    return settings.epoch_prior > 0 and epoch_copies.copies_apply(observation.training)


def _match(observation: Observation, settings: AttackSettings, labels: torch.Tensor, *,
           seed: int, start: torch.Tensor | None = None, deadline: float | None = None,
           other_rounds: Sequence[Observation] = (),
           decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
           anchor: tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, float] | None = None,
           adam_eps_scale: float = 0.0
           ) -> tuple[Reconstruction, torch.Tensor, torch.Tensor | None]:
    """`match_update` from one label per dummy and, optionally, dummies to start from (at the
    dummies' own resolution); also returns the best dummies at that resolution and, with
    per-epoch copies, the layout of the merged samples in the copies' replay (else None).
    `other_rounds` as in `unrolled`. With `decode` the optimized variables are latents (`start`
    is required) and the dummies `decode(latents)`; the returned "best dummies" are latents.
    `anchor` (decoder, codes, weight): the codes are optimized too and the objective adds
    weight * mean((dummies - decoder(codes))^2) (`AttackSettings.prior_anchor_weight`).
    `adam_eps_scale`: the replay is a smoothed Adam (`AttackSettings.adam_smoothing`), and so is
    the returned matching loss."""
    started = time.monotonic()
    training, delta = observation.training, observation.delta
    if training is None or delta is None:
        raise ValueError("the unrolled attack needs the update itself and the client's local "
                         "training (optimizer, epochs, batch size, num-examples)")
    spec = observation.model_spec
    copies = training.epochs if _uses_copies(observation, settings) else 1
    n = training.num_examples
    if copies > 1:  # each epoch its own copy, its labels in its own seeded order
        labels = torch.cat([labels] + [labels[torch.randperm(
            n, generator=torch.Generator().manual_seed(seed + e))] for e in range(1, copies)])
    for other in other_rounds:  # each round may have its own shuffle (its own batches)
        if (other.delta is None or other.training is None
                or replace(other.training, shuffle_seed=None) != replace(training, shuffle_seed=None)):
            raise ValueError("rounds attacked jointly need the same local training and samples "
                             f"(num-examples {training.num_examples}); got {other.training}")
    distance = rounds_distance([observation, *other_rounds], settings, batches=(
        epoch_copies.copy_batches(training) if copies > 1 else None),
        adam_eps_scale=adam_eps_scale)
    logits = (LABEL_LOGIT * F.one_hot(labels, spec.num_classes).float()).requires_grad_(True)
    expand = input_format(observation)
    side = observation.native_size if expand is not None else spec.image_size
    shape = (copies * n, spec.in_channels, side, side)
    dummy = (init_dummy(shape, settings, torch.Generator().manual_seed(seed)) if start is None
             else start.detach().clone().requires_grad_(True))
    pixels = (lambda v: v) if decode is None else decode  # the optimized variables -> dummies
    perm = torch.arange(n).repeat(copies, 1)
    steps = [0]

    def matching(variables: torch.Tensor, label_logits: torch.Tensor,
                 anchored: bool = True) -> torch.Tensor:
        inputs = pixels(variables)
        images = inputs if expand is None else expand(inputs)
        # cross-entropy takes class probabilities as targets: the soft labels' replay
        targets = label_logits.softmax(-1) if settings.learn_labels else labels
        loss = distance(as_model_input(images, settings), targets, True)
        if settings.tv_weight > 0:
            loss = loss + settings.tv_weight * total_variation(inputs)
        if anchor is not None and anchored:  # the reported matching loss leaves it out
            anchor_decode, _, weight = anchor
            loss = loss + weight * (inputs - anchor_decode(codes)).pow(2).mean()
        if copies > 1:
            loss = loss + settings.epoch_prior * epoch_copies.invariance_prior(
                inputs.view(copies, n, *inputs.shape[1:]), perm)
        return loss

    def merged_loss(merged: torch.Tensor, label_logits: torch.Tensor,
                     positions: torch.Tensor) -> float:
        images = merged if expand is None else expand(merged)
        targets = label_logits.softmax(-1) if settings.learn_labels else labels[:n]
        loss = distance(as_model_input(images, settings)[positions], targets[positions], True)
        if settings.tv_weight > 0:
            loss = loss + settings.tv_weight * total_variation(merged)
        return float(loss.detach())

    def objective() -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if copies > 1 and steps[0] % REMATCH_EVERY == 0:
            perm.copy_(_matched(dummy, logits, copies))
        steps[0] += 1
        return matching(dummy, logits), (dummy.detach().clone(), logits.detach().clone())

    codes = None if anchor is None else anchor[1].detach().clone().requires_grad_(True)
    variables = ([dummy, logits] if settings.learn_labels else [dummy]) + (
        [] if codes is None else [codes])
    outcome = optimize(variables, objective, settings, project=(
        (lambda: project_(dummy, settings)) if decode is None else (lambda: None)),
                       deadline=deadline)
    best, best_logits = outcome.best
    if decode is None:
        project_(best, settings)
    positions = None
    if copies > 1:  # the reconstruction: the matched copies' mean, its soft labels their mean
        perm = _matched(best, best_logits, copies)
        best = epoch_copies.aligned(best.view(copies, n, *best.shape[1:]), perm).mean(0)
        best_logits = epoch_copies.aligned(best_logits.view(copies, n, -1), perm).mean(0)
        labels = best_logits.argmax(-1) if settings.learn_labels else labels[:n]
        positions = epoch_copies.layout(perm)
    with torch.enable_grad():
        if positions is None:
            final = float(matching(best.detach() if decode is not None
                                   else finalize(best, settings), best_logits,
                                   anchored=False).detach())
        else:  # the merged samples in the copies' replay, the TV prior on them
            final = merged_loss(finalize(best, settings), best_logits, positions)
    with torch.no_grad():
        images = pixels(best)
    inputs = finalize(images if expand is None else expand(images), settings)
    if settings.learn_labels:
        labels = best_logits.argmax(-1)
    return Reconstruction(target_id=observation.target_id, attack="unrolled", inputs=inputs,
                          labels=labels, matching_loss=final, loss_history=outcome.history,
                          status=outcome.status, message=outcome.message,
                          seconds=time.monotonic() - started), best, positions


def _matched(dummy: torch.Tensor, logits: torch.Tensor, copies: int) -> torch.Tensor:
    """The copies' current assignment to copy 0 (`attacks.epoch_copies.match_to_first`)."""
    n = dummy.shape[0] // copies
    return epoch_copies.match_to_first(dummy.detach().view(copies, n, -1),
                                       logits.detach().argmax(-1).view(copies, n))
