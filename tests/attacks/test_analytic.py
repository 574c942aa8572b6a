"""Analytic first-layer recovery: exact on fully connected first layers (ANN and SNN, direct and
Poisson), partial and said so for batches, R-GAP on the sigmoid LeNet, honest failure on conv SNNs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attacks import AttackSettings, Observation, Status, invert
from attacks.separable import separable_factors
from fedsnn.core.training import batch_gradient
from fedsnn.core.data import load_dataset
from fedsnn.core.metrics import to_images
from fedsnn.core.models import ModelSpec, build_model

ANALYTIC = AttackSettings(attack="analytic")


def observe(spec: ModelSpec, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> Observation:
    """One client's gradient on (x, y) for a fresh DLG-initialised model (no ground truth in it)."""
    model = build_model(spec, dlg_init=True, seed=seed, encoder_seed=seed)
    _, gradients = batch_gradient(model, x, y)
    return Observation(target_id="client", model_spec=spec, global_state=model.state_dict(),
                       gradients=gradients, batch_size=len(x))


def mse(reconstruction: torch.Tensor, truth: torch.Tensor) -> float:
    return float(((to_images(reconstruction) - truth) ** 2).mean())


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("digits")
    return data.test_x[:8], data.test_y[:8]


@pytest.fixture
def mnist(mnist_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset(f"mnist:{mnist_dir}")
    return data.test_x[:8], data.test_y[:8]


def test_separable_factors_recover_a_non_negative_mixture_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    rows = (torch.rand(3, 50, generator=generator) < 0.4).double()
    rows[:, :3] = torch.eye(3, dtype=torch.float64)          # a private pixel per row
    errors = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    factors = separable_factors(errors @ rows, errors.sum(1), max_rows=3)
    found = sorted(factors.rows.round().tolist())
    assert found == sorted(rows.tolist()) and factors.weight_residual < 1e-10


@pytest.mark.parametrize("name,neuron", [("mlp-snn", "if"), ("mlp-snn", "lif"), ("mlp", "if")])
def test_direct_encoding_recovers_a_real_digit_exactly(name: str, neuron: str, mnist: tuple) -> None:
    x, y = mnist[0][:1], mnist[1][:1]
    reconstruction = invert([observe(ModelSpec(name, neuron=neuron), x, y)], ANALYTIC)[0]
    assert reconstruction.status == Status.OK, reconstruction.message
    assert mse(reconstruction.inputs, x) < 1e-6
    assert reconstruction.labels.tolist() == y.tolist()
    assert reconstruction.matching_loss < 1e-8  # exact consistency, the attacker's own check


def test_direct_encoding_on_digits_needs_no_shared_data(digits: tuple) -> None:
    x, y = digits[0][:1], digits[1][:1]
    reconstruction = invert([observe(ModelSpec("mlp-snn"), x, y)], ANALYTIC)[0]
    assert mse(reconstruction.inputs, x) < 1e-6


def test_poisson_encoding_recovers_the_spike_rate(mnist: tuple) -> None:
    x, y = mnist[0][:1], mnist[1][:1]
    spec = ModelSpec("mlp-snn", encoding="poisson")
    reconstruction = invert([observe(spec, x, y, seed=5)], ANALYTIC)[0]
    assert reconstruction.status == Status.OK, reconstruction.message
    assert mse(reconstruction.inputs, x) < 0.02
    # the exact spike trains the network saw: the client's encoder with its private seed
    spikes = build_model(spec, encoder_seed=5).encoder(x)
    assert torch.equal(reconstruction.inputs.mean(0), spikes.mean(0))
    assert reconstruction.matching_loss < 1e-8  # frames and their time order reproduce the gradient


def test_poisson_frames_are_the_victims_spikes_on_digits(digits: tuple) -> None:
    x, y = digits[0][1:2], digits[1][1:2]
    spec = ModelSpec("mlp-snn", encoding="poisson", time_steps=4)
    reconstruction = invert([observe(spec, x, y, seed=2)], ANALYTIC)[0]
    spikes = build_model(spec, encoder_seed=2).encoder(x)
    assert torch.equal(reconstruction.inputs.mean(0), spikes.mean(0))


def test_frame_orders_stay_bounded_for_long_sequences() -> None:
    from attacks.analytic import MAX_ORDERS, _sequence_orders

    assert len(_sequence_orders(torch.eye(4), 4)) == 24                 # every order of 4 frames
    assert len(_sequence_orders(torch.eye(4)[:3], 4)) == 60             # a silent or repeated step
    assert len(_sequence_orders(torch.eye(16), 16)) == MAX_ORDERS       # 16! orders: capped
    assert len(_sequence_orders(torch.eye(16)[:10], 16)) == 1           # too many fillings


def test_a_batch_is_recovered_where_separable_and_the_message_says_how_much(mnist: tuple) -> None:
    x, y = mnist
    reconstruction = invert([observe(ModelSpec("mlp-snn"), x[:4], y[:4], seed=1)], ANALYTIC)[0]
    images = to_images(reconstruction.inputs)
    exact = sum(bool(((images - x[i]) ** 2).flatten(1).mean(1).min() < 1e-6) for i in range(4))
    assert exact >= 3
    assert f"{exact} of 4 samples recovered" in reconstruction.message


def test_a_partly_separable_batch_is_not_called_exact(digits: tuple) -> None:
    # upscaled 8x8 digits overlap so much that one sample has no pixel of its own
    x, y = digits
    reconstruction = invert([observe(ModelSpec("mlp-snn"), x[:4], y[:4], seed=0)], ANALYTIC)[0]
    images = to_images(reconstruction.inputs)
    exact = sum(bool(((images - x[i]) ** 2).flatten(1).mean(1).min() < 1e-6) for i in range(4))
    assert exact < 4 and reconstruction.message.startswith("not exact")


def test_conv_first_spiking_model_is_reported_not_determined(digits: tuple) -> None:
    x, y = digits[0][:1], digits[1][:1]
    reconstruction = invert([observe(ModelSpec("lenet-snn"), x, y)], ANALYTIC)[0]
    assert reconstruction.status == Status.FAILED
    assert "not determined" in reconstruction.message


def test_relu_lenet5_stops_where_the_walk_cannot_invert(digits: tuple) -> None:
    x, y = digits[0][:1], digits[1][:1]
    reconstruction = invert([observe(ModelSpec("lenet5"), x, y)], ANALYTIC)[0]
    assert reconstruction.status == Status.FAILED and "ReLU" in reconstruction.message


@pytest.mark.slow
def test_rgap_walk_recovers_the_sigmoid_lenet_input(digits: tuple) -> None:
    x, y = digits[0][:1], digits[1][:1]
    reconstruction = invert([observe(ModelSpec("lenet"), x, y)], ANALYTIC)[0]
    assert reconstruction.status == Status.OK, reconstruction.message
    assert mse(reconstruction.inputs, x) < 1e-4


FEDSGD = {"num-server-rounds": 1, "update-mode": "gradient", "batch-size": 1,
          "learning-rate": 0.01, "audit-rounds": "1", "audit-max-clients": 2,
          "audit-attack": "analytic", "audit-time-budget-s": 120.0}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp-snn", "mlp"])
def test_analytic_recovers_clients_digits_in_line_in_a_flower_simulation(model: str,
                                                                        tmp_path: Path) -> None:
    import json

    from tests.helpers import simulate

    results = simulate(tmp_path, FEDSGD | {"model": model}, nodes=2)
    rows = json.loads((Path(results["run-dir"]) / "audit.json").read_text())["attacks"]
    assert len(rows) == 2 and all(row["status"] == "ok" for row in rows), rows
    assert all(row["mse"] < 1e-6 for row in rows), [row["mse"] for row in rows]
    assert all(row["inferred-labels"] == row["true-labels"] for row in rows)
