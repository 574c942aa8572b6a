"""The bench's unit of work: attack some batches of one row on fresh victims and score them.

Local runs (run.py) and Ray tasks (distributed.py) both call `attack_batches`, so their rows agree.
Victims come from `fedsnn.audit.cases`; the ground truth stays here, on the scorer's side.
"""

from __future__ import annotations

from typing import Any

import torch

from attacks import invert
from fedsnn.audit.cases import Case, victim_case, victim_seed
from fedsnn.audit.scoring import score_images
from fedsnn.core.data import ImageData
from fedsnn.core.judges import Judge
from fedsnn.core.models import ModelSpec
from fedsnn.tools.bench.config import BenchConfig, Variant, attack_settings, public_data


def _spec(model: str, data: ImageData, config: BenchConfig) -> ModelSpec:
    return ModelSpec(name=model, in_channels=data.in_channels, num_classes=data.num_classes,
                     image_size=data.image_size, time_steps=config.time_steps,
                     encoding=config.encoding)


def case(variant: Variant, batch: int, x: torch.Tensor, y: torch.Tensor, data: ImageData,
         config: BenchConfig) -> Case:
    """One batch of the attack set on its fresh DLG-initialised victim (`fedsnn.audit.cases`)."""
    seed = victim_seed(config.seed, batch)
    return victim_case(_spec(variant.model, data, config), x, y,
                       target_id=f"{variant.key}/{batch}", seed=seed, encoder_seed=seed)


def attack_batch(variant: Variant, batch: int, sample_ids: list[int], data: ImageData,
                 config: BenchConfig, judge: Judge) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """One row of the table for one batch: the attack on a fresh victim, scored per sample; and
    the matched reconstructions. Depends only on its arguments (local and Ray runs agree)."""
    (_, rows, matched), = attack_batches(variant, [(batch, sample_ids)], data, config, judge)
    return rows, matched


def attack_batches(variant: Variant, items: list[tuple[int, list[int]]], data: ImageData,
                   config: BenchConfig, judge: Judge, vectorize: int = 0
                   ) -> list[tuple[int, list[dict[str, Any]], torch.Tensor]]:
    """`attack_batch` for several (batch, sample ids) of one variant; with `vectorize` > 1,
    DLG, iDLG and GRNN attack them in one batched optimization (attacks/batched.py)."""
    inputs = []
    for batch, sample_ids in items:
        index = torch.tensor(sample_ids)
        inputs.append((data.test_x[index], data.test_y[index]))
    observations = [case(variant, batch, x, y, data, config).observation
                    for (batch, _), (x, y) in zip(items, inputs, strict=True)]
    settings = attack_settings(variant, config)
    public = public_data(config, data.train_x)
    reconstructions = (invert(observations, settings, vectorize=vectorize, public=public)
                       if vectorize > 1 else invert(observations, settings, public=public))
    finished = []
    for (batch, sample_ids), (x, y), reconstruction in zip(items, inputs, reconstructions, strict=True):
        rows, matched = score_images(reconstruction, x, y, judge.predict)
        for position, row in enumerate(rows):
            row.update(variant=variant.key, attack=variant.attack, model=variant.model,
                       optimizer=variant.optimizer, batch=batch, position=position,
                       sample=sample_ids[position],
                       status=reconstruction.status.value, message=reconstruction.message,
                       **{"matching-loss": reconstruction.matching_loss,
                          "steps": len(reconstruction.loss_history),
                          "restart": reconstruction.restart,
                          "seconds": round(reconstruction.seconds, 3)})
        finished.append((batch, rows, matched))
    return finished
