"""The benchmark loop: attack set, fresh victims, attacks, scores, resumable results.json."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fedsnn.core.data import ImageData, load_dataset
from fedsnn.core.judges import Judge, load_judge
from fedsnn.core.results import _jsonable, write_json_atomic
from fedsnn.tools.bench.batches import attack_batches
from fedsnn.tools.bench.config import BenchConfig, Variant, attack_settings, variants
from fedsnn.tools.bench.distributed import ray_batches
from fedsnn.tools.bench.report import baselines, ceiling, summarize_rows, write_outputs

log = logging.getLogger(__name__)

REFILL_CHUNKS = 4  # vectorized runs: targets per engine call, in multiples of K (slots get refilled)


class BenchResumeError(ValueError):
    """results.json in --out was made with other settings."""


def draw_attack_set(data: ImageData, samples: int, seed: int) -> list[int]:
    """`samples` indices into the test split (never seen by the judge), drawn with `seed` (a
    prefix of the same order for any `samples`)."""
    if samples > len(data.test_x):
        raise ValueError(f"--samples {samples} is more than the {len(data.test_x)} test "
                         f"samples of {data.name}")
    order = torch.randperm(len(data.test_x), generator=torch.Generator().manual_seed(seed))
    return order[:samples].tolist()


def attack_set(data: ImageData, config: BenchConfig) -> list[int]:
    """The bench's attack set."""
    return draw_attack_set(data, config.samples, config.seed)


class ResultStore:
    """A bench folder. Rows are appended, one JSON line per sample, to rows/<variant>.jsonl as
    each batch finishes (so an interruption loses at most the batch in flight, and processes
    running different rows can share the folder); results.json is rebuilt from all of them after
    every batch. Each variant's attack settings and the folder's attack-set settings are kept, and a
    re-run with other settings is refused instead of mixing results."""

    def __init__(self, out: Path, config: BenchConfig) -> None:
        self.out = out
        self.path = out / "results.json"
        self.rows_dir = out / "rows"
        self.rows_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self._check(out / "bench.json", _jsonable(config.row_defining()), "attack-set settings")
        self.done: set[tuple[str, int]] = set()
        for file in self.rows_dir.glob("*.jsonl"):
            self.done |= {(r["variant"], r["batch"]) for r in _read_rows(file)}

    @staticmethod
    def _check(path: Path, expected: dict[str, Any], what: str) -> None:
        if path.is_file():
            old = json.loads(path.read_text())
            # keys the folder does not know yet are settings added later, whose defaults keep the
            # old behaviour; everything the folder recorded must match
            changed = sorted(k for k in old if old.get(k) != expected.get(k))
            if changed:
                raise BenchResumeError(
                    f"{path.parent} holds results made with other {what} ({', '.join(changed)}: "
                    f"{[old.get(k) for k in changed]} there, {[expected.get(k) for k in changed]} "
                    "now); use a new --out, or the same settings to resume")
        else:
            write_json_atomic(path, expected)

    def claim(self, variant: Variant, settings: dict[str, Any]) -> None:
        """Record (or check) the attack settings of a variant before its first row is added."""
        self._check(self.rows_dir / f"{_slug(variant)}.settings.json", _jsonable(settings),
                    f"attack settings for {variant.key}")

    def add(self, variant: Variant, rows: list[dict[str, Any]]) -> None:
        with open(self.rows_dir / f"{_slug(variant)}.jsonl", "a") as handle:
            for row in rows:
                handle.write(json.dumps(_jsonable(row)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done |= {(r["variant"], r["batch"]) for r in rows}

    def is_done(self, variant: Variant, batch: int) -> bool:
        """True when the batch's rows are in the folder (re-read: another process running the
        same rows may have written them since this one started)."""
        if (variant.key, batch) not in self.done:
            file = self.rows_dir / f"{_slug(variant)}.jsonl"
            if file.is_file():
                self.done |= {(r["variant"], r["batch"]) for r in _read_rows(file)}
        return (variant.key, batch) in self.done

    def all_rows(self) -> list[dict[str, Any]]:
        """Every finished row in the folder (from every process that wrote to it; if two
        processes finished the same batch, the first rows written are kept)."""
        rows: dict[tuple[str, int, int], dict[str, Any]] = {}
        for file in sorted(self.rows_dir.glob("*.jsonl")):
            for r in _read_rows(file):
                rows.setdefault((r["variant"], r["batch"], r["position"]), r)
        return [rows[k] for k in sorted(rows)]

    def variant_settings(self) -> dict[str, Any]:
        return {json.loads(f.read_text()).get("variant", f.stem): json.loads(f.read_text())
                for f in sorted(self.rows_dir.glob("*.settings.json"))}

    def write(self, header: dict[str, Any]) -> dict[str, Any]:
        """Rebuild results.json: `header`, the settings of every variant and every row."""
        rows = self.all_rows()
        settings = self.variant_settings()
        data = {**header, "variants": settings, "rows": rows, "summary": summarize_rows(rows, settings)}
        write_json_atomic(self.path, data)
        return data


def _slug(variant: Variant) -> str:
    return variant.key.replace("/", "_")


def _read_rows(file: Path) -> list[dict[str, Any]]:
    rows = []
    for line in file.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s: skipping a truncated line (an interrupted write)", file)
    return rows


def _save_reconstruction(out: Path, variant: Variant, batch: int, images: torch.Tensor) -> None:
    folder = out / "reconstructions" / variant.key.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{batch}.npy", images.numpy().astype(np.float32))


def _local_batches(pending: list[tuple[Variant, int]], batches: list[list[int]], data: ImageData,
                   config: BenchConfig, judge: Judge, store: ResultStore, vectorize: int = 0
                   ) -> Iterator[tuple[Variant, int, list[dict[str, Any]], torch.Tensor]]:
    """The pending batches attacked here (skipping any another process finished meanwhile): one
    after the other, or through the batched engine with `vectorize` slots, fed REFILL_CHUNKS × K
    batches of a variant per call so slots freed by early finishers are refilled (rows are saved
    after each call)."""
    size = max(vectorize * REFILL_CHUNKS, 1)
    chunks = [pending[i:i + size] for i in range(0, len(pending), size)]
    progress = tqdm(total=len(pending), desc="fedsnn bench", unit="batch", dynamic_ncols=True)
    for chunk in chunks:
        for variant in dict.fromkeys(v for v, _ in chunk):
            items = [(b, batches[b]) for v, b in chunk if v == variant and not store.is_done(v, b)]
            if items:
                for batch, rows, matched in attack_batches(variant, items, data, config, judge,
                                                           vectorize):
                    yield variant, batch, rows, matched
        progress.update(len(chunk))
    progress.close()


def run_bench(config: BenchConfig, out: Path, *, ray_address: str | None = None,
              vectorize: int = 0, shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """Run (or resume) a benchmark into `out`; returns the content of results.json.

    `ray_address` runs the pending batches as Ray tasks (fedsnn/tools/bench/distributed.py): "local"
    starts a Ray instance on this machine, any other value connects to that cluster; None runs
    them here, one after the other. Rows are the same either way (timings aside). `vectorize` > 1
    attacks that many batches of a variant at once through the vectorized engine (DLG, iDLG, GRNN; here
    or in each Ray task; recorded in the variant's settings, since its rows differ from one-at-a-time rows by
    floating-point noise). `shard` (i, n) attacks only the batches b with b % n == i: n processes
    sharing `out` split the work without overlap (rows depend only on the batch, not the shard).

    Example:
        >>> run_bench(BenchConfig("digits", samples=2, iters=5), Path("/tmp/b"))  # doctest: +SKIP
    """
    started = time.time()
    out = out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(config.dataset, config.image_size)
    store = ResultStore(out, config)
    judge = load_judge(data, epochs=config.judge_epochs, seed=0)
    ids = attack_set(data, config)
    batches = [ids[i:i + config.batch_size] for i in range(0, len(ids), config.batch_size)]
    header = {"config": config.row_defining(), "dataset-note": data.note, "attack-set": ids,
              "judge": {"architecture": "lenet5", "test-accuracy": judge.test_accuracy,
                        "attack-set-accuracy": ceiling(data, ids, judge), "key": judge.key,
                        **judge.card()},
              "baselines": baselines(data, ids, judge)}
    for variant in variants(config):
        store.claim(variant, {"variant": variant.key, **attack_settings(variant, config).to_dict(),
                              **({"vectorize": vectorize} if vectorize > 1 else {}),
                              **({"public-size": config.public_size} if config.public_size else {})})
    pending = [(v, b) for v in variants(config) for b in range(len(batches))
               if (v.key, b) not in store.done and (shard is None or b % shard[1] == shard[0])]
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "rows": [v.key for v in variants(config)], "pending-batches": len(pending),
               "torch-threads": torch.get_num_threads(),
               **({"shard": f"{shard[0]}/{shard[1]}"} if shard else {})}
    status = "interrupted"
    try:
        if ray_address is None:
            finished = _local_batches(pending, batches, data, config, judge, store, vectorize)
        else:  # chunks of batches as Ray tasks; rows land here, in the same store
            todo = [(v, b) for v, b in pending if not store.is_done(v, b)]
            session["ray-address"] = ray_address
            finished = ray_batches(todo, batches, config, ray_address, vectorize=vectorize)
        for variant, batch, rows, matched in finished:
            if batch < config.grid:
                _save_reconstruction(out, variant, batch, matched)
            store.add(variant, rows)
            store.write({**header, "status": "running"})
        status = "completed"
    finally:
        session.update(ended=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       **{"wall-time-s": round(time.time() - started, 1), "status": status})
        sessions_file = out / "sessions.jsonl"
        with open(sessions_file, "a") as handle:
            handle.write(json.dumps(session) + "\n")
        sessions = [json.loads(line) for line in sessions_file.read_text().splitlines() if line]
        results = store.write({**header, "status": status, "sessions": sessions})
        write_outputs(out, results, data, config.grid)
    return results
