"""`fedsnn bench` on Ray gives the rows of a local run (fedsnn/tools/bench/distributed.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsnn.tools.bench.config import BenchConfig
from fedsnn.tools.bench.run import run_bench

TIMING = ("seconds",)


def _rows(results: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in results["rows"]]


@pytest.mark.slow
def test_ray_and_local_bench_give_the_same_rows_and_resume(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    config = BenchConfig("digits", attacks=("idlg", "dlg"), models=("lenet", "lenet-snn"),
                         samples=3, iters=2, grnn_iters=2, judge_epochs=1, grid=1)
    local = run_bench(config, tmp_path / "local")
    try:
        distributed = run_bench(config, tmp_path / "ray", ray_address="local")
        assert _rows(distributed) == _rows(local)
        again = run_bench(config, tmp_path / "ray", ray_address="local")  # resumes: nothing to do
        assert again["sessions"][-1]["pending-batches"] == 0 and _rows(again) == _rows(local)
    finally:
        ray.shutdown()


def test_vectorized_bench_gives_the_rows_of_the_one_at_a_time_bench(tmp_path: Path) -> None:
    config = BenchConfig("digits", attacks=("idlg",), models=("lenet", "lenet-snn"), samples=3,
                         iters=1, lbfgs_max_eval=3, judge_epochs=1, grid=1)
    single = run_bench(config, tmp_path / "single")["rows"]
    batched = run_bench(config, tmp_path / "batched", vectorize=3)["rows"]
    keys = ("variant", "batch", "sample", "true-label", "inferred-label", "status", "steps")
    assert [{k: r[k] for k in keys} for r in batched] == [{k: r[k] for k in keys} for r in single]
    assert [r["matching-loss"] for r in batched] == pytest.approx(
        [r["matching-loss"] for r in single], rel=1e-2)
    assert json.loads((tmp_path / "batched" / "rows" / "idlg_lenet_lbfgs.settings.json")
                      .read_text())["vectorize"] == 3


def test_a_ray_chunk_gives_the_rows_of_a_local_run(tmp_path: Path) -> None:
    from fedsnn.tools.bench.config import variants
    from fedsnn.tools.bench.distributed import run_chunk
    from fedsnn.tools.bench.run import attack_set
    from fedsnn.core.data import load_dataset

    config = BenchConfig("digits", attacks=("idlg",), models=("lenet",), samples=2, iters=1,
                         lbfgs_max_eval=3, judge_epochs=1, grid=1)
    local = run_bench(config, tmp_path / "local")["rows"]
    ids = attack_set(load_dataset(config.dataset), config)
    variant = variants(config)[0]
    for vectorize in (0, 2):
        chunk = run_chunk([(variant, b, [ids[b]]) for b in range(2)], config, vectorize=vectorize)
        rows = [row for _, _, batch_rows, _ in chunk for row in batch_rows]
        assert [r["inferred-label"] for r in rows] == [r["inferred-label"] for r in local]
        assert [r["matching-loss"] for r in rows] == pytest.approx(
            [r["matching-loss"] for r in local], rel=1e-2 if vectorize else 1e-9)
