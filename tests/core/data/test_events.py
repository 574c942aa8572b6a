"""The DVS pixel model (fedsnn.core.data.events) and event framing with tonic (fedsnn.core.data.dvs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tonic.transforms import ToFrame

from fedsnn.core.data.dvs import DatasetError, events_to_frames, parse_event_spec, to_spikes
from fedsnn.core.data.events import EVENT_DTYPE, PixelModel, image_to_events, saccade_events

MODEL = PixelModel(sensor=40, amplitude=2.0)  # image side 34


def _square() -> np.ndarray:
    """A bright 20x20 square in a dark 34x34 image: edges on its border, flat elsewhere."""
    image = np.zeros((MODEL.image_side, MODEL.image_side))
    image[7:27, 7:27] = 1.0
    return image


def test_events_have_tonic_dtype_sorted_times_and_both_polarities() -> None:
    events = image_to_events(_square(), model=MODEL, seed=0)
    assert events.dtype == EVENT_DTYPE and events.dtype.names == ("x", "y", "t", "p")
    assert len(events) > 100
    assert np.all(np.diff(events["t"]) >= 0)
    assert 0 <= events["t"].min() and events["t"].max() <= MODEL.duration_us
    assert events["p"].any() and (~events["p"]).any()
    assert events["x"].max() < MODEL.sensor and events["y"].max() < MODEL.sensor


def test_events_come_from_edges() -> None:
    events = image_to_events(_square(), model=MODEL, seed=0)
    counts = np.zeros((MODEL.sensor, MODEL.sensor))
    np.add.at(counts, (events["y"], events["x"]), 1)
    offset = (MODEL.sensor - MODEL.image_side) // 2           # 3
    lo, hi = offset + 7, offset + 27                            # the square's border in the sensor
    band = np.zeros_like(counts, dtype=bool)                    # within the motion of the border
    band[lo - 3:hi + 3, lo - 3:hi + 3] = True
    band[lo + 3:hi - 3, lo + 3:hi - 3] = False
    flat = np.zeros_like(band)
    flat[lo + 4:hi - 4, lo + 4:hi - 4] = True                   # the square's inside
    flat[:lo - 4, :] = True                                     # dark background
    assert counts[band].mean() > 5.0
    assert counts[flat].sum() == 0


def test_events_are_deterministic_for_a_seed() -> None:
    first = image_to_events(_square(), model=MODEL, seed=3)
    assert np.array_equal(first, image_to_events(_square(), model=MODEL, seed=3))
    assert not np.array_equal(first, image_to_events(_square(), model=MODEL, seed=4))


def test_batch_matches_streams_per_image() -> None:
    images = np.stack([_square(), np.zeros_like(_square()), _square()[::-1].copy()])
    streams = saccade_events(images, model=MODEL, seed=0)
    assert len(streams) == 3 and len(streams[1]) == 0           # a blank image makes no events
    assert all(np.all(np.diff(s["t"]) >= 0) for s in streams)


def test_frames_keep_every_event_with_the_expected_shape() -> None:
    events = image_to_events(_square(), model=MODEL, seed=0)
    sensor_size = (MODEL.sensor, MODEL.sensor, 2)
    frames = events_to_frames(events, sensor_size, 4)
    assert frames.shape == (4, 2, MODEL.sensor, MODEL.sensor) and frames.dtype == np.int16
    assert int(frames.sum()) == len(events)
    assert int(frames[:, 1].sum()) == int(events["p"].sum())   # channel 1 holds ON events
    # tonic's n_time_bins drops the events at the end of the recording; ours does not
    assert int(ToFrame(sensor_size=sensor_size, n_time_bins=4)(events).sum()) < len(events)


def test_frames_from_an_empty_stream_are_zero() -> None:
    frames = events_to_frames(np.empty(0, dtype=EVENT_DTYPE), (8, 6, 2), 3)
    assert frames.shape == (3, 2, 6, 8) and not frames.any()


def test_spikes_are_binary() -> None:
    events = image_to_events(_square(), model=MODEL, seed=0)
    spikes = to_spikes([events_to_frames(events, (MODEL.sensor, MODEL.sensor, 2), 4)])
    assert spikes.shape == (1, 4, 2, MODEL.sensor, MODEL.sensor) and spikes.dtype == torch.float32
    assert set(spikes.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize(("spec", "frames", "seed"), [("dvs-digits", 4, 0),
                                                     ("dvs-digits:frames=6,seed=2", 6, 2),
                                                     ("dvsgesture:/data/x,frames=16", 16, 0)])
def test_event_specs_parse(spec: str, frames: int, seed: int) -> None:
    parsed = parse_event_spec(spec)
    assert parsed is not None and parsed.frames == frames and parsed.seed == seed


@pytest.mark.parametrize("spec", ["dvs-digits:frames=x", "dvs-digits:speed=2", "dvsgesture:",
                                  "dvs-digits:frames=0"])
def test_bad_event_specs_fail_clearly(spec: str) -> None:
    with pytest.raises(DatasetError, match="dvs"):
        parse_event_spec(spec)
