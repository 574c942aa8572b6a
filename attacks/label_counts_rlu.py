"""RLU label counts (Chen & Vikalo, "Recovering Labels from Local Updates in Federated
Learning", arXiv 2405.00955): a least-squares fit of the output layer's update.

A sample of class n moves the head z = W h + b by the mean-loss gradient (p - e_n) on the bias
and (p - e_n) hᵀ on the weights (p its softmax, h its readout input: a spiking model's
time-averaged rate map, attacks/readout.py). With the batches' class mix taken as the client's
(batch histogram ~ counts z / N), the expected gradient of local step t is linear in z:

    E[g_t] = sum_n (z_n / N) G_t[n],   G_t[n] = (S_t[n] - e_n ; E_t[p hᵀ | n] - e_n E_t[h | n]),

S_t[n] the mean softmax of class-n inputs at step t's weights (RLU's "erroneous confidence"
matrix). The update is a weighted sum of the step gradients, u_k = delta_k / lr =
sum_t c_{t,k} g_{t,k}, so u = A z with A[k, n] = sum_t c_{t,k} G_t[n]_k / N: RLU solves it
for z >= 0 with sum z = N (non-negative least squares with the total as a heavy extra row),
rounded to integers summing to N. Our adaptation to what the threat model grants:

- The trajectory. RLU simulates how the model evolves over the local epochs (Monte Carlo on
  its logits). Here the client's training is replayed with its known optimizer, learning rate,
  epochs and batch size on stand-in samples labelled by the current estimate of the counts, and
  the replayed path is bent to end where the observed update ends (`simulate_trajectory`);
  G_t is taken at each step's weights. The fit is repeated on the path its counts imply
  (`FITS` fits, starting from the uniform histogram): the counts are re-estimated with the
  trajectory. (The straight line between the sent and returned weights, as
  `attacks/label_counts.py` takes after Dimitrov et al., misses the first steps' fast change of
  the DLG-initialised LeNet's softmax.)
- The class-conditional statistics. RLU takes them on labelled auxiliary data: here public
  images with their labels when `public-data` is granted. Without it the probe is noise
  images, which carry no class: S_t[n] is then the same for every n, and the fit reduces to
  the sum-constrained least squares of the bias and weight equations on one mean softmax.
- The optimizer. SGD (with momentum) is linear in the gradients: c_{t,k} = sum_{s >= t} mu^(s-t).
  Adam is not; RLU's derivation covers SGD-type updates. Here Adam is linearised around its
  denominators: the step at s is lr * m̂_s / D_{s,k}, with m̂_s = sum_{t <= s}
  (1 - b1) b1^(s-t) g_t / (1 - b1^s) and D_{s,k} = sqrt(v̂_{s,k}) + eps, so
  c_{t,k} = sum_{s >= t} (1 - b1) b1^(s-t) / ((1 - b1^s) D_{s,k}), the D_{s,k} read from the
  replay's optimizer state. Under Adam the head's update of a class the model already
  under-predicts is about +lr per step whatever its count (m̂ / sqrt(v̂) ~ 1), so little is
  left to fit: measured weak (experiments/label_count_accuracy.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import nnls

from attacks.label_counts import (infer_label_counts, observed_delta, observed_training,
                                  probe_inputs)
from attacks.idlg import last_linear_names
from attacks.local_training import ADAM_BETAS, ADAM_EPS, client_batches
from attacks.readout import readout_module
from attacks.types import LocalTraining, Observation
from fedsnn.core.metrics import round_to_total
from fedsnn.core.models import build_model
from fedsnn.core.training import make_optimizer

FITS = 3  # fits, each on the trajectory replayed with the previous fit's counts
TOTAL_WEIGHT = 100.0  # weight of the "counts sum to N" row, relative to the normalized update


def probe_outputs(model: torch.nn.Module, probe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax [P, C], readout input h [P, F]) of the probe (h time-averaged for a spiking
    model: its head averages W s_t + b over T, so its gradient is (p - y) mean_t(s_t)ᵀ)."""
    captured: list[torch.Tensor] = []
    handle = readout_module(model).register_forward_hook(
        lambda _m, args, _out: captured.append(args[0].detach()))
    try:
        with torch.no_grad():
            logits = model(probe)
    finally:
        handle.remove()
    features = captured[-1]
    features = features.mean(0) if features.dim() == 3 else features
    return F.softmax(logits.double(), dim=-1), features.double().flatten(1)


def simulate_trajectory(observation: Observation, delta: dict[str, torch.Tensor],
                        training: LocalTraining, inputs: torch.Tensor, labels: torch.Tensor
                        ) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """The weights w_t before each local step t, and (Adam) each step's second-moment state.

    The client's training is replayed with its optimizer, learning rate and batch size on
    stand-in samples (`inputs`, `labels`); its path w_0 - D_t is then bent so that it ends where
    the observed update does: w_t = w_0 - D_t - (t / T)(delta - D_T). The replay gives the
    shape of the path (fast early steps while the softmax is far from the labels, as RLU's
    simulation does); the observation pins its end."""
    model = build_model(observation.model_spec).train()
    sent = {k: v.detach().float().clone() for k, v in observation.global_state.items()}
    model.load_state_dict(sent)
    optimizer = make_optimizer(training.optimizer if training.update_mode == "fedavg" else "sgd",
                               model.parameters(), lr=training.learning_rate,
                               momentum=training.momentum if training.update_mode == "fedavg"
                               else 0.0)
    parameters = dict(model.named_parameters())
    path, moments = [], []
    for batch in client_batches(training):
        path.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        optimizer.zero_grad()
        F.cross_entropy(model(inputs[batch]), labels[batch]).backward()
        optimizer.step()
        moments.append({name: optimizer.state[p]["exp_avg_sq"].detach().clone()
                        for name, p in parameters.items() if "exp_avg_sq" in optimizer.state[p]})
    end = model.state_dict()
    steps = len(path)
    bent = []
    for t, state in enumerate(path):
        bent.append({k: v - (t / steps) * (delta[k].float() - (sent[k] - end[k]))
                     if k in delta else v for k, v in state.items()})
    return bent, moments


def stand_ins(probe: torch.Tensor, probe_labels: torch.Tensor | None, counts: torch.Tensor,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """N samples for the replay with labels following `counts` (integers), in random order:
    a probe input of the label's class (any probe input for noise or a class it lacks)."""
    labels = torch.repeat_interleave(torch.arange(len(counts)), counts.long())
    labels = labels[torch.randperm(len(labels), generator=generator)]
    picks = torch.stack([_pick(probe_labels, int(c), generator) if probe_labels is not None
                         else torch.randint(len(probe), (), generator=generator) for c in labels])
    return probe[picks], labels


def class_gradients(softmax: torch.Tensor, features: torch.Tensor,
                    labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """G[n] = E[(p - e_n) ; (p - e_n) hᵀ | class n] as [C, C + C*F] (bias then weight rows);
    without probe labels every class shares the probe's mean p and p hᵀ."""
    rows = []
    eye = torch.eye(num_classes, dtype=torch.float64)
    for n in range(num_classes):
        chosen = slice(None) if labels is None or not (labels == n).any() else labels == n
        p, h = softmax[chosen], features[chosen]
        error = p - eye[n]  # [P_n, C]
        outer = (error.unsqueeze(2) * h.unsqueeze(1)).mean(0)  # E[(p - e_n) hᵀ]: [C, F]
        rows.append(torch.cat([error.mean(0), outer.flatten()]))
    return torch.stack(rows)


def sgd_weights(training: LocalTraining, width: int) -> torch.Tensor:
    """c_{t,k} of SGD with momentum mu: sum_{s >= t} mu^(s-t), the same for every coordinate."""
    mu = training.momentum if training.update_mode == "fedavg" else 0.0
    steps = training.steps
    weights = torch.tensor([sum(mu ** k for k in range(steps - t)) for t in range(steps)],
                           dtype=torch.float64)
    return weights.unsqueeze(1).expand(steps, width)


def adam_weights(denominators: torch.Tensor) -> torch.Tensor:
    """c_{t,k} = sum_{s >= t} (1 - b1) b1^(s-t) / ((1 - b1^s) D_{s,k}) for D [steps, K]."""
    beta1, _ = ADAM_BETAS
    steps = len(denominators)
    weights = torch.zeros_like(denominators)
    carried = torch.zeros(denominators.shape[1], dtype=torch.float64)
    for s in range(steps - 1, -1, -1):  # c_s = (1 - b1) / ((1 - b1^(s+1)) D_s) + b1 c_(s+1)
        term = (1 - beta1) / ((1 - beta1 ** (s + 1)) * denominators[s])
        carried = term + beta1 * carried
        weights[s] = carried
    return weights


def _pick(labels: torch.Tensor, cls: int, generator: torch.Generator) -> torch.Tensor:
    pool = (labels == cls).nonzero().flatten()
    pool = pool if len(pool) else torch.arange(len(labels))
    return pool[torch.randint(len(pool), (1,), generator=generator)][0]


def solve_counts(design: torch.Tensor, target: torch.Tensor, total: int) -> torch.Tensor:
    """argmin ||A z - u||² over z >= 0 with sum z = N (a heavily weighted extra row), the
    system scaled so that ||u|| = 1; real-valued [C]."""
    scale = float(target.norm()) or 1.0
    a = torch.cat([design / scale, TOTAL_WEIGHT * torch.ones(1, design.shape[1],
                                                              dtype=torch.float64) / total])
    b = torch.cat([target / scale, torch.tensor([TOTAL_WEIGHT], dtype=torch.float64)])
    solution, _ = nnls(a.numpy(), b.numpy(), maxiter=50 * design.shape[1])
    return torch.from_numpy(np.asarray(solution))


def denominators(moments: list[dict[str, torch.Tensor]], bias_name: str, weight_name: str,
                 width: int) -> torch.Tensor:
    """D_{s,k} = sqrt(v̂_{s,k}) + eps of the head's coordinates [steps, width] (bias first)."""
    _, beta2 = ADAM_BETAS
    rows = [torch.cat([m[bias_name].double(), m[weight_name].double().flatten()])[:width]
            for m in moments]
    return torch.stack([(v / (1 - beta2 ** (s + 1))).sqrt() + ADAM_EPS
                        for s, v in enumerate(rows)])


def rlu_label_counts(observation: Observation, *, probe: torch.Tensor | None = None,
                     probe_labels: torch.Tensor | None = None, seed: int = 0,
                     rows: str = "head", fits: int = FITS) -> torch.Tensor:
    """The client's class histogram [num_classes], integers summing to num-examples (RLU).

    Args:
        observation: the update, the sent weights and the local training it came from.
        probe: inputs the statistics are taken on (default: noise images); with
            `probe_labels`, labelled public images (the class-conditional statistics of RLU).
        probe_labels: the probe's classes (only where the threat model grants public data).
        seed: seeds the default probe and the replay's stand-in samples.
        rows: "head" fits the bias and weight updates, "bias" the bias update alone.
        fits: fits, each on the trajectory (and Adam state) replayed with the previous counts.

    Raises:
        ValueError: the model has no linear head with a bias, or the update lacks it, or an
            unknown optimizer or `rows`.
    """
    if rows not in ("head", "bias"):
        raise ValueError(f"Expected `rows` to be 'head' or 'bias' but got {rows!r}")
    training = observed_training(observation)
    weight_name, bias_name = last_linear_names(build_model(observation.model_spec))
    delta = observed_delta(observation)
    if bias_name is None or bias_name not in delta or weight_name not in delta:
        raise ValueError(f"RLU needs the update of the last layer ({weight_name!r}, {bias_name!r})")
    if training.update_mode == "fedavg" and training.optimizer not in ("sgd", "adam"):
        raise ValueError(f"RLU cannot model optimizer {training.optimizer!r}; expected sgd or adam")
    adam = training.update_mode == "fedavg" and training.optimizer == "adam"
    total, num_classes = training.num_examples, observation.model_spec.num_classes
    probe = probe_inputs(observation, 64, seed) if probe is None else probe
    generator = torch.Generator().manual_seed(seed)
    model = build_model(observation.model_spec).train()
    target = torch.cat([delta[bias_name].double(), delta[weight_name].double().flatten()])
    width = num_classes if rows == "bias" else len(target)
    target = target[:width] / training.learning_rate
    counts = round_to_total(torch.ones(num_classes), total)
    for _ in range(fits):
        inputs, labels = stand_ins(probe, probe_labels, counts, generator)
        path, moments = simulate_trajectory(observation, delta, training, inputs, labels)
        per_step = []
        for state in path:  # G_t at each step's weights: [steps, C, width]
            model.load_state_dict(state)
            per_step.append(class_gradients(*probe_outputs(model, probe), probe_labels,
                                            num_classes)[:, :width])
        weights = (adam_weights(denominators(moments, bias_name, weight_name, width)) if adam
                   else sgd_weights(training, width))
        design = (weights.unsqueeze(1) * torch.stack(per_step)).sum(0).T / total  # [width, C]
        solution = solve_counts(design, target, total)
        if float(solution.sum()) == 0:
            break
        counts = round_to_total(solution, total)
    return counts


def estimate_label_counts(observation: Observation, method: str, *, seed: int = 0) -> torch.Tensor:
    """The class histogram by `AttackSettings.label_counts`: "dimitrov" (attacks/label_counts.py),
    "rlu" (this module, noise probe: the attacks that call it get no public data) or "uniform"
    (N / C per class, reading nothing: under Adam it was closer to the truth than either)."""
    if method == "uniform":
        num_classes = observation.model_spec.num_classes
        return round_to_total(torch.ones(num_classes), observed_training(observation).num_examples)
    if method == "rlu":
        return rlu_label_counts(observation, seed=seed)
    if method == "dimitrov":
        return infer_label_counts(observation, seed=seed)
    raise ValueError(f"Expected a label-count method 'dimitrov', 'rlu' or 'uniform' but got "
                     f"{method!r}")
