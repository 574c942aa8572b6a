"""Trained rate-decoder victims from a real FedAvg run: the project's ServerApp and ClientApp run in
process, the global model is kept after chosen rounds through the ServerApp's own checkpoint and
resume, and the experiment attacks exactly that model (experiments/)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fedsnn.core.checkpoint import load_checkpoint
from fedsnn.core.data import load_dataset
from experiments.fedavg_checkpoints import checkpoint_path, federate
from experiments.rate_decoder import SETTINGS, global_model

pytestmark = pytest.mark.slow  # federations, in process

TINY = {"dataset": "digits", "local-epochs": 1, "max-train-samples": 40, "seed": 0}


def test_the_global_model_after_each_chosen_round_is_the_one_attacked(tmp_path: Path) -> None:
    kept = federate("lenet", [1, 2], out=tmp_path, num_nodes=2, run_config=TINY)
    assert [k["round"] for k in kept] == [1, 2]
    first, second = (load_checkpoint(checkpoint_path(tmp_path, "lenet", r)) for r in (1, 2))
    assert (first.server_round, second.server_round) == (1, 2)
    # the second leg resumed from the first: its results hold both rounds, and training went on
    assert [r["round"] for r in second.results["rounds"] if r["round"] > 0] == [1, 2]
    assert any(not torch.equal(first.model_state[k], second.model_state[k])
               for k in first.model_state)
    data = load_dataset("digits")
    setting = replace(SETTINGS["ann-fedavg-1"], fedavg_rounds=2)
    model, _ = global_model(setting, data, seed=0, checkpoints=tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, second.model_state[key])
    with pytest.raises(ValueError, match="holds"):  # a checkpoint of another model is refused
        global_model(replace(setting, time_steps=8), data, seed=0, checkpoints=tmp_path)
