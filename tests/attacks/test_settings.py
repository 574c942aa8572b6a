"""AttackSettings: validation and presets."""

from __future__ import annotations

import pytest

from attacks import AttackSettings, AttackSettingsError, spike_modality


@pytest.mark.parametrize("field, value", [("attack", "nope"), ("optimizer", "sgd"),
                                          ("distance", "l1"), ("threshold_mode", "maybe"),
                                          ("iterations", 0), ("lr", -1.0), ("restarts", 0),
                                          ("time_budget_s", 0.0), ("init", "zeros")])
def test_invalid_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(AttackSettingsError, match=field):
        AttackSettings(**{field: value})  # type: ignore[arg-type]


def test_default_learning_rates_follow_the_optimizer() -> None:
    assert AttackSettings().effective_lr == 1.0
    assert AttackSettings(optimizer="adam").effective_lr == 0.1
    assert AttackSettings(attack="grnn").effective_optimizer == "rmsprop"
    assert AttackSettings(attack="grnn").effective_lr == 1e-4
    assert AttackSettings(optimizer="adam", lr=0.5).effective_lr == 0.5


def test_spike_modality_preset_and_overrides() -> None:
    settings = spike_modality(AttackSettings(attack="idlg"), threshold_mode="in", threshold=0.3)
    assert (settings.attack, settings.init, settings.time_mode) == ("idlg", "normal", "per-step")
    assert (settings.clamp, settings.non_negative) == (False, True)
    assert (settings.threshold_mode, settings.threshold) == ("in", 0.3)
    assert settings.with_(restarts=3).restarts == 3
