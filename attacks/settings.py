"""Public settings of a gradient-inversion attack: one frozen, validated dataclass.

Everything here is the attacker's own choice (optimizer, iterations, priors, spike-domain
options). Nothing here describes the victim: that is the `Observation`'s job.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

ATTACK_NAMES = ("dlg", "idlg", "grnn", "analytic", "smooth", "strongest", "unrolled",
                "rate-decoder", "learned-inverter")
OPTIMIZERS = ("lbfgs", "adam")
GENERATOR_OPTIMIZERS = ("rmsprop", "adam", "lbfgs")
DISTANCES = ("l2", "cosine")
INITS = ("gray", "normal", "randn")
TIME_MODES = ("shared", "per-step")
THRESHOLD_MODES = ("none", "post", "in")
RATE_MODES = ("expected", "sample")
SMOOTH_KEEPS = ("last", "real-loss")
LABEL_COUNTS = ("dimitrov", "rlu", "uniform")
INVERTER_DECODERS = ("mlp", "conv")
LR_SCHEDULES = ("constant", "cosine")
# the unrolled attack's dummies: free pixels, or a public-trained decoder's outputs
PUBLIC_PRIORS = ("none", "decoder")

# Learning rates used when `lr` is None, by (optimizer, optimizes a generator): L-BFGS lr 1 as in
# DLG/iDLG; Adam 0.1 on dummy inputs; GRNN's generator RMSprop(lr 1e-4, momentum 0.99) as in its code.
DEFAULT_LR = {("lbfgs", False): 1.0, ("adam", False): 0.1,
              ("rmsprop", True): 1e-4, ("adam", True): 1e-4, ("lbfgs", True): 1.0}


class AttackSettingsError(ValueError):
    """An attack setting that cannot work; the message names the field and the accepted values."""


@dataclass(frozen=True)
class AttackSettings:
    """How to attack (never what is attacked).

    Attributes:
        attack: "dlg" | "idlg" | "grnn".
        iterations: optimizer steps per restart (for L-BFGS each step makes up to
            `lbfgs_max_eval` loss evaluations).
        optimizer: optimizer of the dummy inputs (DLG, iDLG): "lbfgs" (default) or "adam" (moves
            on IF networks where L-BFGS stalls). GRNN uses `grnn_optimizer` instead.
        lr: learning rate; None picks the usual one (L-BFGS 1.0, Adam 0.1, GRNN's RMSprop 1e-4).
        lbfgs_max_eval: loss evaluations per L-BFGS step (torch's `max_iter`; 20 in DLG's code).
        distance: gradient distance, "l2" (sum over layers of squared differences, no 0.5 factor)
            or "cosine" (1 - cosine similarity of all gradients concatenated).
        tv_weight: weight of the total-variation prior on the reconstruction (0 disables it).
        restarts: independent starts; the one with the lowest gradient-matching loss is kept.
        accept_loss: stop restarting as soon as a restart's matching loss, divided by the squared
            norm of the observed gradient for "l2" (as is for "cosine"), is at or below this; None
            runs every restart. An attacker-side criterion: it needs no ground truth.
        stop_loss: end a run early once its matching loss, on the scale of `accept_loss`, is at or
            below this (it has converged); None runs every iteration (or until L-BFGS stalls).
        seed: seeds every starting point (restart r uses seed + r).
        time_budget_s: wall-clock budget per observation (all restarts); None = unlimited.
        init: dummy initialisation: "gray" (0.5 + N(0, init_std) clipped to [0, 1], the study's
            near-uniform gray), "normal" (N(init_mean, init_std), the spike modality's small
            positive init) or "randn" (N(0, 1), the original DLG code).
        init_mean: mean of the "normal" init (spike modality).
        init_std: standard deviation of the "gray" and "normal" inits.
        time_mode: spiking models only: "shared" optimizes one [B,C,H,W] dummy replicated over the T
            steps (direct encoding); "per-step" optimizes a [T,B,C,H,W] dummy.
        threshold_mode: "none"; "post" binarizes at `threshold` after the optimization; "in"
            binarizes on every step with a straight-through gradient.
        threshold: the binarization threshold theta.
        clamp: keep the dummy in the pixel range [0, 1] after every step (image modality).
        non_negative: keep the dummy >= 0 after every step (spike modality, no upper clamp).
        lbfgs_projection: also apply `clamp` / `non_negative` between L-BFGS steps (as some DLG
            code does). Off by default: moving L-BFGS's iterate behind its back corrupts its
            curvature memory, and runs that converge without it stall with it.
        grnn_noise_dim: size of GRNN's fixed noise vector.
        grnn_optimizer: optimizer of GRNN's generator: "rmsprop" (momentum 0.99, as in its code),
            "adam" or "lbfgs".
        line_search: L-BFGS with a strong-Wolfe line search (needs a differentiable loss, e.g.
            the smooth attack's); False takes fixed steps of `lr` as DLG's code does.
        smooth_k_start, smooth_k_end, smooth_stages: the smooth attack's spike sharpness k, annealed
            geometrically from start to end over this many stages (attacks/smooth.py). Defaults
            from a calibration on MNIST: stopping at a soft k recovers far more than annealing to
            a near-hard one (docs/results.md, "Adaptive attacks on spiking networks").
        smooth_keep: which stage the smooth attack returns: "last" (the end of the schedule) or
            "real-loss" (the stage whose result matches the observed gradient best on the real,
            hard victim; on spiking MLPs it prefers sharper, worse reconstructions).
        decoder_epochs, decoder_hidden: the rate-decoder attack's MLP (features -> hidden ->
            hidden -> pixels) and its training epochs over the public images.
        inverter_clients, inverter_epochs: client updates the learned inverter simulates on
            public draws to learn from, and its decoder's and counter's training epochs over
            their rows (attacks/learned_inverter.py). 12,000 and 20 since 2026-12-08 (2,000 and
            the rate decoder's 40 before): more simulated updates read more images, for the same
            fitting time (docs/results.md, "a conv decoder").
        inverter_hidden: the width of the learned inverter's MLP decoder (row -> hidden -> hidden
            -> pixels; `inverter_decoder` "mlp", and the pair decoder). 2048 since 2026-12-07 (1024 before, shared with the rate decoder): on fresh
            held-out clients it identified more (lenet-snn, MNIST, batch 8: 36.2 % vs 32.2 %;
            docs/results.md, "a wider decoder").
        inverter_decoder: the learned inverter's image decoder: "conv" (the row laid out as
            the feature map the head reads, then convolutions and upsamplings,
            attacks/map_decoder.py; the MLP where the head reads no map, as in lenet5), the
            default since 2026-12-08, or "mlp" (row -> hidden -> hidden -> pixels,
            `inverter_hidden` wide; docs/results.md, "a conv decoder").
        inverter_shift: the learned inverter moves each public sample it simulates on by a
            random offset of at most this many pixels (0: as drawn). 2 since 2026-12-07: on
            fresh held-out clients it identified more at every cell measured (lenet-snn, MNIST,
            batch 8: 32.7 % vs 29.5 %; batch 32: 2.5 % vs 0.9 %; digits, batch 8: 31.9 % vs
            13.1 %; docs/results.md, "shifted public samples").
        inverter_rotate: the learned inverter also rotates each public sample it simulates on by
            a random angle of at most this many degrees (bilinear; 0: not rotated). Opt-in: 10
            degrees gained nothing on development clients (docs/results.md, "rotations").
        inverter_pairs: the learned inverter also learns to decode a class's row into two of its
            samples, used where the class holds two or more (opt-in, docs/results.md).
        learn_labels: the unrolled attack also optimizes each dummy's soft label (logits
            initialised on the label-count estimate, DLG's joint labels) and returns the argmax,
            refined sample by sample while the matching loss drops (attacks/label_refinement.py);
            False keeps the estimated histogram fixed (attacks/unrolled.py).
        label_phases: with learn_labels, the unrolled attack's steps split into this many
            phases, the labels refined after each and the next phase's soft labels reset on
            them (attacks/unrolled.py, `unrolled`).
        epoch_prior: the unrolled attack on FedAvg replies of several epochs of mini-batches, the
            shuffle unknown: > 0 gives each epoch its own copy of the dummies, tied by an
            order-invariant prior of this weight (attacks/epoch_copies.py, Dimitrov et al.);
            0 keeps one set of dummies in one batch assignment for every epoch.
        label_counts: the unrolled attack's class-histogram estimate: "dimitrov" (the
            interpolated softmax and the bias change, attacks/label_counts.py) or "rlu" (the
            least-squares fit of the head's update on a replayed trajectory,
            attacks/label_counts_rlu.py), both on noise probes; or "uniform" (N / C per class,
            the update unread: the null the estimates are measured against).
        lr_schedule: the first-order optimizers' learning rate over a run's `iterations`:
            "constant" (`lr` throughout) or "cosine" (a linear warm-up over `lr_warmup` steps,
            then half a cosine from `lr` down to `lr * lr_final`; L-BFGS ignores it).
        lr_warmup: steps of linear warm-up of the "cosine" schedule (0: none).
        lr_final: the "cosine" schedule's last learning rate as a fraction of `lr`.
        plateau_window, plateau_tol: stop a run early once the best matching loss of its last
            `plateau_window` steps is less than a fraction `plateau_tol` below the best loss
            before them (the loss has plateaued; an attacker-side rule, no ground truth);
            `plateau_window` 0 runs every iteration.
        public_init: the unrolled attack starts each dummy from the mean of the public images
            of its estimated class at the dummies' resolution (plus the "gray" init's noise, so
            same-class dummies differ); needs labelled public images (capability public-data).
        public_prior: the unrolled attack's dummies: free pixels ("none") or the outputs of a
            decoder trained on the public images, the search in its latent space ("decoder",
            attacks/latent_prior.py; needs public images, capability public-data; not with
            `public_init` or per-epoch copies).
        prior_pixel_steps: with `public_prior`, the last this many of `iterations` free the
            pixels, starting from the decoder's best images ("latent then pixels"); 0: none.
        prior_anchor_weight: with `prior_pixel_steps`, the pixel steps keep the codes as
            variables too and add this weight times the mean squared distance between the
            pixels and decoder(codes): the pixels stay near the decoder's range and the codes
            follow them (a GIAS-style relaxation, Jeon et al. 2021); 0: free pixels.
        prior_latent_refine: with `prior_pixel_steps`, the labels are refined after the latent
            phase too (`refine_reconstruction`); False starts the pixel phase from the latent
            phase's learned labels, saving the refinement's replays (on MNIST at N = 32 they cost
            as much as 300-900 attack steps); the labels are refined after the pixel phase either
            way.
        prior_pixel_lr: with `prior_pixel_steps`, the pixel phase's learning rate (None: `lr`,
            as the latent phase). The pixel phase starts from the decoder's images, near the
            client's ones when the latent search went well; the attack's lr 0.1 throws even a
            start beside the truth out of its basin under SGD (docs/results.md, "no basin under
            Adam"), a smaller one keeps it there.
        consensus_restarts: the unrolled attack runs this many times (seeds seed, seed + 1,
            ...) and merges them by consensus (`attacks/consensus.py`, a simple form of
            GradInversion's group consistency, Yin et al. 2021): each run's samples aligned to
            the lowest-loss run's by optimal assignment and averaged; 1: one run, no merge. Not
            with `restarts` > 1 (which keeps the lowest-loss run instead).
        consensus_steps: with `consensus_restarts` > 1, this many free-pixel steps from the
            merged images (labels held at the lowest-loss run's), on top of every run's
            `iterations`; 0: the average as it is.
        prior_code_swaps: with `public_prior`, before the latent search each dummy's starting
            code is swapped, one dummy at a time, for the best of this many codes of public
            images of its class by the joint matching loss (`latent_prior.swap_codes`); 0: none.
        warm_steps: the first this many of the unrolled attack's `iterations` match the update
            with a replay of the client's first local epoch only (cheaper by the epochs; needs
            the "cosine" distance, which ignores the update's scale); 0: every step replays
            all epochs. No effect on single-epoch replies.
        adam_smoothing: replays of Adam clients (the unrolled attack): Adam's epsilon raised to
            this times each tensor's mean sqrt(v_hat), a soft sign the dummies can follow
            (`attacks.local_training.simulate_update`, `adam_eps_scale`); 0: the client's Adam.
        adam_smoothing_steps: with `adam_smoothing`, the first this many of `iterations` replay
            the smoothed Adam, the rest the client's own (so the final matching loss is the
            client's replay's); > 0 exactly when `adam_smoothing` is.
        rate_mode: Poisson victims: optimize rates fed as expected spikes ("expected") or as
            Bernoulli spikes with a straight-through gradient ("sample"); attacks/parametrize.py.
    """

    attack: str = "dlg"
    iterations: int = 300
    optimizer: str = "lbfgs"
    lr: float | None = None
    lbfgs_max_eval: int = 20
    distance: str = "l2"
    tv_weight: float = 0.0
    restarts: int = 1
    accept_loss: float | None = None
    stop_loss: float | None = None
    seed: int = 0
    time_budget_s: float | None = None
    init: str = "gray"
    init_mean: float = 0.1
    init_std: float = 0.01
    time_mode: str = "shared"
    threshold_mode: str = "none"
    threshold: float = 0.5
    clamp: bool = True
    non_negative: bool = False
    lbfgs_projection: bool = False
    grnn_noise_dim: int = 128
    grnn_optimizer: str = "rmsprop"
    line_search: bool = False
    smooth_k_start: float = 1.0
    smooth_k_end: float = 2.0
    smooth_stages: int = 2
    smooth_keep: str = "last"
    rate_mode: str = "expected"
    decoder_epochs: int = 40
    decoder_hidden: int = 1024
    inverter_clients: int = 12000
    inverter_epochs: int = 20
    inverter_hidden: int = 2048
    inverter_decoder: str = "conv"
    inverter_shift: int = 2
    inverter_rotate: float = 0.0
    inverter_pairs: bool = False
    learn_labels: bool = False
    label_phases: int = 1
    epoch_prior: float = 0.0
    label_counts: str = "dimitrov"
    lr_schedule: str = "constant"
    lr_warmup: int = 0
    lr_final: float = 0.01
    plateau_window: int = 0
    plateau_tol: float = 0.01
    public_init: bool = False
    warm_steps: int = 0
    public_prior: str = "none"
    prior_pixel_steps: int = 0
    prior_anchor_weight: float = 0.0
    prior_code_swaps: int = 0
    prior_latent_refine: bool = True
    prior_pixel_lr: float | None = None
    consensus_restarts: int = 1
    consensus_steps: int = 0
    adam_smoothing: float = 0.0
    adam_smoothing_steps: int = 0

    def __post_init__(self) -> None:
        for name, value, accepted in (("attack", self.attack, ATTACK_NAMES),
                                      ("optimizer", self.optimizer, OPTIMIZERS),
                                      ("grnn_optimizer", self.grnn_optimizer, GENERATOR_OPTIMIZERS),
                                      ("distance", self.distance, DISTANCES),
                                      ("init", self.init, INITS),
                                      ("time_mode", self.time_mode, TIME_MODES),
                                      ("threshold_mode", self.threshold_mode, THRESHOLD_MODES),
                                      ("rate_mode", self.rate_mode, RATE_MODES),
                                      ("smooth_keep", self.smooth_keep, SMOOTH_KEEPS),
                                      ("label_counts", self.label_counts, LABEL_COUNTS),
                                      ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
                                      ("public_prior", self.public_prior, PUBLIC_PRIORS),
                                      ("inverter_decoder", self.inverter_decoder,
                                       INVERTER_DECODERS)):
            if value not in accepted:
                raise AttackSettingsError(
                    f"Expected `{name}` to be one of {list(accepted)} but got {value!r}")
        for name in ("iterations", "restarts", "lbfgs_max_eval", "grnn_noise_dim", "smooth_stages",
                     "label_phases", "decoder_epochs", "decoder_hidden", "inverter_clients",
                     "inverter_epochs", "inverter_hidden"):
            if int(getattr(self, name)) < 1:
                raise AttackSettingsError(f"Expected `{name}` to be >= 1 but got {getattr(self, name)}")
        if not 0 < self.smooth_k_start <= self.smooth_k_end:
            raise AttackSettingsError("Expected 0 < `smooth_k_start` <= `smooth_k_end` but got "
                                      f"{self.smooth_k_start} and {self.smooth_k_end}")
        if self.lr is not None and not self.lr > 0:
            raise AttackSettingsError(f"Expected `lr` to be > 0 or None but got {self.lr}")
        if self.lr_warmup < 0 or self.plateau_window < 0:
            raise AttackSettingsError("Expected `lr_warmup` and `plateau_window` to be >= 0 but "
                                      f"got {self.lr_warmup} and {self.plateau_window}")
        if not 0 <= self.lr_final <= 1 or not 0 <= self.plateau_tol < 1:
            raise AttackSettingsError("Expected 0 <= `lr_final` <= 1 and 0 <= `plateau_tol` < 1 "
                                      f"but got {self.lr_final} and {self.plateau_tol}")
        if not 0 <= self.warm_steps < self.iterations:
            raise AttackSettingsError("Expected 0 <= `warm_steps` < `iterations` but got "
                                      f"{self.warm_steps} and {self.iterations}")
        if self.warm_steps and self.distance != "cosine":
            raise AttackSettingsError("Expected `warm_steps` 0 with distance "
                                      f"{self.distance!r} (a one-epoch replay needs 'cosine')")
        if self.public_prior != "none" and (self.public_init or self.epoch_prior > 0):
            raise AttackSettingsError("Expected `public_prior` 'none' with `public_init` or "
                                      "per-epoch copies (`epoch_prior` > 0)")
        if not 0 <= self.prior_pixel_steps < self.iterations or (
                self.prior_pixel_steps and self.public_prior == "none"):
            raise AttackSettingsError("Expected 0 <= `prior_pixel_steps` < `iterations`, and 0 "
                                      f"without `public_prior`; got {self.prior_pixel_steps}")
        if self.prior_anchor_weight < 0 or (self.prior_anchor_weight and not self.prior_pixel_steps):
            raise AttackSettingsError("Expected `prior_anchor_weight` >= 0, and 0 without "
                                      f"`prior_pixel_steps`; got {self.prior_anchor_weight}")
        if not self.prior_latent_refine and not self.prior_pixel_steps:
            raise AttackSettingsError("Expected `prior_latent_refine` True without "
                                      "`prior_pixel_steps` (there is no latent phase to skip)")
        if self.prior_pixel_lr is not None and (not self.prior_pixel_lr > 0
                                                or not self.prior_pixel_steps):
            raise AttackSettingsError("Expected `prior_pixel_lr` None or > 0, and None without "
                                      f"`prior_pixel_steps`; got {self.prior_pixel_lr}")
        if self.consensus_restarts < 1 or self.consensus_steps < 0 or (
                self.consensus_restarts > 1 and (self.restarts > 1 or self.attack != "unrolled")
        ) or (self.consensus_steps and self.consensus_restarts == 1):
            raise AttackSettingsError(
                "Expected `consensus_restarts` >= 1 (above 1 only for the unrolled attack, with "
                "`restarts` 1) and `consensus_steps` >= 0, 0 without a consensus; got "
                f"{self.consensus_restarts}, {self.consensus_steps} (restarts {self.restarts})")
        if self.prior_code_swaps < 0 or (self.prior_code_swaps and self.public_prior == "none"):
            raise AttackSettingsError("Expected `prior_code_swaps` >= 0, and 0 without "
                                      f"`public_prior`; got {self.prior_code_swaps}")
        later_steps = self.iterations - self.warm_steps - self.prior_pixel_steps
        if self.adam_smoothing < 0 or not 0 <= self.adam_smoothing_steps < later_steps or (
                (self.adam_smoothing_steps > 0) != (self.adam_smoothing > 0)):
            raise AttackSettingsError(
                "Expected `adam_smoothing` >= 0 and 0 <= `adam_smoothing_steps` < `iterations` "
                "less warm and pixel steps, both 0 or both above 0; got "
                f"{self.adam_smoothing}, {self.adam_smoothing_steps}")
        if self.epoch_prior < 0:
            raise AttackSettingsError(f"Expected `epoch_prior` to be >= 0 but got {self.epoch_prior}")
        if self.inverter_shift < 0 or not 0 <= self.inverter_rotate <= 180:
            raise AttackSettingsError(
                "Expected `inverter_shift` >= 0 and 0 <= `inverter_rotate` <= 180 but got "
                f"{self.inverter_shift}, {self.inverter_rotate}")
        if self.tv_weight < 0 or self.init_std < 0:
            raise AttackSettingsError("Expected `tv_weight` and `init_std` to be >= 0 but got "
                                      f"{self.tv_weight} and {self.init_std}")
        for name in ("accept_loss", "stop_loss"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise AttackSettingsError(
                    f"Expected `{name}` to be >= 0 or None but got {getattr(self, name)}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise AttackSettingsError(
                f"Expected `time_budget_s` to be > 0 or None but got {self.time_budget_s}")

    @property
    def effective_optimizer(self) -> str:
        """The optimizer that actually runs (GRNN's generator has its own)."""
        return self.grnn_optimizer if self.attack == "grnn" else self.optimizer

    @property
    def planned_steps(self) -> int:
        """The optimizer steps the settings plan in all: every restart's and consensus run's
        `iterations`, and the consensus's own steps.

        Example:
            >>> AttackSettings(attack="unrolled", iterations=10, consensus_restarts=2,
            ...                consensus_steps=5).planned_steps
            25
        """
        return self.iterations * self.restarts * self.consensus_restarts + self.consensus_steps

    @property
    def effective_lr(self) -> float:
        """`lr`, or the usual learning rate of the optimizer that runs."""
        if self.lr is not None:
            return float(self.lr)
        return DEFAULT_LR[(self.effective_optimizer, self.attack == "grnn")]

    def lr_at(self, step: int) -> float:
        """The learning rate of step `step` (0-based) of a run of `iterations` steps under
        `lr_schedule`.

        Example:
            >>> s = AttackSettings(optimizer="adam", iterations=11, lr_schedule="cosine", lr_final=0)
            >>> [round(s.lr_at(i), 3) for i in (0, 5, 10)]
            [0.1, 0.05, 0.0]
        """
        lr = self.effective_lr
        if self.lr_schedule == "constant":
            return lr
        if step < self.lr_warmup:
            return lr * (step + 1) / self.lr_warmup
        span = max(self.iterations - 1 - self.lr_warmup, 1)
        progress = min((step - self.lr_warmup) / span, 1.0)
        floor = lr * self.lr_final
        return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def with_(self, **changes: Any) -> AttackSettings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, e.g. for results.json."""
        return asdict(self)


def unrolled_preset(settings: AttackSettings | None = None, **changes: Any) -> AttackSettings:
    """The unrolled FedAvg attack as the audit and `unrolled_grid` run it: Adam at a constant lr
    0.1 on the dummies (on the DLG-initialised LeNet it reached lower matching losses than
    L-BFGS, which stalls, and than a decaying rate), 1 - cosine, soft labels learned from the
    label-count estimate and refined sample by sample at the end (`attacks/label_refinement.py`;
    docs/results.md, "FedAvg updates as clients really send them").
    `changes` override any field.

    Example:
        >>> unrolled_preset(iterations=50).learn_labels
        True
    """
    base = settings or AttackSettings()
    preset = dict(attack="unrolled", optimizer="adam", lr=0.1, distance="cosine",
                  learn_labels=True)
    return replace(base, **{**preset, **changes})


def spike_modality(settings: AttackSettings | None = None, **changes: Any) -> AttackSettings:
    """The study's spike-modality preset (Table III): per-step dummy, small positive normal init,
    no pixel clamp, non-negative. `changes` override any field.

    Example:
        >>> spike_modality(threshold_mode="post", threshold=0.5).time_mode
        'per-step'
    """
    base = settings or AttackSettings()
    preset = dict(init="normal", time_mode="per-step", clamp=False, non_negative=True)
    return replace(base, **{**preset, **changes})
