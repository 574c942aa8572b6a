"""The grid's nulls on any dataset (issue 29: MNIST): scored on the very clients a grid file holds."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments import grid_nulls
from experiments.grid_nulls import cell_nulls, grid_cells, speed_rows
from experiments.unrolled_grid import client_ids
from fedsnn.core.data import load_dataset
from fedsnn.core.data.base import ImageData


def _row(client: int, identified: int, dataset: str = "digits") -> dict:
    return {"dataset": dataset, "model": "lenet", "images": 8, "steps": 4, "epochs": 4,
            "local-batch": 8, "optimizer": "sgd", "client": client, "method": "unrolled",
            "identified": identified, "asr": 0.5, "psnr": 12.0}


def test_a_grid_file_gives_its_own_clients_not_0_to_n():
    cells = grid_cells([_row(5, 3), _row(2, 1)])
    assert len(cells) == 1
    assert cells[0].clients == (2, 5) and cells[0].hits == (1, 3)


def test_a_speed_benchmark_file_gives_one_cell_per_arm_on_the_target_cells_clients():
    speed = [{"dataset": "digits", "client": c, "arm": arm, "images": 32, "identified": hits}
             for c, arm, hits in ((10, "today", 3), (11, "today", 8), (10, "q1k", 7))]
    cells = {cell.where.split(",")[0]: cell for cell in grid_cells(speed_rows(speed))}
    assert cells["today"].clients == (10, 11) and cells["today"].hits == (3, 8)
    assert cells["q1k"].clients == (10,)
    # the benchmark's clients: the grid's target cell (unrolled_grid.client_reply's draw)
    today = cells["today"]
    assert (today.model, today.images, today.steps, today.optimizer) == ("lenet", 32, 4, "sgd")


def test_the_nulls_score_the_images_of_the_clients_named():
    # the public images are exactly client 5's: its public-draws null identifies every image,
    # client 2's (other images) at most those the two clients share
    train = torch.rand(200, 1, 28, 28)
    five = client_ids("lenet", 8, 4, "sgd", 5, len(train))
    two = client_ids("lenet", 8, 4, "sgd", 2, len(train))
    data = ImageData("toy", train, torch.arange(200) % 10, train[five], (five % 10).long(), 10)
    (cell,) = grid_cells([_row(2, 0), _row(5, 0)])
    public = cell_nulls(cell, data, draws=2)["public-draws"]["identified"]
    assert [c.trials for c in public] == [16, 16]
    assert public[1].hits == 16
    assert public[0].hits <= 2 * len(set(two.tolist()) & set(five.tolist()))


def _write_idx(path: Path, array: np.ndarray) -> None:
    path.write_bytes(struct.pack(">HBB", 0, 0x08, array.ndim)
                     + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype(np.uint8).tobytes())


def test_main_scores_an_mnist_grid_and_refuses_another_datasets_rows(tmp_path, monkeypatch,
                                                                     capsys):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (100, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", rng.integers(0, 10, (100,)))
    spec = f"mnist:{tmp_path}"
    name = load_dataset(spec, 28).name
    grid = tmp_path / "grid.jsonl"
    grid.write_text("".join(json.dumps(_row(c, 2, name)) + "\n" for c in (2, 3)))
    # a judge that always answers 0 (the real one is trained and cached on first use)
    monkeypatch.setattr(grid_nulls, "judge_predict",
                        lambda data: lambda images: torch.zeros(len(images), dtype=torch.long))
    monkeypatch.setattr(sys, "argv", ["grid_nulls", "--dataset", spec, "--grid", str(grid),
                                      "--draws", "2"])
    grid_nulls.main()
    lines = capsys.readouterr().out.splitlines()[2:]
    assert len(lines) == 3  # the attack and its two nulls
    assert all("| 2, 3 |" in line for line in lines)
    assert "attack | 25.0 %" in lines[0] and "(4/16)" in lines[0]
    assert "null: matched-noise" in lines[1] and "null: public-draws" in lines[2]
    assert all("/32)" in line for line in lines[1:])  # 2 clients x 8 images x 2 draws
    grid.write_text(json.dumps(_row(2, 2, "digits")) + "\n")
    with pytest.raises(SystemExit, match="not of --dataset"):
        grid_nulls.main()
