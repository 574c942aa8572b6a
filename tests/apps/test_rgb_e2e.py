"""Colour data through the whole stack: a Flower simulation with the in-line audit on a CIFAR-100
fixture (3-channel LeNet, judge, SSIM, colour report pictures), and the bench on it and on LFW."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedsnn.tools.bench import BenchConfig, run_bench
from tests.colour_fixtures import write_cifar100, write_lfw
from tests.helpers import simulate

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def judge_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDSNN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _is_colour(png: Path) -> bool:
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return bool((np.abs(pixels[..., 0] - pixels[..., 1]) > 40).any())


def test_in_line_audit_on_colour_images(tmp_path: Path) -> None:
    data = write_cifar100(tmp_path / "data", train=120, test=30)
    config = {"dataset": f"cifar100:{data}", "image-size": 32, "model": "lenet",
              "num-server-rounds": 1, "update-mode": "gradient", "batch-size": 1,
              "learning-rate": 0.01, "audit-rounds": "1", "audit-max-clients": 2,
              "audit-attack": "idlg", "audit-iterations": 100, "audit-time-budget-s": 120.0}
    results = simulate(tmp_path / "runs", config, nodes=2)
    run_dir = Path(results["run-dir"])
    audit = json.loads((run_dir / "audit.json").read_text())
    rows = audit["attacks"]
    assert results["status"] == "completed" and len(rows) == 2, rows
    assert all(row["inferred-labels"] == row["true-labels"] for row in rows)
    # a real colour leak: far above the mean image's PSNR, structure recovered (colour SSIM)
    assert min(row["psnr"] for row in rows) > audit["baselines"]["mean-image"]["psnr"] + 10
    assert min(row["ssim"] for row in rows) > 0.8
    assert _is_colour(run_dir / rows[0]["image"])
    assert (run_dir / "report.html").is_file()


@pytest.mark.parametrize("kind", ["cifar100", "lfw"])
def test_bench_on_colour_fixtures(tmp_path: Path, kind: str) -> None:
    if kind == "cifar100":
        spec = f"cifar100:{write_cifar100(tmp_path / 'data', train=120, test=30)}"
    else:
        spec = f"lfw:{write_lfw(tmp_path / 'data', {'A': 12, 'B': 12, 'C': 12}, side=64)},min=10"
    config = BenchConfig(dataset=spec, attacks=("idlg", "grnn"), samples=2, iters=50,
                         grnn_iters=2, lbfgs_max_eval=5, judge_epochs=2, grid=2)
    results = run_bench(config, tmp_path / "out")
    assert results["status"] == "completed" and len(results["rows"]) == 4 * 2
    judge = results["judge"]  # the judge trained from scratch on colour, beside its baseline
    assert 0.0 <= judge["majority-baseline"] <= 1.0 and 0.0 <= judge["accuracy"] <= 1.0
    assert "majority class" in (tmp_path / "out" / "table.md").read_text()
    assert _is_colour(tmp_path / "out" / "grid-idlg.png")
    idlg_ann = [r for r in results["rows"] if r["variant"] == "idlg/lenet/lbfgs"]
    assert max(r["psnr"] for r in idlg_ann) > 20  # the colour victim leaks (see the audit test)
