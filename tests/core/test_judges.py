"""Judges: trained to convergence once per dataset + settings, then read from the cache; measured
beside the majority-class baseline; the in-line audit's judge never saw the samples it scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import fedsnn.core.judges as judges
from client_app import create_client_app
from fedsnn.audit.decision import Count, rate_test
from fedsnn.audit.report import write_report
from fedsnn.core.data import ImageData, load_dataset
from fedsnn.core.judges.base import image_spec, splits
from fedsnn.core.judges.fit import JudgeTraining, fit
from fedsnn.core.models import build_model
from fedsnn.tools.local_grid import federate_in_process


def test_judge_is_trained_once_then_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_dataset("digits")
    first = judges.load_judge(data, epochs=3, directory=tmp_path)
    assert 0.5 < first.test_accuracy <= 1.0  # 3 epochs on 1,223 digits: already far above chance
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached judge should have been used")

    monkeypatch.setattr(judges, "train_judge", no_training)
    again = judges.load_judge(data, epochs=3, directory=tmp_path)
    assert again.test_accuracy == first.test_accuracy and again.key == first.key
    assert again.card() == first.card()  # baseline and training record come back from the cache
    x = data.test_x[:16]
    assert torch.equal(again.predict(x), first.predict(x))
    assert judges.judge_key(data, epochs=2, seed=0) != first.key  # other settings, other judge


def tiny(n: int = 40, classes: int = 4, seed: int = 0) -> ImageData:
    """Noise images with random labels: nothing a judge can learn."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((2 * n, 1, 16, 16), generator=generator)
    y = torch.randint(0, classes, (2 * n,), generator=generator)
    return ImageData("tiny", x[:n], y[:n], x[n:], y[n:], classes)


def test_a_judge_that_does_not_beat_the_majority_class_is_flagged(tmp_path: Path) -> None:
    data = tiny()
    judge = judges.train_judge(data, epochs=3)
    assert judge.baseline == judges.majority_accuracy(data)
    assert judge.trials == 40 and not judge.meaningful
    card = judge.card()
    assert card["majority-baseline"] == judge.baseline and card["asr-meaningful"] is False
    assert "not meaningful" in judges.judge_sentence(card)
    assert judges.flag_asr("0.500", card) == "not meaningful (0.500)"
    # the audit report says so beside every ASR
    audit = {"plan": {"attack": "idlg"}, "judge": card, "baselines": {"black": {"asr": 0.5}},
             "attacks": [{"round": 1, "partition-id": 0, "status": "ok", "psnr": 10.0,
                          "ssim": 0.1, "mse": 0.1, "asr": 0.5, "label-accuracy": 1.0,
                          "images": 2, "tests": {"asr": rate_test(
                              "asr", Count(1, 2), {"matched-noise": Count(1, 2)}).to_dict()}}],
             "skipped": []}
    (tmp_path / "audit.json").write_text(json.dumps(audit))
    (tmp_path / "results.json").write_text(json.dumps({"config": {"model": "lenet"}, "rounds": []}))
    markdown = write_report(tmp_path)[0].read_text()
    assert markdown.count("not meaningful (0.500") == 2  # guess and per-attack rows
    assert "not beyond chance 50 %, matched-noise" in markdown  # beside its null
    assert "not meaningful (0.50 [" in markdown  # the summary's pooled rate with its interval
    assert "majority class" in markdown


def test_a_good_judge_is_meaningful_and_reported_beside_its_baseline() -> None:
    data = load_dataset("digits", 16)
    judge = judges.train_judge(data, split="test")  # early-stopped: ~30 epochs, 0.90 (5 s)
    assert judge.split == "test" and judge.trials == len(data.train_y)  # measured on train
    majority = int(data.test_y.bincount().argmax())  # of the split it was fit on, guessed on train
    assert judge.baseline == pytest.approx(float((data.train_y == majority).float().mean()))
    assert judge.test_accuracy > 0.8 and judge.meaningful
    assert "not meaningful" not in judges.judge_sentence(judge.card())


def test_training_stops_early_and_within_its_time() -> None:
    data = tiny(seed=1)
    model = build_model(image_spec(data))
    patient = fit(model, data.train_x, data.train_y, JudgeTraining(max_epochs=50, patience=2),
                  seed=0)
    assert patient.epochs < 50 and patient.epochs - patient.best_epoch == 2
    assert "no better validation accuracy" in patient.stopped
    ticks = iter(range(0, 10_000, 100))  # every clock reading: 100 s later
    timed = fit(model, data.train_x, data.train_y,
                JudgeTraining(max_epochs=50, patience=50, time_limit_s=150), seed=0,
                clock=lambda: float(next(ticks)))
    assert timed.epochs == 2 and "time limit" in timed.stopped


@pytest.mark.slow
def test_the_in_line_judge_never_saw_the_samples_it_scores(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import server_app

    asked: list[str] = []

    def recording(data: ImageData, **kwargs: object) -> judges.Judge:
        asked.append(str(kwargs.get("split")))
        return judges.train_judge(data, epochs=1, split=str(kwargs.get("split", "train")))

    monkeypatch.setattr(server_app, "load_judge", recording)
    run_config = {"model": "lenet", "image-size": 16, "num-server-rounds": 1,
                  "update-mode": "gradient", "batch-size": 1, "audit-iterations": 2,
                  "audit-workers": 0, "output-dir": str(tmp_path)}
    run_dir = federate_in_process(server_app.run, create_client_app(run_config), run_config, 2)
    audit = json.loads((run_dir / "audit.json").read_text())
    # the audit scores clients' train samples; its judge is fit on the test split only
    assert asked == ["test"]
    assert audit["judge"]["trained-on"] == "test split"
    assert audit["judge"]["measured-on"] == "train split"
    assert "fit on the test split only, never saw them" in (run_dir / "report.md").read_text()
    fit_x, _, held_x, _ = splits(load_dataset("digits", 16), "test")
    assert fit_x.data_ptr() == load_dataset("digits", 16).test_x.data_ptr()
    assert held_x.data_ptr() == load_dataset("digits", 16).train_x.data_ptr()
    assert audit["attacks"] and all(row["status"] != "unscored" for row in audit["attacks"])


def test_majority_class_baseline_guesses_the_most_frequent_train_label() -> None:
    from fedsnn.core.data import ImageData

    x = torch.zeros(6, 3, 12, 12)
    data = ImageData("toy", x, torch.tensor([2, 2, 2, 0, 1, 1]), x[:4], torch.tensor([2, 0, 2, 1]), 3)
    assert judges.majority_accuracy(data) == 0.5
