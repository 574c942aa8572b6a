"""The benchmark loop: attack set, fresh victims, attacks, scores, resumable results.json."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from attacks import Observation, Reconstruction, invert
from clients.training import batch_gradient
from fedsnn.bench.config import BenchConfig, Variant, attack_settings, variants
from fedsnn.data import load_dataset
from fedsnn.data.sources import ImageData
from fedsnn.judges import Judge, load_judge
from fedsnn.metrics import match_by_mse, per_sample_scores, to_images
from fedsnn.models import ModelSpec, build_model
from fedsnn.results import _jsonable, write_json_atomic

log = logging.getLogger(__name__)

MODEL_SEED_STRIDE = 1_000_003  # model seed of batch b: seed * stride + b (twins share weights)


class BenchResumeError(ValueError):
    """results.json in --out was made with other settings."""


def attack_set(data: ImageData, config: BenchConfig) -> list[int]:
    """Indices into the test split (never seen by the judge), drawn with the run's seed."""
    if config.samples > len(data.test_x):
        raise ValueError(f"--samples {config.samples} is more than the {len(data.test_x)} test "
                         f"images of {data.name}")
    order = torch.randperm(len(data.test_x), generator=torch.Generator().manual_seed(config.seed))
    return order[:config.samples].tolist()


def _spec(model: str, data: ImageData, config: BenchConfig) -> ModelSpec:
    return ModelSpec(name=model, in_channels=data.in_channels, num_classes=data.num_classes,
                     image_size=data.image_size, time_steps=config.time_steps)


def observe(variant: Variant, batch: int, x: torch.Tensor, y: torch.Tensor, data: ImageData,
            config: BenchConfig) -> Observation:
    """What the attacker sees for one batch: a fresh DLG-initialised model and its gradient on
    (x, y), made the way a client makes it (mean cross-entropy)."""
    spec = _spec(variant.model, data, config)
    model = build_model(spec, dlg_init=True, seed=config.seed * MODEL_SEED_STRIDE + batch)
    _, gradients = batch_gradient(model, x, y)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return Observation(target_id=f"{variant.key}/{batch}", model_spec=spec, global_state=state,
                       gradients=gradients, batch_size=len(x))


def score(reconstruction: Reconstruction, x: torch.Tensor, y: torch.Tensor, judge: Judge
          ) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """Per-sample scores of a reconstruction of batch (x, y), matched to it by an optimal
    assignment; and the matched images."""
    images = to_images(reconstruction.inputs)
    if images.shape != x.shape or not torch.isfinite(images).all():
        images = torch.zeros_like(x)  # nothing usable came back: scored as a black guess
    order = match_by_mse(images, x) if len(x) > 1 else torch.zeros(1, dtype=torch.long)
    matched = images[order]
    labels = reconstruction.labels[order] if len(reconstruction.labels) == len(x) else \
        torch.full_like(y, -1)
    scores = per_sample_scores(matched, x)
    predicted = judge.predict(matched)
    rows = [{"true-label": int(y[i]), "inferred-label": int(labels[i]),
             "judge-label": int(predicted[i]), "success": bool(predicted[i] == y[i]),
             "label-correct": bool(labels[i] == y[i]),
             **{k: float(v[i]) for k, v in scores.items()}} for i in range(len(x))]
    return rows, matched


class ResultStore:
    """results.json of a bench folder: loaded on start, rewritten atomically after every batch."""

    def __init__(self, out: Path, config: BenchConfig) -> None:
        self.path = out / "results.json"
        self.data: dict[str, Any] = {"config": config.to_dict(), "rows": [], "sessions": []}
        if self.path.is_file():
            import json

            previous = json.loads(self.path.read_text())
            old = {k: v for k, v in previous.get("config", {}).items()
                   if k in config.row_defining()}
            new = _jsonable(config.row_defining())
            changed = sorted(k for k in new if old.get(k) != new[k])
            if changed:
                raise BenchResumeError(
                    f"{self.path} was made with other settings ({', '.join(changed)}: "
                    f"{[old.get(k) for k in changed]} there, {[new[k] for k in changed]} now); "
                    "use a new --out, or the same settings to resume")
            self.data["rows"] = previous.get("rows", [])
            self.data["sessions"] = previous.get("sessions", [])
        self.done = {(r["variant"], r["batch"]) for r in self.data["rows"]}

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.flush()

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.data["rows"].extend(rows)
        self.done |= {(r["variant"], r["batch"]) for r in rows}
        self.flush()

    def flush(self) -> None:
        write_json_atomic(self.path, self.data)


def _save_reconstruction(out: Path, variant: Variant, batch: int, images: torch.Tensor) -> None:
    folder = out / "reconstructions" / variant.key.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{batch}.npy", images.numpy().astype(np.float32))


def run_bench(config: BenchConfig, out: Path,
              on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a benchmark into `out`; returns the results.json content.

    Example:
        >>> run_bench(BenchConfig("digits", samples=2, iters=5), Path("/tmp/b"))  # doctest: +SKIP
    """
    from fedsnn.bench.report import baselines, summarize, write_outputs

    started = time.time()
    out = out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(config.dataset)
    store = ResultStore(out, config)
    judge = load_judge(data, epochs=config.judge_epochs, seed=0)
    ids = attack_set(data, config)
    batches = [ids[i:i + config.batch_size] for i in range(0, len(ids), config.batch_size)]
    store.data.update(config=_jsonable(config.to_dict()), **{
        "dataset-note": data.note, "attack-set": ids,
        "judge": {"architecture": "lenet5", "test-accuracy": judge.test_accuracy,
                  "key": judge.key},
        "baselines": baselines(data, ids, judge)})
    store.set("status", "running")
    pending = [(v, b) for v in variants(config) for b in range(len(batches))
               if (v.key, b) not in store.done]
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "pending-batches": len(pending), "torch-threads": torch.get_num_threads()}
    status = "interrupted"
    try:
        for variant, batch in tqdm(pending, desc="fedsnn bench", unit="batch", dynamic_ncols=True):
            settings = attack_settings(variant, config)
            index = torch.tensor(batches[batch])
            x, y = data.test_x[index], data.test_y[index]
            observation = observe(variant, batch, x, y, data, config)
            reconstruction = invert([observation], settings)[0]
            rows, matched = score(reconstruction, x, y, judge)
            for position, row in enumerate(rows):
                row.update(variant=variant.key, attack=variant.attack, model=variant.model,
                           optimizer=variant.optimizer, batch=batch, position=position,
                           sample=batches[batch][position],
                           status=reconstruction.status.value, message=reconstruction.message,
                           **{"matching-loss": reconstruction.matching_loss,
                              "steps": len(reconstruction.loss_history),
                              "restart": reconstruction.restart,
                              "seconds": round(reconstruction.seconds, 3)})
            if batch < config.grid:
                _save_reconstruction(out, variant, batch, matched)
            store.add(rows)
            if on_progress:
                on_progress(f"{variant.key} batch {batch}: {rows[0]['status']}")
        status = "completed"
    finally:
        session.update(ended=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       **{"wall-time-s": round(time.time() - started, 1), "status": status})
        store.data["sessions"].append(session)
        store.data["wall-time-s"] = round(sum(s.get("wall-time-s", 0.0)
                                              for s in store.data["sessions"]), 1)
        store.data["status"] = status
        store.data["summary"] = summarize(store.data["rows"], config)
        store.flush()
        write_outputs(out, store.data, data, config)
    return store.data
