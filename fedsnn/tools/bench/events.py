"""`fedsnn bench` on event datasets: the study's Tables V-VI (gradient inversion in the spike domain).

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attacks import AttackSettings, Observation, invert, spike_modality
from attacks.spiking import binarize
from fedsnn.tools.bench.run import draw_attack_set
from fedsnn.data import ImageData, load_dataset
from fedsnn.data.dvs import parse_event_spec
from fedsnn.models import ModelSpec, build_model
from fedsnn.results import _jsonable, write_json_atomic

THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
MODES = ("post", "in")
RAW = "raw"  # the post-mode row of the un-binarized dummy
MODEL_SEED_STRIDE = 1_000_003


class EventBenchError(ValueError):
    """Settings that cannot run, or an --out folder made with other settings."""


@dataclass(frozen=True)
class EventBenchConfig:
    """Settings of the event benchmark (see `fedsnn bench --help`)."""

    dataset: str
    attacks: tuple[str, ...] = ("dlg", "idlg")
    thresholds: tuple[float, ...] = THRESHOLDS
    modes: tuple[str, ...] = MODES
    samples: int = 100
    seed: int = 0
    iters: int = 50
    optimizer: str = "adam"
    lr: float | None = None
    init_mean: float = 0.1
    init_std: float = 0.01
    image_size: int = 28
    neuron: str = "if"
    judge_epochs: int | None = None
    pictures: int = 3
    workers: int = 1

    def __post_init__(self) -> None:
        if parse_event_spec(self.dataset) is None:
            raise EventBenchError(f"{self.dataset!r} is not an event dataset "
                                  "('dvs-digits[:frames=T]', 'dvsgesture:<dir>[,frames=T]')")
        bad = [a for a in self.attacks if a not in ("dlg", "idlg")] or [
            m for m in self.modes if m not in MODES] or [
            t for t in self.thresholds if not 0.0 < t <= 1.0]
        if bad or not self.attacks or not self.modes:
            raise EventBenchError(f"unknown or empty: {bad or 'attacks/modes'}; expected attacks "
                                  f"from dlg, idlg, modes from {', '.join(MODES)}, thresholds in (0, 1]")
        if self.samples < 1 or self.iters < 1 or self.workers < 1:
            raise EventBenchError("--samples, --iters and --workers must be >= 1")

    @property
    def time_steps(self) -> int:
        spec = parse_event_spec(self.dataset)
        assert spec is not None
        return spec.frames

    def settings(self, attack: str, mode: str, threshold: float | None = None) -> AttackSettings:
        """The spike-modality attacker of one run: "post" runs unthresholded (binarized later)."""
        base = AttackSettings(attack=attack, optimizer=self.optimizer, iterations=self.iters,
                              lr=self.lr, init_mean=self.init_mean, init_std=self.init_std,
                              seed=self.seed)
        if mode == "in":
            return spike_modality(base, threshold_mode="in", threshold=float(threshold))
        return spike_modality(base, threshold_mode="none")

    def row_defining(self) -> dict[str, Any]:
        """Settings every finished row depends on (a resumed run must keep them)."""
        data = asdict(self)
        for key in ("samples", "pictures", "workers"):
            data.pop(key)
        return data


def victim_spec(data: ImageData, config: EventBenchConfig) -> ModelSpec:
    """The attacked model: lenet-snn on the dataset's spike frames (public hyper-parameters)."""
    return ModelSpec(name="lenet-snn", in_channels=data.in_channels, num_classes=data.num_classes,
                     image_size=data.image_size, time_steps=config.time_steps,
                     neuron=config.neuron, encoding="frames")


def observe(spec: ModelSpec, index: int, x: torch.Tensor, y: torch.Tensor, seed: int
            ) -> Observation:
    """A client's gradient on (x [1, T, 2, H, W], y) through a fresh DLG-initialised victim."""
    from fedsnn.training import batch_gradient

    model = build_model(spec, dlg_init=True, seed=seed * MODEL_SEED_STRIDE + index)
    _, gradients = batch_gradient(model, x, y)
    return Observation(target_id=f"sample-{index}", model_spec=spec,
                       global_state={k: v.detach().clone() for k, v in model.state_dict().items()},
                       gradients=gradients, batch_size=len(x))


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
    from fedsnn.tools.bench.events_report import baselines, class_distances, summarize, write_outputs
    from fedsnn.judges import load_judge
    from fedsnn.judges.dvs import WIDTHS, widths_for

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
        print(f"fedsnn bench: sample {count}/{len(tasks)} (#{batch}) done", flush=True)
    rows = [r for r in read_rows(rows_path) if r["batch"] < len(ids)]  # a smaller --samples
    results = {
        "config": _jsonable(asdict(config)), "dataset-note": data.note, "attack-set": ids,
        "victim": spec.to_dict(),
        "judge": {"architecture": f"DVSGestureSNN (Table I layout, channels "
                                  f"{'-'.join(map(str, WIDTHS[widths_for(data)]))})",
                  "test-accuracy": judge.test_accuracy, "key": judge.key},
        "table-vi": class_distances(data),
        "baselines": baselines(data, ids, judge, config),
        "summary": summarize(rows, config),
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


def cli_run(*, dataset: str, attacks: str, optimizers: str, thresholds: str, modes: str,
            samples: int, iters: int, lr: float | None, seed: int, image_size: int, workers: int,
            pictures: int, out: Path) -> None:
    """`fedsnn bench` on an event dataset (called by fedsnn.tools.bench.command): build the config from
    the command's options, run, print table.md. GRNN is not part of Tables V-VI and is skipped."""
    import typer

    names = [a.strip() for a in attacks.split(",") if a.strip()]
    if "grnn" in names:
        typer.echo("fedsnn bench: GRNN is not part of the event benchmark (Tables V-VI); skipped",
                   err=True)
    try:
        config = EventBenchConfig(
            dataset=dataset, attacks=tuple(a for a in names if a != "grnn"),
            thresholds=tuple(float(t) for t in thresholds.split(",") if t.strip()),
            modes=tuple(m.strip() for m in modes.split(",") if m.strip()), samples=samples,
            seed=seed, iters=iters, optimizer=optimizers.split(",")[0].strip(), lr=lr,
            image_size=image_size, pictures=pictures, workers=workers)
        results = run_event_bench(config, out)
    except ValueError as error:
        typer.echo(f"fedsnn bench: {error}", err=True)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        typer.echo(f"fedsnn bench: interrupted; finished samples are in {out}/rows.jsonl and a "
                   "re-run with the same --out resumes", err=True)
        raise typer.Exit(code=130) from None
    typer.echo((out / "table.md").read_text())
    typer.echo(f"results: {out.resolve()}/results.json ({results['sessions'][-1]['wall-time-s']} "
               f"s wall this session, {results['wall-time-s']} s in all; {results['status']})")


__all__ = ["EventBenchConfig", "EventBenchError", "MODES", "THRESHOLDS", "cli_run",
           "run_event_bench"]
