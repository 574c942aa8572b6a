"""Run config: defaults agree with pyproject.toml; bad values stop the run with a clear message."""

from __future__ import annotations

import tomllib

import pytest

from fedsnn.core.config import ConfigError, RunConfig
from tests.conftest import REPO


def test_pyproject_defaults_equal_the_dataclass_defaults() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert declared == RunConfig().to_dict()
    assert RunConfig.from_mapping(declared) == RunConfig()


@pytest.mark.parametrize("key,value,fragment", [
    ("time-steps", 0, "time-steps: expected a positive integer"),
    ("time-steps", -3, "time-steps"),
    ("model", "resnet", "model: unknown value 'resnet'; expected one of lenet"),
    ("neuron", "izhikevich", "neuron: unknown value 'izhikevich'; expected one of if, lif"),
    ("surrogate", "relu", "surrogate: unknown value"),
    ("fraction-train", 0.0, "fraction-train: expected a fraction in (0, 1]"),
    ("fraction-evaluate", 1.5, "fraction-evaluate"),
    ("learning-rate", -0.1, "learning-rate: expected a positive number"),
    ("batch-size", 2.5, "batch-size: expected int"),
    ("dlg-init", "maybe", "dlg-init: expected bool"),
    ("optimizer", "rmsprop", "optimizer: unknown value"),
    ("update-mode", "fedprox", "update-mode"),
    ("partitioner", "shards", "partitioner"),
    ("image-size", 4, "image-size"),
    ("max-num-examples", -1, "max-num-examples: expected 0"),
])
def test_invalid_values_name_the_key_and_the_accepted_values(key: str, value: object,
                                                             fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_mapping({key: value})
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_poisson_encoding_needs_a_spiking_model() -> None:
    with pytest.raises(ConfigError, match="encoding: 'poisson' needs a spiking model"):
        RunConfig.from_mapping({"model": "lenet", "encoding": "poisson"})
    assert RunConfig.from_mapping({"model": "lenet-snn", "encoding": "poisson"}).is_spiking


@pytest.mark.parametrize("key,hint", [
    ("num-server-round", "did you mean 'num-server-rounds'?"),
    ("num_server_rounds", "did you mean 'num-server-rounds'?"),
    ("learnig-rate", "did you mean 'learning-rate'?"),
    ("some-plugin-key", "see docs/configuration.md"),
])
def test_an_unknown_key_is_named_with_the_closest_known_one(key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_mapping({key: 3})
    message = str(info.value)
    assert message.startswith(f"{key}: unknown run-config key") and hint in message
    assert "\n" not in message


def test_relative_output_dir_resolves_to_an_absolute_path() -> None:
    assert RunConfig(output_dir="runs").resolved_output_dir().is_absolute()
    assert str(RunConfig(output_dir="/tmp/x").resolved_output_dir()) == "/tmp/x"


def test_configuration_reference_is_generated_from_pyproject_and_explains_every_key() -> None:
    from fedsnn.core.config_doc import config_reference

    reference = config_reference(REPO / "pyproject.toml")
    assert (REPO / "docs" / "configuration.md").read_text() == reference, \
        "docs/configuration.md is stale: run `fedsnn config-doc`"
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    rows = [line for line in reference.splitlines() if line.startswith("| `")]
    assert len(rows) == len(declared)
    assert [row for row in rows if row.rstrip().endswith("|  |")] == []  # every key explained


def test_a_renamed_key_stops_the_run_with_its_new_name() -> None:
    """num-malicious (f the aggregator assumes) was renamed beside num-byzantine (how many
    misbehave): the old key is not silently kept as an unknown one."""
    with pytest.raises(ConfigError, match="num-malicious is now called assumed-byzantine"):
        RunConfig.from_mapping({"aggregator": "krum", "num-malicious": 2})
    assert RunConfig.from_mapping({"assumed-byzantine": 0}).assumed_byzantine == 0
