"""Models: shapes, ANN/SNN parameter identity, state reset, initialisation, errors."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from fedsnn.core import config
from fedsnn.core.models import MODELS, ModelSpec, build_model, spec_for
from fedsnn.core.models.registry import SURROGATES

ARCHS = ["lenet", "lenet5"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("image_size,channels,classes", [(28, 1, 10), (32, 3, 100)])
def test_output_shape(name: str, image_size: int, channels: int, classes: int) -> None:
    spec = ModelSpec(name, in_channels=channels, num_classes=classes, image_size=image_size)
    model = build_model(spec, seed=0)
    assert model(torch.rand(3, channels, image_size, image_size)).shape == (3, classes)


@pytest.mark.parametrize("arch", ARCHS)
def test_ann_and_snn_twins_share_parameter_names_and_shapes(arch: str) -> None:
    ann = build_model(ModelSpec(arch), seed=0).state_dict()
    snn = build_model(ModelSpec(f"{arch}-snn"), seed=0).state_dict()
    assert {k: v.shape for k, v in ann.items()} == {k: v.shape for k, v in snn.items()}
    # Same seed, same initial weights: a twin can start from the ANN's weights and vice versa.
    assert all(torch.equal(ann[k], snn[k]) for k in ann)


def test_dlg_lenet_matches_the_paper_layout() -> None:
    model = build_model(ModelSpec("lenet"), seed=0)
    assert model.state_dict()["layers.fc.weight"].shape == (10, 12 * 7 * 7)
    odd = build_model(ModelSpec("lenet", image_size=29), seed=0)  # ceil(29/4) = 8
    assert odd.state_dict()["layers.fc.weight"].shape == (10, 12 * 8 * 8)


@pytest.mark.parametrize("neuron", ["if", "lif"])
def test_snn_resets_state_between_forward_passes(neuron: str) -> None:
    model = build_model(ModelSpec("lenet-snn", neuron=neuron), seed=0, dlg_init=True)
    x = torch.rand(2, 1, 28, 28)
    first, second = model(x), model(x)
    assert torch.equal(first, second)


def test_snn_output_is_the_mean_over_time_of_the_last_layer() -> None:
    model = build_model(ModelSpec("lenet-snn", time_steps=3), seed=0, dlg_init=True)
    sequence = torch.rand(3, 2, 1, 28, 28)
    logits = model.forward_sequence(sequence)
    from spikingjelly.activation_based import functional

    functional.reset_net(model)
    per_step = model.layers(sequence)
    assert torch.allclose(logits, per_step.mean(0))


def test_snn_gradient_flows_to_the_input() -> None:
    model = build_model(ModelSpec("lenet-snn"), seed=0, dlg_init=True)
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_dlg_init_is_uniform_in_half_open_interval() -> None:
    model = build_model(ModelSpec("lenet"), seed=0, dlg_init=True)
    values = torch.cat([p.flatten() for p in model.parameters()])
    assert values.min() >= -0.5 and values.max() <= 0.5 and values.std() > 0.25


def test_seed_makes_initialisation_reproducible() -> None:
    a = build_model(ModelSpec("lenet"), seed=3).state_dict()
    b = build_model(ModelSpec("lenet"), seed=3).state_dict()
    c = build_model(ModelSpec("lenet"), seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["layers.fc.weight"], c["layers.fc.weight"])


def test_unknown_model_and_neuron_are_rejected() -> None:
    with pytest.raises(ValueError, match="Unknown model 'resnet'"):
        build_model(ModelSpec("resnet"))
    with pytest.raises(ValueError, match="Unknown neuron"):
        build_model(ModelSpec("lenet-snn", neuron="hodgkin-huxley"))


def test_sequence_with_wrong_time_steps_is_rejected() -> None:
    model = build_model(ModelSpec("lenet-snn", time_steps=4), seed=0)
    with pytest.raises(ValueError, match="T=4"):
        model.forward_sequence(torch.rand(2, 1, 1, 28, 28))



def test_the_run_config_and_the_model_spec_agree_on_the_model_settings() -> None:
    # the torch-free config keeps its own names and defaults of the model settings: no drift
    assert sorted(config.MODEL_NAMES) == sorted(MODELS)
    assert config.SURROGATES == tuple(SURROGATES)
    assert spec_for(config.RunConfig(), 1, 10, 28) == ModelSpec()
    # spec_for passes every setting on by name
    changed = config.RunConfig.from_mapping({
        "model": "lenet-snn", "time-steps": 6, "neuron": "lif", "surrogate": "erf", "tau": 3.0,
        "v-threshold": 0.5, "detach-reset": True, "encoding": "poisson", "mlp-hidden": 32})
    settings = {f.name for f in fields(ModelSpec)} - {"in_channels", "num_classes", "image_size"}
    spec = spec_for(changed, 1, 10, 28)
    assert all(getattr(spec, name) != getattr(ModelSpec(), name) for name in settings)
