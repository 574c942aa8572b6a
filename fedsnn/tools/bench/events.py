"""`fedsnn bench-events`: the study's Tables V-VI (gradient inversion in the spike domain).

For each sample of the attack set (test split, drawn with the seed) a fresh DLG-initialised
`lenet-snn` (2 input channels, `frames` encoding, T = the dataset's frames) computes the client's
gradient. DLG and iDLG attack it with the spike-modality attacker (Table III: per-step dummy
[T, B, 2, H, W] from N(init_mean, init_std), no clamp, non-negative):

- post-optimization thresholding (Algorithm 1): one optimization per attack, whose dummy is
  binarized at every theta afterwards (the optimization does not depend on theta);
- in-optimization thresholding (Algorithm 2): one optimization per attack and theta, the dummy
  binarized on every forward pass with a straight-through gradient.

The attacker (worker processes) sees only the observation; the scorer (this process) compares
each reconstruction with the ground truth: L1 distance between spike tensors, the DVS judge's
prediction (ASR with Wilson intervals). Table VI is the L1 distance between dataset samples of the
same and of different classes. Rows go to rows.jsonl as each sample finishes; a re-run with the
same --out resumes.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attacks import Observation, invert
from attacks.spiking import binarize
from fedsnn.audit.cases import victim_case, victim_seed
from fedsnn.core.data import ImageData, load_dataset
from fedsnn.core.judges import load_judge
from fedsnn.core.judges.dvs import WIDTHS, widths_for
from fedsnn.core.models import ModelSpec
from fedsnn.core.results import _jsonable, write_json_atomic
from fedsnn.tools.bench.events_config import (MODES, RAW, THRESHOLDS, EventBenchConfig,
                                              EventBenchError)
from fedsnn.tools.bench.events_report import (baselines, class_distances, summarize_events,
                                              write_outputs)
from fedsnn.tools.bench.run import draw_attack_set

def victim_spec(data: ImageData, config: EventBenchConfig) -> ModelSpec:
    """The attacked model: lenet-snn on the dataset's spike frames (public hyper-parameters)."""
    return ModelSpec(name="lenet-snn", in_channels=data.in_channels, num_classes=data.num_classes,
                     image_size=data.image_size, time_steps=config.time_steps,
                     neuron=config.neuron, encoding="frames")


def observe(spec: ModelSpec, index: int, x: torch.Tensor, y: torch.Tensor, seed: int
            ) -> Observation:
    """A client's gradient on (x [1, T, 2, H, W], y) through a fresh DLG-initialised victim."""
    return victim_case(spec, x, y, target_id=f"sample-{index}",
                       seed=victim_seed(seed, index)).observation


def attack_sample(task: tuple[EventBenchConfig, ModelSpec, int, torch.Tensor, torch.Tensor]
                  ) -> dict[str, Any]:
    """Every optimization of one sample (worker side: the observation only, no ground truth
    beyond what the client used to compute its gradient). Returns raw/in-mode reconstructions
    [T, 1, 2, H, W] with their labels, losses, statuses and seconds, keyed by run."""
    config, spec, index, x, y = task
    torch.set_num_threads(1)
    observation = observe(spec, index, x, y, config.seed)
    runs: dict[str, Any] = {}
    for attack in config.attacks:
        plans = [("post", None)] if "post" in config.modes else []
        plans += [("in", t) for t in config.thresholds] if "in" in config.modes else []
        for mode, threshold in plans:
            reconstruction = invert([observation], config.settings(attack, mode, threshold))[0]
            runs[f"{attack}/{mode}" + (f"/{threshold}" if mode == "in" else "")] = {
                "inputs": reconstruction.inputs, "labels": reconstruction.labels.tolist(),
                "matching-loss": reconstruction.matching_loss,
                "status": reconstruction.status.value, "message": reconstruction.message,
                "seconds": round(reconstruction.seconds, 3)}
    return {"index": index, "runs": runs}


def attack_set(data: ImageData, config: EventBenchConfig) -> list[int]:
    """Test-split indices, drawn as the image bench draws them."""
    try:
        return draw_attack_set(data, config.samples, config.seed)
    except ValueError as error:
        raise EventBenchError(str(error)) from None


def score_runs(result: dict[str, Any], batch: int, sample: int, truth: torch.Tensor, label: int,
               judge: Any, config: EventBenchConfig) -> list[dict[str, Any]]:
    """Rows of one sample: per (attack, mode, theta) the L1 distance to the truth [T, 2, H, W],
    the judge's label and the inferred label (scorer side)."""
    rows = []
    for key, run in result["runs"].items():
        attack, mode = key.split("/")[:2]
        raw = run["inputs"][:, 0].float()                     # [T, 2, H, W]
        if mode == "post":
            variants = [(RAW, raw)] + [(t, binarize(raw, t)) for t in config.thresholds]
        else:
            variants = [(float(key.split("/")[2]), raw)]
        for threshold, spikes in variants:
            predicted = int(judge.predict(spikes.unsqueeze(0))[0])
            rows.append({
                "variant": f"{attack}/{mode}/{threshold}", "attack": attack, "mode": mode,
                "threshold": threshold, "batch": batch, "sample": sample, "true-label": label,
                "judge-label": predicted, "success": predicted == label,
                "inferred-label": run["labels"][0], "label-correct": run["labels"][0] == label,
                "l1": float((spikes - truth).abs().sum()), "spikes": float(spikes.sum()),
                "truth-spikes": float(truth.sum()), "matching-loss": run["matching-loss"],
                "status": run["status"], "message": run["message"], "seconds": run["seconds"]})
    return rows


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of rows.jsonl (a torn last line, from an interruption, is left out)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _check_folder(out: Path, config: EventBenchConfig) -> None:
    path, expected = out / "bench.json", _jsonable(config.row_defining())
    if path.is_file():
        old = json.loads(path.read_text())
        changed = sorted(k for k in set(old) | set(expected) if old.get(k) != expected.get(k))
        if changed:
            raise EventBenchError(f"{out} holds results made with other settings "
                                  f"({', '.join(changed)}); use a new --out or the same settings")
    else:
        write_json_atomic(path, expected)


def _results(pool_size: int, tasks: list[tuple[Any, ...]]) -> Iterator[dict[str, Any]]:
    if pool_size == 1:
        yield from map(attack_sample, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(pool_size) as pool:
        yield from pool.imap_unordered(attack_sample, tasks)


def _previous_sessions(out: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads((out / "results.json").read_text()).get("sessions", []))
    except (OSError, ValueError):
        return []


def run_event_bench(config: EventBenchConfig, out: Path) -> dict[str, Any]:
    """Run (or resume) the event benchmark into `out`: rows.jsonl, results.json, table.md and
    frames.png. Returns the results.json content.

    Example:
        >>> run_event_bench(EventBenchConfig("dvs-digits", samples=2, iters=5), Path("/tmp/e"))  # doctest: +SKIP
    """
    started = time.time()
    out = out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    _check_folder(out, config)
    data = load_dataset(config.dataset, config.image_size)
    judge = load_judge(data, epochs=config.judge_epochs, seed=0)
    spec = victim_spec(data, config)
    ids = attack_set(data, config)
    rows_path = out / "rows.jsonl"
    done = {r["batch"] for r in read_rows(rows_path)}
    tasks = [(config, spec, batch, data.test_x[i:i + 1].clone(),
              data.test_y[i:i + 1].clone()) for batch, i in enumerate(ids) if batch not in done]
    pictures = out / "reconstructions"
    pictures.mkdir(exist_ok=True)
    for count, result in enumerate(_results(min(config.workers, max(len(tasks), 1)), tasks), 1):
        batch = result["index"]
        sample = ids[batch]
        truth = data.test_x[sample]
        rows = score_runs(result, batch, sample, truth, int(data.test_y[sample]), judge, config)
        if batch < config.pictures:
            np.savez_compressed(pictures / f"{batch}.npz", truth=truth.numpy(),
                                **{k.replace("/", "_"): r["inputs"][:, 0].numpy()
                                   for k, r in result["runs"].items()})
        with open(rows_path, "a") as handle:
            handle.writelines(json.dumps(_jsonable(row)) + "\n" for row in rows)
        print(f"fedsnn bench-events: sample {count}/{len(tasks)} (#{batch}) done", flush=True)
    rows = [r for r in read_rows(rows_path) if r["batch"] < len(ids)]  # a smaller --samples
    results = {
        "config": _jsonable(asdict(config)), "dataset-note": data.note, "attack-set": ids,
        "victim": spec.to_dict(),
        "judge": {"architecture": f"DVSGestureSNN (Table I layout, channels "
                                  f"{'-'.join(map(str, WIDTHS[widths_for(data)]))})",
                  "test-accuracy": judge.test_accuracy, "key": judge.key, **judge.card()},
        "table-vi": class_distances(data),
        "baselines": baselines(data, ids, judge, config),
        "summary": summarize_events(rows, config),
        "attack-seconds": round(sum(r["seconds"] for r in rows if r["threshold"] in (RAW, None)
                                    or r["mode"] == "in"), 1),
        "status": "completed" if len({r["batch"] for r in rows}) >= len(ids) else "partial",
    }
    sessions = _previous_sessions(out) + [{
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "samples-attacked": len(tasks), "workers": config.workers,
        "wall-time-s": round(time.time() - started, 1)}]
    results.update(sessions=sessions, **{"wall-time-s": round(sum(s["wall-time-s"]
                                                                for s in sessions), 1)})
    write_json_atomic(out / "results.json", results)
    write_outputs(out, results, config)
    return results


__all__ = ["EventBenchConfig", "EventBenchError", "MODES", "THRESHOLDS", "run_event_bench"]
