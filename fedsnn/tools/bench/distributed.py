"""`fedsnn bench` on Ray: the pending batches, in chunks, as Ray tasks.

Each task runs `fedsnn.tools.bench.batches.attack_batches` on its chunk (the same function, the
same seeds as a local run) and returns the rows; the driver writes them into the bench folder as
tasks finish, so a Ray run resumes and shares folders exactly as a local run does.

- `ray_address="local"`: a Ray instance on this machine (one task per CPU).
- any other address (e.g. "ray://head:10001" or "auto"): an existing cluster, whose workers must
  have this repository importable and the dataset at the same path (and the judge cache, or time
  to train the judge once per worker).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from fedsnn.core.data import load_dataset
from fedsnn.core.judges import load_judge
from fedsnn.tools.bench.batches import attack_batches
from fedsnn.tools.bench.config import BenchConfig, Variant

REPO = Path(__file__).resolve().parents[3]
CHUNK_BATCHES = 4  # batches per task: enough work to amortize a task's dataset and judge loading

Finished = tuple[Variant, int, list[dict[str, Any]], torch.Tensor]


def run_chunk(chunk: Sequence[tuple[Variant, int, list[int]]], config: BenchConfig,
              threads: int = 1, vectorize: int = 0) -> list[Finished]:
    """What a Ray task runs: `attack_batches` on the (variant, batch, sample ids) of `chunk`, per
    variant (`vectorize` > 1: through the vectorized engine, as a local run does)."""
    torch.set_num_threads(threads)
    data = load_dataset(config.dataset, config.image_size)
    judge = load_judge(data, epochs=config.judge_epochs, seed=0)
    finished: list[Finished] = []
    for variant in dict.fromkeys(v for v, _, _ in chunk):
        items = [(batch, ids) for v, batch, ids in chunk if v == variant]
        finished += [(variant, batch, rows, matched) for batch, rows, matched
                     in attack_batches(variant, items, data, config, judge, vectorize)]
    return finished


def connect(ray_address: str) -> None:
    """Start ("local") or join (an address) a Ray cluster, once per process."""
    import ray

    if ray.is_initialized():
        return
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}}
    if ray_address == "local":
        ray.init(include_dashboard=False, log_to_driver=False, runtime_env=env)
    else:
        ray.init(address=ray_address, log_to_driver=False, runtime_env=env)


def ray_batches(todo: Sequence[tuple[Variant, int]], batches: Sequence[list[int]],
                config: BenchConfig, ray_address: str, chunk_batches: int = CHUNK_BATCHES,
                vectorize: int = 0) -> Iterator[Finished]:
    """Run `todo` ((variant, batch) pairs) as Ray tasks of `chunk_batches` batches (at least
    `vectorize`); yield each batch's (variant, batch, rows, matched) as its task finishes."""
    import ray

    if not todo:
        return
    connect(ray_address)
    remote = ray.remote(num_cpus=1)(run_chunk)
    work = [(variant, batch, batches[batch]) for variant, batch in todo]
    size = max(chunk_batches, vectorize)
    running = [remote.remote(work[i:i + size], config, 1, vectorize)
               for i in range(0, len(work), size)]
    while running:
        ready, running = ray.wait(running, num_returns=1)
        yield from ray.get(ready[0])
