"""Analytic first-layer recovery: no optimization, the client's input read off its gradient.

A fully connected first layer z = W u + b (after a flatten) gets the gradients
dL/dW = sum_k d_k u_kᵀ and dL/db = sum_k d_k, whatever the layers above it do: sigmoid, ReLU or
spiking neurons with any surrogate. attacks/separable.py factors them into the inputs u_k:

- direct encoding (and ANNs): u is the image itself, the same on every time step, so one row per
  sample; batch 1 is exact (x = dW[i] / db[i]); a batch of B is exact for every sample that lights
  a pixel no other sample lights, and the others are reported as missing.
- Poisson (or event-frame) encoding: u is one spike frame per time step, so up to B*T rows: the
  exact spike trains the network saw. Their mean over T is the empirical spike rate, the best
  estimate of the pixel intensities there is. For batch 1 the time order of the frames is found by
  matching the full gradient over the orders; for batch > 1 frames are grouped into samples by
  overlap (a heuristic, said in the message).

Conv-first models go to attacks/rgap.py. The attacker's criterion is exact consistency: the
reconstruction's `matching_loss` is the gradient distance its inputs and labels produce on the
victim, ~0 for an exact recovery.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from scipy.cluster.hierarchy import fcluster, linkage
from torch import nn

from attacks.idlg import infer_labels, last_linear_names
from attacks.matching import Victim, final_loss, rebuild_victim
from attacks.readout import readout_features, readout_module
from attacks.rgap import recover_conv_chain
from attacks.runner import relative_loss
from attacks.separable import Factors, separable_factors
from attacks.settings import AttackSettings
from attacks.spiking import model_logits
from attacks.types import NotDeterminedError, Observation, Reconstruction, Recovery, Status

# A recovered pixel may leave [0, 1] (a spike frame: {0, 1}) by this much and still count as exact.
VALUE_TOLERANCE = 1e-3
# At most this many time orders of the recovered frames are tried (T! for T = 6).
MAX_ORDERS = 720
# Sequences with silent or repeated steps are enumerated only up to this many fillings.
MAX_ENUMERATED = 100_000
# A relative gradient mismatch this small means the inputs and labels are exact (float32 gradients).
EXACT_RELATIVE_LOSS = 1e-9

def first_parametrized(model: nn.Module) -> tuple[str, nn.Module]:
    """Name and module of the first layer with parameters.

    Raises:
        NotDeterminedError: the model has no parameters.
    """
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            return name, module
    raise NotDeterminedError("the model has no parameters")


def _plausible(rows: torch.Tensor, binary: bool) -> torch.Tensor:
    """Which rows look like real inputs: pixels in [0, 1], or spikes in {0, 1}."""
    if binary:
        return ((rows - rows.round()).abs() <= VALUE_TOLERANCE).all(1) & (rows.round() >= 0).all(1) \
            & (rows.round() <= 1).all(1)
    return (rows >= -VALUE_TOLERANCE).all(1) & (rows <= 1 + VALUE_TOLERANCE).all(1)


def _factors(observation: Observation, layer: str) -> Factors:
    weight = observation.gradients.get(f"{layer}.weight")
    bias = observation.gradients.get(f"{layer}.bias")
    if weight is None or bias is None:
        raise NotDeterminedError(f"the analytic attack needs the gradients of {layer}.weight and "
                                 f"{layer}.bias (a first layer with a bias)")
    spec = observation.model_spec
    per_step = spec.is_spiking and spec.encoding != "direct"
    max_rows = observation.batch_size * (spec.time_steps if per_step else 1)
    return separable_factors(weight, bias, max_rows)


def recover_images(observation: Observation, factors: Factors) -> Recovery:
    """One image per sample (ANNs, direct encoding). Samples that left no separable trace are
    filled with the mean of the recovered ones and named in the note."""
    spec = observation.model_spec
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    batch = observation.batch_size
    good = factors.rows[_plausible(factors.rows, binary=False)]
    if len(good) == 0:
        raise NotDeterminedError(f"none of the {factors.rank} factors is an image in [0, 1] "
                                 f"(residual {factors.weight_residual:.1e}): not separable")
    images = good[:batch].clamp(0.0, 1.0)
    missing = batch - len(images)
    note = f"{len(images)} of {batch} samples recovered as images in [0, 1]"
    if missing:
        images = torch.cat([images, images.mean(0, keepdim=True).expand(missing, -1)])
        note += f"; {missing} filled with their mean (no separable trace)"
    return images.float().reshape(batch, *shape), note


def _sequence_orders(frames: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """Candidate [T, D] sequences from K <= T distinct frames: each frame used at least once, the
    other steps silent or repeating a frame; at most MAX_ORDERS of them (beyond that, for long
    sequences, only the first orders are tried, and past MAX_ENUMERATED fillings only the order
    found)."""
    count = len(frames)
    symbols = torch.cat([frames, torch.zeros_like(frames[:1])])  # index `count` is a silent step
    if count == steps:
        orders: Iterator[tuple[int, ...]] = itertools.permutations(range(count))
    elif (count + 1) ** steps <= MAX_ENUMERATED:
        orders = (order for order in itertools.product(range(count + 1), repeat=steps)
                  if set(range(count)) <= set(order))
    else:
        orders = iter([tuple(range(count)) + (count,) * (steps - count)])
    return [symbols[list(order)] for order in itertools.islice(orders, MAX_ORDERS)]


def _best_order(victim: Victim, sequences: list[torch.Tensor], labels: torch.Tensor,
                settings: AttackSettings) -> tuple[torch.Tensor, float]:
    """The candidate sequence whose gradient matches the observed one best."""
    def loss_of_logits(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    scored = [(final_loss(victim, s, loss_of_logits, settings), i) for i, s in enumerate(sequences)]
    loss, index = min(scored)
    return sequences[index], loss


def recover_sequence(observation: Observation, factors: Factors, victim: Victim,
                     settings: AttackSettings) -> Recovery:
    """Per-step inputs [T, B, C, H, W] (Poisson spikes, event frames)."""
    spec = observation.model_spec
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    steps, batch = spec.time_steps, observation.batch_size
    binary = spec.encoding == "poisson"
    plausible = _plausible(factors.rows, binary) if binary else (factors.rows >= -VALUE_TOLERANCE).all(1)
    frames = factors.rows[plausible]
    frames = frames.round() if binary else frames.clamp(min=0.0)
    if len(frames) == 0:
        raise NotDeterminedError(f"none of the {factors.rank} factors is a spike frame: not separable")
    kind = "spike frames" if binary else "frames"
    if batch == 1 and len(frames) <= steps:
        labels = infer_labels(observation)
        sequence, _ = _best_order(victim, [s.float().reshape(steps, 1, *shape)
                                           for s in _sequence_orders(frames, steps)], labels, settings)
        return sequence, (f"{len(frames)} distinct {kind} recovered for {steps} steps; time order "
                          "by gradient matching")
    groups = _group_frames(frames, batch)
    sequence = torch.zeros(steps, batch, frames.shape[1], dtype=frames.dtype)
    for sample, members in enumerate(groups):
        for step, frame in enumerate(members[:steps]):
            sequence[step, sample] = frames[frame]
    note = (f"{len(frames)} of up to {batch * steps} {kind} recovered; grouped into {batch} "
            "samples by overlap and ordered arbitrarily (heuristic)")
    return sequence.float().reshape(steps, batch, *shape), note


def _group_frames(frames: torch.Tensor, groups: int) -> list[list[int]]:
    """Frames of one sample overlap (they come from the same image): average-linkage clustering on
    1 - cosine similarity into `groups` clusters (largest first; missing ones are empty)."""
    if len(frames) <= 1 or groups == 1:
        return [list(range(len(frames)))] + [[] for _ in range(groups - 1)]
    unit = frames / frames.norm(dim=1, keepdim=True).clamp(min=1e-12)
    distance = (1.0 - unit @ unit.T).clamp(min=0.0)
    condensed = distance[torch.triu_indices(len(frames), len(frames), 1).unbind()].numpy()
    assignment = fcluster(linkage(condensed, method="average"), t=groups, criterion="maxclust")
    clusters = [[i for i, a in enumerate(assignment) if a == label] for label in sorted(set(assignment))]
    clusters.sort(key=len, reverse=True)
    return (clusters + [[] for _ in range(groups)])[:groups]


def labels_from_head(victim: Victim, inputs: torch.Tensor, observation: Observation) -> torch.Tensor:
    """Labels of known inputs: the last linear layer's gradient is Gᵀ [h, 1] with G = (p - y) / B,
    and h, p follow from the inputs, so y = p - B G. Falls back to iDLG's rule when the batch's
    features are not linearly independent."""
    if observation.batch_size == 1:
        return infer_labels(observation)
    return labels_from_features(victim, readout_features(victim.model, inputs, forward=model_logits),
                                observation)


def labels_from_features(victim: Victim, features: torch.Tensor, observation: Observation
                         ) -> torch.Tensor:
    """`labels_from_head` given the readout features h [B, F] of the batch (in any order)."""
    weight_name, bias_name = last_linear_names(victim.model)
    batch = observation.batch_size
    if batch == 1 or bias_name not in observation.gradients or len(features) != batch:
        return infer_labels(observation)
    features = features.double()
    head = readout_module(victim.model)
    with torch.no_grad():  # the head is linear in the (time-averaged) features
        probabilities = F.softmax(F.linear(features, head.weight.double(), head.bias.double()), -1)
    design = torch.cat([features, torch.ones(batch, 1, dtype=features.dtype)], dim=1)
    if torch.linalg.matrix_rank(design) < batch:
        return infer_labels(observation)
    observed = torch.cat([observation.gradients[weight_name].double(),
                          observation.gradients[bias_name].double().unsqueeze(1)], dim=1)
    per_sample = (torch.linalg.pinv(design).T @ observed.T)  # [B, classes] = G
    return (probabilities - batch * per_sample).argmax(-1)


def recover_linear_first(observation: Observation, victim: Victim, layer: str,
                         settings: AttackSettings) -> Recovery:
    """Inputs of a model whose first parametrized layer is fully connected."""
    factors = _factors(observation, layer)
    spec = observation.model_spec
    if spec.is_spiking and spec.encoding != "direct":
        inputs, note = recover_sequence(observation, factors, victim, settings)
    else:
        inputs, note = recover_images(observation, factors)
    return inputs, (f"{note} (weight residual {factors.weight_residual:.1e}, "
                    f"bias residual {factors.bias_residual:.1e})")


def _recover_conv_first(observation: Observation, victim: Victim, layer: str,
                        settings: AttackSettings) -> Recovery:
    return recover_conv_chain(observation, victim)


# first layer type -> how its input is recovered
FIRST_LAYER_RECOVERY: dict[type[nn.Module], Callable[[Observation, Victim, str, AttackSettings], Recovery]] = {
    nn.Linear: recover_linear_first,
    nn.Conv2d: _recover_conv_first,
}


def analytic(observation: Observation, settings: AttackSettings, *, seed: int,
             deadline: float | None = None) -> Reconstruction:
    """Recover the client's inputs in closed form (deterministic: `seed` and `deadline` unused).

    Raises:
        NotDeterminedError: the gradient does not determine the input (the runner records the
            attack as FAILED with this message).
    """
    del seed, deadline
    started = time.monotonic()
    victim = rebuild_victim(observation)
    layer, module = first_parametrized(victim.model)
    recover = next((fn for kind, fn in FIRST_LAYER_RECOVERY.items() if isinstance(module, kind)), None)
    if recover is None:
        raise NotDeterminedError(f"no analytic recovery for a first layer of type "
                                 f"{type(module).__name__}; expected one of "
                                 f"{[k.__name__ for k in FIRST_LAYER_RECOVERY]}")
    inputs, note = recover(observation, victim, layer, settings)
    labels = labels_from_head(victim, inputs, observation)

    def loss_of_logits(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    loss = final_loss(victim, inputs, loss_of_logits, settings)
    reconstruction = Reconstruction(
        target_id=observation.target_id, attack="analytic", inputs=inputs, labels=labels,
        matching_loss=loss, status=Status.OK if math.isfinite(loss) else Status.DIVERGED,
        seconds=time.monotonic() - started)
    relative = relative_loss(reconstruction, observation, settings)
    verdict = "exact" if relative <= EXACT_RELATIVE_LOSS else "not exact"
    reconstruction.message = f"{verdict} (relative gradient mismatch {relative:.1e}): {note}"
    return reconstruction
