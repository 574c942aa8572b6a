"""The chance level of the scoring pipeline: images without information about the update,
scored exactly as a reconstruction is (the same optimal assignment to the client's images, the same
identification pool, the same judge).

A constant guess (one mean image repeated) cannot show that level: the assignment cannot favour
one copy over another. N informative-free images can, and the audit scores three kinds beside
every attacked update:

- `matched-noise`: uniform noise at the dataset's native format (resized as the dataset resizes);
- `public-draws`: N images drawn from data the server may hold (the test split), with their labels;
- `permutation`: the attack's own reconstructions of another update, matched to this client's
  images (the chance level of the attack's output distribution).

Rates with a label (judge ASR, label accuracy) also face `largest-class`: always answering the
scored set's most frequent class (the judge's baseline on exactly these samples). Class histograms
face the class prior (`histogram_test`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from fedsnn.audit.decision import Count, MetricTest, rate_test, values_test
from fedsnn.core.image_format import resize
from fedsnn.core.metrics import histogram, histogram_scores, identified, match_by_mse
from fedsnn.core.metrics import per_sample_scores, round_to_total

Predict = Callable[[torch.Tensor], torch.Tensor]  # images -> predicted labels (a judge)
NULLS = ("matched-noise", "public-draws", "permutation")
LARGEST_CLASS = "largest-class"
RATE_METRICS = ("identified", "asr", "label-accuracy")
VALUE_METRICS = ("psnr", "ssim")


@dataclass(frozen=True)
class Truth:
    """What the scorer knows of one attacked update (never given to an attack).

    Attributes:
        images: [N, C, H, W] the client's images; `labels`: [N].
        pool_ids: [N] their indices in `pool`, the identification pool (e.g. the train split).
        pool: the images a reconstruction's nearest neighbour is searched in (None: identified
            is not scored).
        predict: the judge (None: no judge ASR).
    """

    images: torch.Tensor
    labels: torch.Tensor
    pool_ids: torch.Tensor | None
    pool: torch.Tensor | None
    predict: Predict | None = None


@dataclass(frozen=True)
class Scored:
    """Per-image scores of N candidate images matched to a client's N images.

    `hits` per rate metric ([N] bool; "asr" absent without a judge, "label-accuracy" absent when
    the candidates have no labels) and `values` per value metric ([N] floats); `matched`: the
    candidates in the order of the client's images (`order`: their indices among the
    candidates); `judged`: the judge's labels of `matched` (None without a judge)."""

    hits: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor]
    matched: torch.Tensor
    order: torch.Tensor | None = None
    judged: torch.Tensor | None = None

    def count(self, metric: str) -> Count | None:
        hits = self.hits.get(metric)
        return None if hits is None else Count(int(hits.sum()), len(hits))


def score_candidates(images: torch.Tensor, labels: torch.Tensor | None, truth: Truth) -> Scored:
    """The identical pipeline: optimal assignment on MSE to the client's images (more candidates
    than images: the best N are used), then identified in the pool, the judge's label, the
    candidate's label, PSNR / SSIM / MSE per image. Non-finite candidates score as black."""
    images = torch.nan_to_num(images.float(), nan=0.0, posinf=1.0, neginf=0.0)
    order = match_by_mse(images, truth.images)
    matched = images[order]
    hits = ({} if truth.pool is None or truth.pool_ids is None
            else {"identified": identified(matched, truth.pool_ids, truth.pool)})
    judged = None
    if truth.predict is not None:
        with torch.no_grad():
            judged = truth.predict(matched.clamp(0, 1))
        hits["asr"] = judged == truth.labels
    if labels is not None and len(labels) == len(images) and bool((labels >= 0).all()):
        hits["label-accuracy"] = labels[order] == truth.labels
    scores = per_sample_scores(matched, truth.images)
    return Scored(hits, {k: scores[k] for k in ("mse", *VALUE_METRICS)}, matched, order, judged)


def matched_noise(n: int, shape: tuple[int, ...], native_size: int | None,
                  generator: torch.Generator) -> torch.Tensor:
    """N uniform-noise images at the native size (when known), resized to `shape` [C, H, W] as
    the dataset resizes its images."""
    side = native_size or shape[-1]
    noise = torch.rand((n, shape[0], side, side), generator=generator)
    return resize(noise, shape[-1]) if side != shape[-1] else noise


def public_draws(n: int, public_x: torch.Tensor, public_y: torch.Tensor,
                 generator: torch.Generator, exclude: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """N images (with their labels) drawn without replacement from the public images, leaving
    out `exclude` (ids into them); with fewer than N available, every one of them, tiled."""
    allowed = torch.ones(len(public_x), dtype=torch.bool)
    if exclude is not None and len(exclude):
        allowed[exclude] = False
    ids = allowed.nonzero().flatten()
    ids = ids[torch.randperm(len(ids), generator=generator)][:n]
    ids = ids.repeat((n + len(ids) - 1) // max(len(ids), 1))[:n]
    return public_x[ids], public_y[ids]


def tiled(images: torch.Tensor, labels: torch.Tensor | None, n: int
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """At least N candidates: another update's reconstructions repeated when it had fewer."""
    reps = max(1, -(-n // max(len(images), 1)))
    return images.repeat(reps, *[1] * (images.dim() - 1)), (
        None if labels is None else labels.repeat(reps))


@dataclass(frozen=True)
class NullSources:
    """Where an update's nulls come from.

    Attributes:
        public_x, public_y: images the server may hold (the test split) for `public-draws`.
        native_size: the dataset's native image side (None: the model's input size).
        draws: independent draws of each random null (pooled into one count).
        seed: the draws' generator seed.
        exclude: public ids never drawn (a canary's own images).
        others: reconstructions (images, labels) of other updates, for `permutation`.
    """

    public_x: torch.Tensor
    public_y: torch.Tensor
    native_size: int | None = None
    draws: int = 3
    seed: int = 0
    exclude: torch.Tensor | None = None
    others: tuple[tuple[torch.Tensor, torch.Tensor | None], ...] = ()


def score_nulls(truth: Truth, sources: NullSources) -> dict[str, list[Scored]]:
    """Every null's draws, each scored through `score_candidates`."""
    generator = torch.Generator().manual_seed(sources.seed)
    n, shape = len(truth.images), tuple(truth.images.shape[1:])
    out: dict[str, list[Scored]] = {"matched-noise": [], "public-draws": []}
    for _ in range(sources.draws):
        out["matched-noise"].append(score_candidates(
            matched_noise(n, shape, sources.native_size, generator), None, truth))
        out["public-draws"].append(score_candidates(
            *public_draws(n, sources.public_x, sources.public_y, generator, sources.exclude), truth))
    if sources.others:
        out["permutation"] = [score_candidates(*tiled(images, labels, n), truth)
                              for images, labels in sources.others]
    return out


def _pooled_count(draws: list[Scored], metric: str) -> Count | None:
    counts = [c for c in (d.count(metric) for d in draws) if c is not None]
    return sum(counts[1:], counts[0]) if counts else None


def largest_class(labels: torch.Tensor) -> Count:
    """Always answering the most frequent class of the scored set: the judge's (and the label
    inference's) baseline on exactly these samples."""
    return Count(int(torch.bincount(labels.long()).max()) if len(labels) else 0, len(labels))


def metric_tests(attack: Scored, nulls: dict[str, list[Scored]], labels: torch.Tensor
                 ) -> dict[str, MetricTest]:
    """Each metric of the attack against each null's (see `fedsnn.audit.decision`)."""
    tests = {}
    for metric in RATE_METRICS:
        count = attack.count(metric)
        if count is None:
            continue
        against = {name: c for name, draws in nulls.items()
                   if (c := _pooled_count(draws, metric)) is not None}
        if metric != "identified":
            against[LARGEST_CLASS] = largest_class(labels)
        tests[metric] = rate_test(metric, count, against)
    for metric in VALUE_METRICS:
        tests[metric] = values_test(metric, attack.values[metric].tolist(),
                                    {name: torch.cat([d.values[metric] for d in draws]).tolist()
                                     for name, draws in nulls.items() if draws})
    return tests


def histogram_test(inferred: torch.Tensor | None, truth_labels: torch.Tensor,
                   prior_shares: torch.Tensor, *, draws: int = 999, seed: int = 0
                   ) -> dict[str, object] | None:
    """An inferred class histogram against the class prior: its total variation (TV) from the
    truth and exact share beside the prior guess's (the prior scaled to the client's count), and
    a one-sided p-value that it is closer than chance: the Monte-Carlo share of histograms drawn
    from the prior that are at least as close (1 when it is not closer than the prior guess).
    None when nothing was inferred."""
    classes = len(prior_shares)
    truth = histogram(truth_labels, classes)
    n = int(truth.sum())
    if inferred is None or len(inferred) != n or bool((inferred < 0).any()):
        return None
    estimate = histogram_scores(histogram(inferred, classes), truth)
    prior = histogram_scores(round_to_total(prior_shares.double(), n), truth)
    generator = torch.Generator().manual_seed(seed)
    sampled = torch.multinomial(prior_shares.double().clamp(min=0), n * draws, replacement=True,
                                generator=generator).view(draws, n)
    tv = [histogram_scores(histogram(row, classes), truth)["total-variation"] for row in sampled]
    as_close = sum(v <= estimate["total-variation"] for v in tv)
    better = estimate["total-variation"] < prior["total-variation"]
    return {"estimate": estimate, "class-prior": prior,
            "worse-than-prior": estimate["total-variation"] > prior["total-variation"],
            "p-value": (1 + as_close) / (1 + draws) if better else 1.0}
