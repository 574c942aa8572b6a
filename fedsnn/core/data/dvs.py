"""Event datasets as spike frames: `dvs-digits` (embedded, offline) and `dvsgesture:<dir>` (DVS128
Gesture from a local copy, through tonic).

Both give an `ImageData` whose x are binary spike frames [N, T, 2, H, W] (float 0/1; channel 0 =
OFF, 1 = ON events; a pixel spikes in a frame when it had at least one event of that polarity in
its time bin), so the `frames` encoding feeds them to a spiking model unchanged. Events become
frames with tonic's `ToFrame`, sliced into T equal time windows that cover the whole recording:
`ToFrame(n_time_bins=T)` floors the window length and drops the events at the end of a recording
(those at t_max, and more), so `events_to_frames` passes a window and start/end times instead.

Specs (options after commas, `frames` = T):

- `dvs-digits` or `dvs-digits:frames=4,seed=0`: scikit-learn's 1,797 digits played to a simulated
  DVS (`fedsnn.core.data.events`) on an `image-size` sensor; the same 80/20 split as `digits`.
- `dvsgesture:<dir>` or `dvsgesture:<dir>,frames=16`: DVS128 Gesture from tonic's extracted layout
  under `<dir>` (nothing is downloaded), 11 classes, the standard train/test users; the 128x128
  sensor downsampled to `image-size` (32 is the usual choice for LeNet-size models) with tonic's
  `Downsample`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedsnn.core.data.events import PixelModel, saccade_events
from fedsnn.core.data.base import DatasetError, ImageData, _split, _train_test

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the pixel model or the framing changes: cached frames are rebuilt
GESTURE_SENSOR = 128
GESTURE_CLASSES = 11
GESTURE_LAYOUT = ("<dir>/DVSGesture/ibmGestureTrain/user01_fluorescent/0.npy … and "
                  "<dir>/DVSGesture/ibmGestureTest/user24_fluorescent/0.npy … (N x 4 arrays: x, y, "
                  "p, t in ms; the two archives ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz "
                  "extracted there)")


@dataclass(frozen=True)
class EventSpec:
    """A parsed event-dataset spec: the source, its folder (if any) and its options."""

    kind: str
    folder: str = ""
    frames: int = 4
    seed: int = 0


DEFAULT_FRAMES = {"dvs-digits": 4, "dvsgesture": 16}
OPTIONS: dict[str, Callable[[str], object]] = {"frames": int, "seed": int}


def parse_event_spec(spec: str) -> EventSpec | None:
    """The parsed spec of an event dataset, or None for an image dataset.

    Raises:
        DatasetError: an event spec with an unknown or malformed option.

    Example:
        >>> parse_event_spec("dvsgesture:/data/dvs,frames=16").frames
        16
        >>> parse_event_spec("digits") is None
        True
    """
    kind, _, argument = spec.partition(":")
    if kind not in DEFAULT_FRAMES:
        return None
    parts = [part.strip() for part in argument.split(",")] if argument else []
    folder = parts.pop(0) if kind == "dvsgesture" and parts and "=" not in parts[0] else ""
    values: dict[str, object] = {"frames": DEFAULT_FRAMES[kind]}
    for part in parts:
        key, _, value = part.partition("=")
        if key not in OPTIONS or not value:
            raise DatasetError(f"{kind}: unknown option {part!r} in {spec!r}; expected "
                               f"{', '.join(f'{k}=<int>' for k in OPTIONS)}")
        try:
            values[key] = OPTIONS[key](value)
        except ValueError:
            raise DatasetError(f"{kind}: option {key} expects an integer, got {value!r}") from None
    if int(values["frames"]) < 1:  # type: ignore[call-overload]
        raise DatasetError(f"{kind}: frames must be >= 1, got {values['frames']}")
    if kind == "dvsgesture" and not folder:
        raise DatasetError(f"dvsgesture: expected 'dvsgesture:<dir>[,frames=T]' with {GESTURE_LAYOUT}")
    return EventSpec(kind, folder, **values)  # type: ignore[arg-type]


def events_to_frames(events: np.ndarray, sensor_size: tuple[int, int, int], n_frames: int
                     ) -> np.ndarray:
    """Event counts per time bin with tonic's ToFrame, every event kept: int16 [T, P, H, W].

    The recording [t_first, t_last] is cut into `n_frames` windows of ceil(span / T) µs, the last
    one ending after t_last, so the frames hold exactly `len(events)` events.
    """
    from tonic.transforms import ToFrame

    width, height, polarities = sensor_size
    if len(events) == 0:
        return np.zeros((n_frames, polarities, height, width), dtype=np.int16)
    if np.any(np.diff(events["t"]) < 0):
        events = events[np.argsort(events["t"], kind="stable")]
    start = int(events["t"][0])
    window = -(-(int(events["t"][-1]) - start + 1) // n_frames)
    frames = ToFrame(sensor_size=sensor_size, time_window=window, start_time=start,
                     end_time=start + n_frames * window)(events)
    return frames.astype(np.int16, copy=False)


def to_spikes(frames: Iterable[np.ndarray]) -> torch.Tensor:
    """Binary spike frames (float 0/1) [N, T, P, H, W] from event-count frames."""
    return torch.from_numpy(np.stack([np.minimum(f, 1) for f in frames]).astype(np.float32))


def cache_path(name: str) -> Path:
    """Where built frames are cached: $FEDSNN_CACHE (default ~/.cache/fedsnn)/datasets/<name>.npz."""
    root = Path(os.environ.get("FEDSNN_CACHE", Path.home() / ".cache" / "fedsnn"))
    return root / "datasets" / f"{name}.npz"


def cached_spikes(name: str, build: Callable[[], tuple[torch.Tensor, torch.Tensor, str]]
                  ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Spike frames, labels and a note, built once and cached on disk as uint8 (event data takes
    seconds to minutes to frame; every Flower client process loads it)."""
    path = cache_path(name)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as saved:
                return (torch.from_numpy(saved["x"].astype(np.float32)),
                        torch.from_numpy(saved["y"].astype(np.int64)), str(saved["note"]))
        except (OSError, ValueError, KeyError):
            pass  # a torn or corrupt cache entry is rebuilt
    x, y, note = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, x=x.numpy().astype(np.uint8), y=y.numpy(), note=np.array(note))
    os.replace(tmp, path)
    return x, y, note


def load_dvs_digits(argument: str, image_size: int = 28) -> ImageData:
    """The embedded digits as DVS recordings (`fedsnn.core.data.events`), as spike frames."""
    spec = parse_event_spec(f"dvs-digits:{argument}" if argument else "dvs-digits")
    assert spec is not None

    def build() -> tuple[torch.Tensor, torch.Tensor, str]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        streams = saccade_events(bunch.images / 16.0, model=PixelModel(sensor=image_size),
                                 seed=spec.seed)
        sensor_size = (image_size, image_size, 2)
        x = to_spikes(events_to_frames(events, sensor_size, spec.frames) for events in streams)
        mean_events = np.mean([len(e) for e in streams])
        return x, torch.tensor(bunch.target, dtype=torch.long), (
            f"scikit-learn digits as simulated DVS saccade recordings ({mean_events:.0f} events per "
            f"digit on average, seed {spec.seed}), {spec.frames} binary frames x 2 polarities x "
            f"{image_size}x{image_size}")

    name = f"dvs-digits-v{CACHE_VERSION}-{image_size}px-{spec.frames}f-seed{spec.seed}"
    x, y, note = cached_spikes(name, build)
    train_x, train_y, test_x, test_y = _split(x, y, 0.2)
    return ImageData("dvs-digits", train_x, train_y, test_x, test_y, 10,
                     note=f"dvs-digits: {note}; train {len(train_x)} / test {len(test_x)}")


def _gesture_class() -> type:
    """tonic's DVSGesture that reads what is on disk and never downloads."""
    from tonic.datasets import DVSGesture

    class OfflineDVSGesture(DVSGesture):
        """DVSGesture over the extracted files alone (tonic also wants the archive file and at
        least 100 recordings, and downloads otherwise)."""

        def _check_exists(self) -> bool:
            return self._folder_contains_at_least_n_files_of_type(1, ".npy")

        def download(self) -> None:
            raise DatasetError(f"dvsgesture: no recordings in {self.location_on_system}/"
                               f"{self.folder_name}; expected {GESTURE_LAYOUT}")

    OfflineDVSGesture.__name__ = "DVSGesture"  # tonic reads <save_to>/<class name>/
    return OfflineDVSGesture


def _gesture_split(folder: Path, train: bool, image_size: int, frames: int
                   ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """One split as spike frames, read through tonic and downsampled with `Downsample`."""
    from tonic.transforms import Downsample

    dataset = _gesture_class()(str(folder), train=train)
    size = min(image_size, GESTURE_SENSOR)
    downsample = Downsample(spatial_factor=size / GESTURE_SENSOR)
    sensor_size = (size, size, 2)
    x, y = [], []
    for index in range(len(dataset)):
        try:
            problem = gesture_events_problem(np.load(dataset.data[index], allow_pickle=False))
            if problem is None:
                events, label = dataset[index]
        except (OSError, ValueError) as error:
            problem = str(error)
        if problem is not None:
            raise DatasetError(f"dvsgesture: cannot read {dataset.data[index]}: {problem}")
        x.append(events_to_frames(downsample(events), sensor_size, frames))
        y.append(int(label))
    return to_spikes(x), torch.tensor(y, dtype=torch.long), f"{len(y)} recordings"


def gesture_events_problem(raw: np.ndarray) -> str | None:
    """What is wrong with a DVS128 Gesture recording as tonic's .npy holds it (N x 4 rows of x, y,
    polarity, t in ms; x and y on the 128x128 sensor, polarity 0/1), or None when nothing is.

    Example:
        >>> gesture_events_problem(np.array([[0, 0, 1, 5.0], [200, 3, 0, 6.0]]))
        'x outside the 128x128 sensor (200 in row 1)'
    """
    if raw.ndim != 2 or raw.shape[1] != 4 or raw.dtype.kind not in "iuf":
        return (f"expected events as an N x 4 numeric array (x, y, polarity, t), got shape "
                f"{raw.shape} of {raw.dtype}")
    if not np.isfinite(raw).all():
        return "events hold NaN/Inf values"
    for column, name in ((0, "x"), (1, "y")):
        bad = np.flatnonzero((raw[:, column] < 0) | (raw[:, column] >= GESTURE_SENSOR)
                             | (raw[:, column] != np.floor(raw[:, column])))
        if bad.size:
            return (f"{name} outside the {GESTURE_SENSOR}x{GESTURE_SENSOR} sensor "
                    f"({raw[bad[0], column]:g} in row {bad[0]})")
    bad = np.flatnonzero(~np.isin(raw[:, 2], (0, 1)))
    if bad.size:
        return f"polarity must be 0 or 1 ({raw[bad[0], 2]:g} in row {bad[0]})"
    return None


def _gesture_recordings(folder: Path, split: str) -> list[Path]:
    return sorted((folder / "DVSGesture" / split).glob("*/*.npy"))


def _fingerprint(files: list[Path], *options: object) -> str:
    entries = [(str(f), f.stat().st_size, int(f.stat().st_mtime)) for f in files]
    return hashlib.sha256(repr((entries, options)).encode()).hexdigest()[:16]


def load_dvsgesture(argument: str, image_size: int = 32) -> ImageData:
    """DVS128 Gesture from tonic's extracted layout under a local folder, as spike frames (each
    split framed once, then cached on disk by its files' names, sizes and times).

    Uses whichever splits are there: both (the standard train/test users), or one, split 80/20.

    Raises:
        DatasetError: the folder or its recordings are missing (the message shows the layout).
    """
    spec = parse_event_spec(f"dvsgesture:{argument}")
    assert spec is not None
    folder = Path(spec.folder).expanduser().resolve()
    if not (folder / "DVSGesture").is_dir():
        raise DatasetError(f"dvsgesture: {folder}/DVSGesture does not exist; expected "
                           f"{GESTURE_LAYOUT}")
    found = {}
    for split, subfolder in (("train", "ibmGestureTrain"), ("test", "ibmGestureTest")):
        files = _gesture_recordings(folder, subfolder)
        if files:
            key = _fingerprint(files, image_size, spec.frames, CACHE_VERSION)
            x, y, _ = cached_spikes(f"dvsgesture-{split}-{key}", lambda train=split == "train":
                                    _gesture_split(folder, train, image_size, spec.frames))
            found[split] = (x, y)
    if not found:
        raise DatasetError(f"dvsgesture: no .npy recordings under {folder}/DVSGesture; expected "
                           f"{GESTURE_LAYOUT}")
    (train_x, train_y, test_x, test_y), only = _train_test(found)
    how = f"only the {only} split is present; split 80/20" if only else "standard train/test users"
    side = train_x.shape[-1]
    note = (f"DVS128 Gesture from {folder}: {spec.frames} binary frames x 2 polarities x "
            f"{side}x{side} (downsampled from 128); train {len(train_x)} / test {len(test_x)} "
            f"({how})")
    log.info(note)
    return ImageData(f"dvsgesture:{folder}", train_x, train_y, test_x, test_y, GESTURE_CLASSES,
                     note=note)


def event_frames(spec: str) -> int | None:
    """Frames per sample of an event dataset spec (what `time-steps` must be), None for images."""
    parsed = parse_event_spec(spec)
    return None if parsed is None else parsed.frames
