"""The two-layer perceptron and its spiking twin: layout, twin identity, configurable width."""

from __future__ import annotations

import pytest
import torch

from fedsnn.core.config import RunConfig
from fedsnn.core.models import ModelSpec, build_model, spec_for


def test_mlp_layout_and_hidden_size() -> None:
    state = build_model(ModelSpec("mlp", mlp_hidden=32), seed=0).state_dict()
    assert state["layers.fc1.weight"].shape == (32, 784) and state["layers.fc1.bias"].shape == (32,)
    assert state["layers.fc2.weight"].shape == (10, 32)


def test_mlp_twins_share_parameters() -> None:
    ann = build_model(ModelSpec("mlp"), seed=0).state_dict()
    snn = build_model(ModelSpec("mlp-snn", neuron="lif"), seed=0).state_dict()
    assert list(ann) == list(snn) and all(torch.equal(ann[k], snn[k]) for k in ann)
    assert build_model(ModelSpec("mlp-snn"), seed=0)(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_run_config_width_reaches_the_spec() -> None:
    config = RunConfig.from_mapping({"model": "mlp-snn", "mlp-hidden": 64})
    assert spec_for(config, 1, 10, 28).mlp_hidden == 64


def test_bad_width_is_refused() -> None:
    with pytest.raises(ValueError, match="hidden size"):
        build_model(ModelSpec("mlp", mlp_hidden=0))
