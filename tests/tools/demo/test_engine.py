"""The demo's engine: one client reply through the project's client, defense, attack and auditor
code; settings a model cannot take are refused with the config's message."""

from __future__ import annotations

import math

import pytest

from fedsnn.tools.demo.engine import DemoError, Scenario, run, stream, twins


def test_an_undefended_mlp_gradient_gives_the_digit_back_exactly(victims) -> None:
    images, labels = victims.batch(*victims.digit(7), size=1, after=7)
    outcome = run(Scenario(model="mlp"), images, labels, victims)   # auto: analytic
    assert outcome.attack == "analytic" and outcome.row["status"] == "ok"
    assert outcome.row["psnr"] > 60 and outcome.row["label-accuracy"] == 1.0
    assert outcome.row["inferred-labels"] == labels.tolist() and outcome.epsilon == {}
    # beside the guesses a reader compares it with (the audit's own baselines)
    assert set(outcome.baselines) == {"mean-image", "black", "gray-0.5"}
    assert outcome.baselines["mean-image"]["psnr"] < outcome.row["psnr"]
    assert 0.5 < outcome.judge_accuracy <= 1


def test_local_dp_at_epsilon_spends_that_epsilon_and_ruins_the_reconstruction(victims) -> None:
    images, labels = victims.batch(*victims.digit(7), size=1, after=7)
    outcome = run(Scenario(model="mlp", defense="local DP", epsilon=4.0), images, labels, victims)
    assert outcome.epsilon["local-dp-client-epsilon"] == pytest.approx(4.0, rel=1e-3)
    # the analytic recovery finds no image in the noised gradient (or a noisy one, if any)
    assert outcome.row["status"] == "failed" or outcome.row["psnr"] < 20


def test_spike_dp_reports_the_bit_and_the_far_larger_sample_epsilon(victims) -> None:
    images, labels = victims.batch(*victims.digit(7), size=1, after=7)
    outcome = run(Scenario(model="mlp-snn", defense="spike-DP", epsilon=1.0), images, labels,
                  victims)
    assert outcome.epsilon["spike-dp-bit-epsilon"] == 1.0
    assert outcome.epsilon["spike-dp-sample-epsilon"] > 100


@pytest.mark.parametrize("scenario, words", [
    (Scenario(model="mlp", encoding="poisson"), "encoding"),
    (Scenario(model="lenet", time_steps=0), "time-steps"),
    (Scenario(defense="DP-SGD", epsilon=0.0), "ε must be > 0"),
    (Scenario(attack="grnn-please"), "attack"),
])
def test_settings_the_model_cannot_take_are_refused_in_one_line(scenario, words) -> None:
    with pytest.raises(DemoError, match=words) as error:
        scenario.run_config()
    assert "\n" not in str(error.value)


def test_stream_reports_steps_then_the_outcome_and_stops_when_closed(victims) -> None:
    images, labels = victims.batch(*victims.digit(0), size=1, after=0)
    ann, snn = twins(Scenario(model="lenet", iterations=3))
    assert (ann.model, snn.model, snn.attack_name()) == ("lenet", "lenet-snn", "smooth")
    events = list(stream({"ann": lambda listener: run(ann, images, labels, victims,
                                                       listener=listener)}, min_interval_s=0))
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] == "done" and kinds.count("step") >= 1
    assert math.isfinite(events[-1][2].row["psnr"])
    errors = list(stream({"bad": lambda listener: run(Scenario(model="nope"), images, labels,
                                                      victims)}))
    assert errors == [("bad", "error", errors[0][2])] and "model" in errors[0][2]
