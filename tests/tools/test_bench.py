"""`fedsnn bench`: outputs, resume, refusal to mix settings, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import fedsnn.tools.bench.batches as bench_batches
from fedsnn.tools.bench import BenchConfig, run_bench, variants
from fedsnn.tools.bench.run import BenchResumeError
from fedsnn.tools.cli import app


@pytest.fixture(autouse=True)
def judge_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDSNN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _config(**changes: object) -> BenchConfig:
    base = dict(dataset="digits", samples=2, iters=2, adam_iters=2, grnn_iters=2,
                lbfgs_max_eval=3, judge_epochs=1, grid=2)
    return BenchConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_rows_table_and_grids(tmp_path: Path) -> None:
    config = _config(optimizers=("lbfgs", "adam"))
    results = run_bench(config, tmp_path)
    assert len(variants(config)) == 10  # (dlg, idlg) x 2 models x 2 optimizers + grnn x 2 models
    assert len(results["rows"]) == 10 * 2
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "completed" and len(saved["summary"]) == 10
    row = saved["rows"][0]
    for key in ("success", "label-correct", "mse", "psnr", "ssim", "true-label", "status"):
        assert key in row
    assert set(saved["baselines"]) == {"mean-image", "black", "gray-0.5"}
    assert 0.0 <= saved["judge"]["attack-set-accuracy"]["value"] <= 1.0
    table = (tmp_path / "table.md").read_text()
    assert "| Attack | Model |" in table and "mean-image" in table and "IDLG" in table
    assert "the ASR ceiling" in table
    assert {p.name for p in tmp_path.glob("grid-*.png")} == {"grid-dlg.png", "grid-idlg.png",
                                                             "grid-grnn.png"}


def test_the_asr_ceiling_is_the_judges_accuracy_on_the_originals() -> None:
    from fedsnn.tools.bench.report import ceiling
    from fedsnn.core.data import load_dataset

    data = load_dataset("digits")

    class Oracle:  # right on every original except those of class 0
        def predict(self, images):  # type: ignore[no-untyped-def]
            index = [int(i) for i in ids]
            return torch.where(data.test_y[index] == 0, 1, data.test_y[index])

    ids = list(range(50))
    expected = float((data.test_y[:50] != 0).float().mean())
    assert ceiling(data, ids, Oracle())["value"] == pytest.approx(expected)  # type: ignore[arg-type]


def test_rerun_skips_finished_rows_and_adds_new_ones(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run_bench(_config(attacks=("idlg",), models=("lenet",)), tmp_path)
    calls: list[str] = []
    real_invert = bench_batches.invert

    def counting_invert(observations, settings, **options):  # type: ignore[no-untyped-def]
        calls.append(settings.attack)
        return real_invert(observations, settings, **options)

    monkeypatch.setattr(bench_batches, "invert", counting_invert)
    results = run_bench(_config(attacks=("idlg", "dlg"), models=("lenet",)), tmp_path)
    assert calls == ["dlg", "dlg"]  # the two iDLG rows were already there
    assert len(results["rows"]) == 4


def test_shards_split_the_batches_and_give_the_unsharded_rows(tmp_path: Path) -> None:
    config = _config(attacks=("idlg",), models=("lenet",), samples=3)
    whole = run_bench(config, tmp_path / "whole")
    first = run_bench(config, tmp_path / "shared", shard=(0, 2))
    assert sorted(r["batch"] for r in first["rows"]) == [0, 2]
    both = run_bench(config, tmp_path / "shared", shard=(1, 2))

    def key(row: dict) -> tuple:
        return row["batch"], row["label-correct"], round(row["mse"], 6), row["steps"]

    assert sorted(map(key, both["rows"])) == sorted(map(key, whole["rows"]))


def test_a_malformed_shard_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--shard", "2/2",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--shard '2/2'" in result.output


@pytest.mark.parametrize("option,value", [
    ("--iters", "-5"), ("--grid", "-1"), ("--image-size", "0"), ("--time-steps", "0"),
    ("--restarts", "0"), ("--adam-iters", "0"), ("--grnn-iters", "0"), ("--lbfgs-max-eval", "0"),
    ("--adam-lr", "0"), ("--accept-loss", "-1"), ("--stop-loss", "nan"), ("--decoder-epochs", "0"),
    ("--samples", "0"), ("--seed", "-1")])
def test_an_out_of_range_option_is_one_line_and_nothing_is_written(
        option: str, value: str, tmp_path: Path) -> None:
    """Issue 28: --iters -5 and --grid -1 wrote bench.json, rows and results.json before failing;
    --image-size 0 and --time-steps 0 (lenet-snn) ended in tracebacks."""
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--models", "lenet-snn",
                                      "--attacks", "idlg", "--samples", "1", option, value,
                                      "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"{option}: expected" in result.output and result.output.count("\n") == 1
    assert not out.exists()


def test_other_settings_in_the_same_folder_are_refused(tmp_path: Path) -> None:
    run_bench(_config(attacks=("idlg",), models=("lenet",)), tmp_path)
    with pytest.raises(BenchResumeError, match="iterations"):
        run_bench(_config(attacks=("idlg",), models=("lenet",), iters=3), tmp_path)
    with pytest.raises(BenchResumeError, match="seed"):
        run_bench(_config(attacks=("idlg",), models=("lenet",), seed=1), tmp_path)


def test_invalid_names_are_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="expected a comma-separated list"):
        _config(attacks=("dlg", "magic"))


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--samples", "1",
                                      "--attacks", "idlg", "--models", "lenet-snn", "--iters", "2",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| IDLG | lenet-snn (SNN) |" in result.output
    bad = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--models", "resnet",
                                   "--out", str(out)])
    assert bad.exit_code == 2 and "resnet" in bad.output


def test_rate_decoder_rows_need_public_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs public-data"):
        _config(attacks=("rate-decoder",))
    config = _config(attacks=("rate-decoder",), models=("lenet-snn",), public_size=200,
                     decoder_epochs=2)
    results = run_bench(config, tmp_path)
    assert len(results["rows"]) == 2 and all(r["status"] == "ok" for r in results["rows"])
    assert "decoder trained on digits train split [:200]" in results["rows"][0]["message"]
    assert results["variants"]["rate-decoder/lenet-snn/lbfgs"]["public-size"] == 200
    refused = CliRunner().invoke(app, ["bench", "--dataset", "digits", "--attacks", "rate-decoder",
                                       "--out", str(tmp_path / "cli")])
    assert refused.exit_code == 2 and "needs public-data" in refused.output
