"""A DVS pixel model: event streams from still images moved along saccades, as N-MNIST was recorded.

N-MNIST (Orchard et al. 2015) was recorded by moving an event camera in front of MNIST digits
along three short saccades forming a triangle. This module plays the same scene in software:

1. **Motion.** The image is placed at the centre of a `sensor` x `sensor` pixel array (dark
   background, a margin of `amplitude + 1` pixels) and translated along a closed triangle of
   three straight saccades, vertices (0, -A), (A, A), (-A, A) pixels (A = `amplitude`), each
   lasting `saccade_us` microseconds and sampled `steps_per_saccade` times (bilinear
   interpolation, so sub-pixel motion changes the intensity smoothly).
2. **Pixels.** Each pixel sees the log intensity L = log(I + `log_eps`). It keeps the level at
   which it last fired; whenever L has moved by more than its contrast threshold C from that
   level it emits one event per threshold crossed: ON (p = True) for an increase, OFF (p = False)
   for a decrease, and its level moves by C per event. C varies from pixel to pixel
   (C = `contrast` x (1 + `mismatch` x N(0, 1)), at least `contrast / 4`), drawn from the seed, as
   a real sensor's threshold mismatch.
3. **Timestamps.** Between two motion samples L is taken to change linearly; each crossing gets
   the time at which the line crosses its level (as in ESIM, Rebecq et al. 2018), in whole
   microseconds. Events are sorted by time (stable), in tonic's dtype `events_struct`
   (x, y, t, p).

Only edges produce events: where the image is flat, motion changes nothing. The model is
deterministic: the same images, settings and seed give the same events.

Example:
    >>> import numpy as np
    >>> image = np.zeros((20, 20)); image[6:14, 6:14] = 1.0
    >>> events = image_to_events(image, sensor=28, seed=0)
    >>> events.dtype.names, bool(np.all(np.diff(events["t"]) >= 0))
    (('x', 'y', 't', 'p'), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tonic.io import events_struct

EVENT_DTYPE = np.dtype(events_struct)


@dataclass(frozen=True)
class PixelModel:
    """Settings of the saccade scene and of the DVS pixels (see the module docstring).

    Attributes:
        sensor: side of the square pixel array.
        amplitude: saccade amplitude A in pixels.
        saccade_us: duration of one saccade in microseconds (N-MNIST: about 100 ms).
        steps_per_saccade: motion samples per saccade.
        contrast: mean contrast threshold C in log intensity.
        mismatch: relative standard deviation of C across pixels.
        log_eps: offset inside the logarithm (the dark background's intensity).
    """

    sensor: int = 28
    amplitude: float = 2.0
    saccade_us: int = 100_000
    steps_per_saccade: int = 24
    contrast: float = 0.25
    mismatch: float = 0.05
    log_eps: float = 0.1

    def __post_init__(self) -> None:
        if self.sensor < 4 or self.amplitude < 0 or self.steps_per_saccade < 1:
            raise ValueError(f"Expected sensor >= 4, amplitude >= 0 and steps_per_saccade >= 1, "
                             f"got {self.sensor}, {self.amplitude} and {self.steps_per_saccade}")
        if not self.contrast > 0 or self.mismatch < 0 or not self.log_eps > 0 or self.saccade_us < 1:
            raise ValueError("Expected contrast > 0, mismatch >= 0, log_eps > 0 and saccade_us >= 1")

    @property
    def image_side(self) -> int:
        """Side of the image inside the sensor: the sensor minus a margin for the motion."""
        return self.sensor - 2 * (int(np.ceil(self.amplitude)) + 1)

    @property
    def duration_us(self) -> int:
        """Length of the recording: three saccades."""
        return 3 * self.saccade_us


def saccade_path(model: PixelModel) -> tuple[np.ndarray, np.ndarray]:
    """Displacements [S + 1, 2] (dx, dy in pixels) and their times [S + 1] (µs) along the closed
    triangle of three saccades, S = 3 x `steps_per_saccade`."""
    a = model.amplitude
    vertices = np.array([(0.0, -a), (a, a), (-a, a), (0.0, -a)])
    n = model.steps_per_saccade
    fractions = np.arange(n) / n
    points = [vertices[i] + fractions[:, None] * (vertices[i + 1] - vertices[i]) for i in range(3)]
    path = np.concatenate([*points, vertices[-1:]])
    times = np.arange(3 * n + 1) * (model.saccade_us / n)
    return path, times


def _place(images: np.ndarray, model: PixelModel) -> np.ndarray:
    """Images [N, h, w] in [0, 1] resized to `image_side` and centred on a dark sensor."""
    import torch
    import torch.nn.functional as F

    side, sensor = model.image_side, model.sensor
    if side < 2:
        raise ValueError(f"sensor {sensor} leaves no room for an image with amplitude {model.amplitude}")
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).unsqueeze(1)
    if x.shape[-2:] != (side, side):
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False,
                          antialias=True)
    canvas = torch.zeros((len(x), 1, sensor, sensor))
    start = (sensor - side) // 2
    canvas[:, :, start:start + side, start:start + side] = x.clamp(0.0, 1.0)
    return canvas.numpy()


def _shifted(canvas: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The canvases [N, 1, S, S] translated by (dx, dy) pixels, bilinear, zeros outside."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(canvas)
    size = x.shape[-1]
    theta = torch.tensor([[1.0, 0.0, -2.0 * shift[0] / size], [0.0, 1.0, -2.0 * shift[1] / size]],
                         dtype=torch.float32)[None]
    grid = F.affine_grid(theta, [1, *x.shape[1:]], align_corners=False).expand(len(x), -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[:, 0].numpy()


def _crossings(previous: np.ndarray, current: np.ndarray, level: np.ndarray,
               threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Threshold crossings of every pixel between two log-intensity samples.

    Returns flat pixel indices, polarities, time fractions in [0, 1] within the interval, and the
    pixels' new reference levels.
    """
    delta = current - level
    count = np.floor(np.abs(delta) / threshold).astype(np.int64)
    fired = np.flatnonzero(count)
    n = count.ravel()[fired]
    pixels = np.repeat(fired, n)
    sign = np.sign(delta.ravel()[pixels])
    rank = np.arange(len(pixels)) - np.repeat(np.cumsum(n) - n, n) + 1  # 1..n per pixel
    crossed = level.ravel()[pixels] + sign * rank * threshold.ravel()[pixels]
    step = (current - previous).ravel()[pixels]
    safe = np.where(step == 0, 1.0, step)
    fraction = np.clip(np.where(step == 0, 1.0, (crossed - previous.ravel()[pixels]) / safe), 0, 1)
    new_level = level + np.sign(delta) * count * threshold
    return pixels, sign > 0, fraction, new_level


def saccade_events(images: np.ndarray, *, model: PixelModel | None = None, seed: int = 0
                   ) -> list[np.ndarray]:
    """Event streams of a batch of images (one per image), see the module docstring.

    Args:
        images: [N, h, w] intensities in [0, 1] (resized to the model's `image_side`).
        model: scene and pixel settings (default `PixelModel()`).
        seed: seeds the pixels' threshold mismatch.

    Returns:
        N structured arrays of dtype `EVENT_DTYPE` (x, y, t in µs, p), sorted by t.
    """
    model = model or PixelModel()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"Expected images [N, H, W], got shape {images.shape}")
    canvas = _place(images, model)
    rng = np.random.default_rng(seed)
    shape = (len(images), model.sensor, model.sensor)
    threshold = model.contrast * (1.0 + model.mismatch * rng.standard_normal(shape))
    threshold = np.maximum(threshold, model.contrast / 4)
    path, times = saccade_path(model)
    previous = np.log(_shifted(canvas, path[0]) + model.log_eps).astype(np.float64)
    level = previous.copy()
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for k in range(1, len(path)):
        current = np.log(_shifted(canvas, path[k]) + model.log_eps).astype(np.float64)
        pixels, on, fraction, level = _crossings(previous, current, level, threshold)
        t = np.floor(times[k - 1] + fraction * (times[k] - times[k - 1])).astype(np.int64)
        by_time = np.argsort(t, kind="stable")  # the intervals follow each other in time
        chunks.append((pixels[by_time], on[by_time], t[by_time]))
        previous = current
    pixels = np.concatenate([c[0] for c in chunks])
    on = np.concatenate([c[1] for c in chunks])
    t = np.concatenate([c[2] for c in chunks])
    sample, rest = np.divmod(pixels, model.sensor * model.sensor)
    y, x = np.divmod(rest, model.sensor)
    key = sample.astype(np.uint16) if len(images) <= np.iinfo(np.uint16).max else sample
    order = np.argsort(key, kind="stable")  # by sample, keeping the time order (radix sort)
    events = np.empty(len(order), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x[order], y[order], t[order], on[order]
    bounds = np.cumsum(np.bincount(sample, minlength=len(images)))[:-1]
    streams = [chunk.copy() for chunk in np.split(events, bounds)]
    return streams


def image_to_events(image: np.ndarray, *, sensor: int = 28, seed: int = 0,
                    model: PixelModel | None = None) -> np.ndarray:
    """Event stream of one image [H, W] in [0, 1] (see `saccade_events`)."""
    model = model or PixelModel(sensor=sensor)
    return saccade_events(np.asarray(image)[None], model=model, seed=seed)[0]
