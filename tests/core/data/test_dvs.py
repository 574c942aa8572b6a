"""Event modality: the DVSGesture loader on a tiny folder in tonic's layout, dvs-digits, config
checks, the DVS judge, spike-domain thresholding sweeps and Table VI distances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attacks.spiking import binarize
from fedsnn.core.config import ConfigError, RunConfig
from fedsnn.core.data import DatasetError, ImageData, load_dataset
from fedsnn.core.data.dvs import GESTURE_CLASSES
from fedsnn.core.metrics.spikes import class_distance_stats
from fedsnn.core.models import ModelSpec
from tests.helpers import simulate


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Framed datasets cached under the test's folder (not ~/.cache)."""
    monkeypatch.setenv("FEDSNN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _recording(rng: np.random.Generator, n: int = 400) -> np.ndarray:
    """A DVSGesture .npy recording: N x 4 [x, y, p, t in ms], sorted by time."""
    t = np.sort(rng.integers(0, 6000, n))
    return np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), t],
                    axis=1).astype(np.float64)


def _gesture_folder(root: Path, splits: tuple[str, ...] = ("ibmGestureTrain", "ibmGestureTest"),
                    labels: tuple[int, ...] = (0, 3, 10)) -> Path:
    """<root>/DVSGesture/<split>/user<k>_<lighting>/<label>.npy, as tonic extracts it."""
    rng = np.random.default_rng(0)
    for split in splits:
        for user in ("user01_fluorescent", "user02_led"):
            folder = root / "DVSGesture" / split / user
            folder.mkdir(parents=True)
            for label in labels:
                np.save(folder / f"{label}.npy", _recording(rng))
    return root


def _no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    from tonic.datasets import DVSGesture

    def fail(self: object) -> None:
        raise AssertionError("tonic tried to download")

    monkeypatch.setattr(DVSGesture, "download", fail)


def test_dvsgesture_reads_a_tiny_folder_in_tonics_layout(
        tmp_path: Path, own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_download(monkeypatch)
    root = _gesture_folder(tmp_path / "dvs")
    data = load_dataset(f"dvsgesture:{root},frames=4", 32)
    assert len(list((own_cache / "datasets").glob("dvsgesture-*.npz"))) == 2  # framed once
    assert data.train_x.shape == (6, 4, 2, 32, 32) and data.test_x.shape == (6, 4, 2, 32, 32)
    assert sorted(data.train_y.tolist()) == [0, 0, 3, 3, 10, 10]
    assert data.num_classes == GESTURE_CLASSES and data.in_channels == 2 and data.image_size == 32
    assert set(data.train_x.unique().tolist()) <= {0.0, 1.0} and data.train_x.sum() > 0
    assert "standard train/test" in data.note
    again = load_dataset(f"dvsgesture:{root},frames=4", 28)   # another size: framed anew
    assert again.train_x.shape == (6, 4, 2, 28, 28)


def test_dvsgesture_frames_hold_every_downsampled_event(tmp_path: Path) -> None:
    from tonic.transforms import Downsample

    from fedsnn.core.data.dvs import _gesture_class, events_to_frames

    root = _gesture_folder(tmp_path / "dvs", splits=("ibmGestureTrain",), labels=(1,))
    events, label = _gesture_class()(str(root), train=True)[0]
    assert label == 1 and events["t"][-1] >= 1000                # ms became µs
    frames = events_to_frames(Downsample(spatial_factor=0.25)(events), (32, 32, 2), 5)
    assert frames.shape == (5, 2, 32, 32) and int(frames.sum()) == len(events)


def test_dvsgesture_with_one_split_divides_it(tmp_path: Path, own_cache: Path) -> None:
    root = _gesture_folder(tmp_path / "dvs", splits=("ibmGestureTest",), labels=tuple(range(5)))
    data = load_dataset(f"dvsgesture:{root},frames=2", 16)
    assert len(data.train_x) == 8 and len(data.test_x) == 2 and "only the test split" in data.note


def test_dvsgesture_missing_folder_fails_clearly(tmp_path: Path, own_cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _no_download(monkeypatch)
    with pytest.raises(DatasetError, match="ibmGestureTrain/user01_fluorescent/0.npy"):
        load_dataset(f"dvsgesture:{tmp_path / 'nowhere'}", 32)
    (tmp_path / "empty" / "DVSGesture" / "ibmGestureTrain").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no .npy recordings"):
        load_dataset(f"dvsgesture:{tmp_path / 'empty'}", 32)


JUNK_EVENTS = {
    "not N x 4": (np.zeros((10, 3)), "N x 4 numeric array"),
    "one row of numbers": (np.arange(8.0), "N x 4 numeric array"),
    "x off the sensor": (np.array([[130, 5, 1, 10.0]] * 3), "x outside the 128x128 sensor"),
    "y below zero": (np.array([[3, -1, 0, 10.0]] * 3), "y outside the 128x128 sensor"),
    "polarity 2": (np.array([[3, 4, 2, 10.0]] * 3), "polarity must be 0 or 1"),
    "NaN time": (np.array([[3, 4, 1, np.nan]] * 3), "NaN/Inf"),
}


@pytest.mark.parametrize("junk", sorted(JUNK_EVENTS))
def test_a_junk_dvsgesture_recording_is_one_line_naming_the_file(
        junk: str, tmp_path: Path, own_cache: Path) -> None:
    """Issue 28: these ended in an IndexError from inside tonic."""
    events, reason = JUNK_EVENTS[junk]
    root = _gesture_folder(tmp_path / "dvs", splits=("ibmGestureTrain",), labels=(1, 2))
    bad = root / "DVSGesture" / "ibmGestureTrain" / "user02_led" / "2.npy"
    np.save(bad, events)
    with pytest.raises(DatasetError) as raised:
        load_dataset(f"dvsgesture:{root},frames=2", 16)
    assert str(bad) in str(raised.value) and reason in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.slow
def test_dvs_digits_source() -> None:
    data = load_dataset("dvs-digits", 28)
    assert data.train_x.shape == (1438, 4, 2, 28, 28) and data.test_x.shape == (359, 4, 2, 28, 28)
    assert data.num_classes == 10 and set(data.train_x[:50].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(data.test_y, load_dataset("digits", 28).test_y)   # the digits' split
    assert torch.equal(load_dataset("dvs-digits:frames=4,seed=0", 28).train_x, data.train_x)


def _config(**changes: object) -> RunConfig:
    base = {"dataset": "dvs-digits", "model": "lenet-snn", "encoding": "frames", "time-steps": 4,
            "audit-enabled": False}
    return RunConfig.from_mapping({**base, **changes})


def test_config_accepts_event_data_with_frames() -> None:
    assert _config().time_steps == 4
    assert _config(**{"dataset": "dvs-digits:frames=6", "time-steps": 6}).dataset.endswith("6")


@pytest.mark.parametrize(("changes", "message"), [
    ({"time-steps": 6}, "time-steps: dataset 'dvs-digits' has 4 frames"),
    ({"encoding": "direct"}, "encoding='frames'"),
    ({"model": "lenet", "encoding": "direct"}, "encoding='frames'"),
    ({"audit-enabled": True}, "audit-enabled"),
    ({"dataset": "digits"}, "'frames' needs an event dataset"),
    ({"dataset": "dvs-digits:frames=zero"}, "dataset: dvs-digits"),
])
def test_config_rejects_event_data_misuse(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(**changes)


def _tiny_events(n: int = 24, classes: int = 3) -> ImageData:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = (torch.rand((n, 2, 2, 8, 8), generator=generator) < 0.1).float()
    x[torch.arange(n), :, y % 2, :, :] = (y.view(-1, 1, 1, 1) >= 1).float()  # a learnable cue
    return ImageData("dvs-digits", x, y, x[:6], y[:6], classes)


def test_dvs_judge_is_trained_once_then_cached(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from fedsnn.core.judges import dvs as judges_dvs
    from fedsnn.core.judges import load_judge

    data = _tiny_events()
    judge = load_judge(data, epochs=2, directory=tmp_path)
    assert 0.0 <= judge.test_accuracy <= 1.0 and judge.key.startswith("dvs-digits-")
    assert judge.predict(data.test_x).shape == (6,)
    monkeypatch.setattr(judges_dvs, "fit_judge", lambda *a, **k: pytest.fail("retrained"))
    cached = load_judge(data, epochs=2, directory=tmp_path)
    assert cached.key == judge.key and cached.test_accuracy == judge.test_accuracy
    assert torch.equal(cached.predict(data.test_x), judge.predict(data.test_x))


def test_table_i_architecture() -> None:
    from fedsnn.core.judges.dvs import WIDTHS, DVSGestureSNN

    net = DVSGestureSNN(2, 11)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs[:2]] == [64, 128] and convs[1].stride == (2, 2)
    assert net.classifier.in_features == 512 and net.classifier.out_features == 11
    assert DVSGestureSNN(2, 10, WIDTHS["small"])(torch.zeros(2, 3, 2, 16, 16)).shape == (2, 10)


def test_thresholding_sweeps_return_binary_tensors() -> None:
    from fedsnn.tools.bench.events import EventBenchConfig, attack_sample

    config = EventBenchConfig("dvs-digits:frames=2", thresholds=(0.1, 0.5, 0.9), iters=3)
    spec = ModelSpec("lenet-snn", in_channels=2, num_classes=3, image_size=8, time_steps=2,
                     encoding="frames")
    x, y = _tiny_events().train_x[1:2], torch.tensor([1])
    runs = attack_sample((config, spec, 0, x, y))["runs"]
    assert sorted(runs) == ["dlg/in/0.1", "dlg/in/0.5", "dlg/in/0.9", "dlg/post",
                            "idlg/in/0.1", "idlg/in/0.5", "idlg/in/0.9", "idlg/post"]
    for key, run in runs.items():
        assert run["inputs"].shape == (2, 1, 2, 8, 8)
        sweep = ([binarize(run["inputs"], t) for t in config.thresholds] if key.endswith("post")
                 else [run["inputs"]])
        for spikes in sweep:
            assert set(spikes.unique().tolist()) <= {0.0, 1.0}
        if key.endswith("post"):
            assert (run["inputs"] >= 0).all()                  # non-negative, not clamped to 1


def test_class_distance_stats() -> None:
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    stats = class_distance_stats(x, torch.tensor([0, 0, 1, 1]))
    assert stats["intra"] == {"mean": 1.0, "std": 0.0, "min": 1.0, "max": 1.0, "pairs": 2}
    assert stats["inter"]["pairs"] == 4 and stats["inter"]["min"] == 2.0
    assert stats["inter"]["max"] == 3.0 and stats["inter"]["mean"] == 2.5


@pytest.mark.slow
def test_two_rounds_of_lenet_snn_on_dvs_digits(tmp_path: Path) -> None:
    overrides = {"dataset": "dvs-digits", "model": "lenet-snn", "encoding": "frames",
                 "time-steps": 4, "audit-enabled": False, "num-server-rounds": 2}
    results = simulate(tmp_path, overrides, nodes=2)
    accuracy = [e["central"]["accuracy"] for e in results["rounds"]]
    assert results["status"] == "completed" and results["model-spec"]["in_channels"] == 2
    assert accuracy[-1] > 0.3, accuracy                    # chance is 0.1


@pytest.mark.slow
def test_event_bench_writes_tables_v_vi_and_frames(tmp_path: Path) -> None:
    import json

    from fedsnn.tools.bench.events import EventBenchConfig, run_event_bench

    config = EventBenchConfig("dvs-digits", samples=2, iters=2, thresholds=(0.25, 0.5),
                              workers=1, pictures=1, judge_epochs=1)
    results = run_event_bench(config, tmp_path / "bench")
    table = (tmp_path / "bench" / "table.md").read_text()
    assert "**Table V**" in table and "**Table VI**" in table and "| 0.5 | IDLG |" in table
    assert (tmp_path / "bench" / "frames.png").is_file() and results["status"] == "completed"
    assert {r["n"] for r in results["summary"]} == {2} and len(results["summary"]) == 2 * (1 + 2 + 2)
    assert results["table-vi"]["intra"]["pairs"] > 0 and 0 < results["judge"]["test-accuracy"] <= 1
    rows = (tmp_path / "bench" / "rows.jsonl").read_text().splitlines()
    assert len(rows) == 2 * 2 * (1 + 2 + 2) and json.loads(rows[0])["l1"] >= 0
    again = run_event_bench(config, tmp_path / "bench")    # resumes: nothing left to attack
    assert again["summary"] == results["summary"]
