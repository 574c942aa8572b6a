"""The client-side defenses' train-config settings (issue 25): one declaration, read and written
the same way; a bad entry is a one-line error naming its key."""

from __future__ import annotations

import math

import pytest

from fedsnn.core.defense_config import (DefenseConfigError, DpSgdConfig, LocalDpConfig,
                                        SpikeDpConfig)
from fedsnn.core.protocol import TRAIN_METRICS

LOCAL = LocalDpConfig(clipping_norm=1.0, noise_multiplier=2.0, delta=1e-5, accountant="rdp")
DP_SGD = DpSgdConfig(max_grad_norm=1.0, noise_multiplier=0.6, target_epsilon=0.0,
                     total_epochs=10, delta=1e-5, accountant="pld")
SPIKE = SpikeDpConfig(mechanism="subsample", epsilon_bit=1.0, keep_probability=0.5,
                      time_steps=4, budget=0.0, delta=1e-5, accountant="rdp")


@pytest.mark.parametrize("settings", [LOCAL, DP_SGD, SPIKE])
def test_what_the_server_writes_the_node_reads_back(settings) -> None:
    assert type(settings).from_config(settings.to_config()) == settings
    assert type(settings).asked(settings.to_config())
    assert not type(settings).asked({"client-dp": 1})


def test_numbers_are_read_as_their_declared_type() -> None:
    read = DpSgdConfig.from_config(DP_SGD.to_config() | {"dp-sgd-max-grad-norm": 2})
    assert read.max_grad_norm == 2.0 and isinstance(read.max_grad_norm, float)
    assert isinstance(read.total_epochs, int)


@pytest.mark.parametrize("settings,key,value,message", [
    (LOCAL, "local-dp-clipping-norm", None, "local DP: the train config has no "
                                            "'local-dp-clipping-norm'"),
    (LOCAL, "dp-accountant", None, "local DP: the train config has no 'dp-accountant'"),
    (LOCAL, "local-dp-clipping-norm", 0.0, "'local-dp-clipping-norm': expected a positive "
                                           "number, got 0.0"),
    (LOCAL, "local-dp-clipping-norm", "1.0", "'local-dp-clipping-norm': expected a number, "
                                             "got '1.0'"),
    (LOCAL, "local-dp-noise-multiplier", -1.0, "'local-dp-noise-multiplier': expected a number "
                                               ">= 0"),
    (LOCAL, "dp-delta", math.nan, r"'dp-delta': expected a number in \(0, 1\), got nan"),
    (DP_SGD, "dp-sgd-total-epochs", 2.5, "DP-SGD: 'dp-sgd-total-epochs': expected an integer"),
    (DP_SGD, "dp-sgd-max-grad-norm", True, "'dp-sgd-max-grad-norm': expected a number, got True"),
    (SPIKE, "spike-dp-mechanism", "flip", "spike-level DP: 'spike-dp-mechanism': expected one "
                                          "of"),
    (SPIKE, "spike-dp-keep-probability", 1.0, r"expected a number in \[0, 1\)"),
])
def test_a_missing_or_bad_entry_is_one_line_naming_its_key(settings, key, value,
                                                           message: str) -> None:
    config = settings.to_config()
    if value is None:
        del config[key]
    else:
        config[key] = value
    with pytest.raises(DefenseConfigError, match=message) as raised:
        type(settings).from_config(config)
    assert "\n" not in str(raised.value) and isinstance(raised.value, ValueError)


def test_zero_noise_is_left_to_the_nodes_policy() -> None:
    """A round without noise is refused by the node's policy with its own reason, not here."""
    assert LocalDpConfig.from_config(LOCAL.to_config() | {"local-dp-noise-multiplier": 0.0})


def test_the_wrapper_side_checks_too() -> None:
    with pytest.raises(DefenseConfigError, match="'dp-sgd-total-epochs': expected a positive"):
        DpSgdConfig(max_grad_norm=1.0, noise_multiplier=1.0, target_epsilon=0.0, total_epochs=0,
                    delta=1e-5, accountant="rdp")


def test_the_reply_metrics_follow_the_declared_marker_keys() -> None:
    assert TRAIN_METRICS["local-dp-client-epsilon"].when == "local-dp-noise-multiplier"
    assert TRAIN_METRICS["dp-sgd-sample-epsilon"].when == "dp-sgd-max-grad-norm"
    assert TRAIN_METRICS["spike-dp-sample-epsilon"].when == "spike-dp-mechanism"
