"""The validation-round diagnostic (experiments/validation_round.py): round 2's update is
matched exactly by the client's own images and labels and not by noise, and the early stop keeps
the lowest validation loss seen before its patience ran out."""

import torch

from attacks.settings import unrolled_preset
from attacks.unrolled import update_distance
from experiments.validation_round import client_row, early_stop, two_rounds
from fedsnn.audit.auditor import Auditor
from fedsnn.core.data import load_dataset


def test_round_two_is_matched_by_the_clients_images_only():
    data = load_dataset("digits", 28)
    settings = unrolled_preset(iterations=5)
    ids, _, job2 = two_rounds(data, 0, settings, images=4, steps=2)
    validation = update_distance(job2.observation, settings)
    images, labels = data.train_x[ids], data.train_y[ids]
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(0))
    assert float(validation(images, labels, False)) < 1e-8 < float(validation(noise, labels, False))


def test_the_early_stop_keeps_the_best_validation_before_patience_runs_out():
    trajectory = [{"step": s, "validation": v, "identified": s}
                  for s, v in [(100, 3.0), (200, 1.0), (300, 2.0), (400, 0.5), (500, 2.5)]]
    assert early_stop(trajectory, 100)["step"] == 200  # at step 300 it has waited 100 steps
    assert early_stop(trajectory, 200)["step"] == 400  # it waits past 300 and finds 400
    assert early_stop(trajectory, 1000)["step"] == 400  # never stops: the lowest of all


def test_a_client_row_scores_snapshots_every_so_many_steps():
    data = load_dataset("digits", 28)
    auditor = Auditor(data.train_x, data.train_y, native_size=data.native_size)
    row = client_row(data, auditor, 0, iterations=20, every=5, patience=10, images=4, steps=2)
    assert [s["step"] for s in row["trajectory"]] == [5, 10, 15, 20]
    assert 0 <= row["early-stop"] <= row["peak"] <= 4
