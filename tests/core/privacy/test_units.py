"""Every ε carries its unit, neighbouring relation and coverage (issue 15, item 6)."""

from __future__ import annotations

from fedsnn.audit.report import _privacy_section
from fedsnn.core.privacy.units import DEFENSE_UNITS, epsilon_unit, epsilon_units

REPORTED = ["central-dp-client-epsilon", "central-dp-client-epsilon-round",
            "local-dp-client-epsilon-max", "local-dp-client-epsilon-release-max",
            "dp-sgd-sample-epsilon-max", "spike-dp-sample-epsilon", "spike-dp-bit-epsilon"]


def test_every_reported_epsilon_has_a_unit_and_the_sample_columns_differ() -> None:
    units = {key: epsilon_unit(key) for key in REPORTED}
    assert all(units.values()), units
    assert epsilon_unit("central-dp-delta") is None and epsilon_unit("train-loss") is None
    dp_sgd, spike = DEFENSE_UNITS["dp-sgd"], DEFENSE_UNITS["spike-dp"]
    assert dp_sgd.unit == spike.unit == "sample" and dp_sgd.relation != spike.relation
    assert "labels are NOT protected" in spike.covers and "label" in dp_sgd.covers
    assert units["spike-dp-bit-epsilon"].unit == "bit"
    assert {DEFENSE_UNITS[d].relation for d in ("central-dp", "local-dp")} == {"replace-one"}


def test_results_and_report_list_the_units_of_the_epsilons_a_run_reported() -> None:
    rounds = [{"round": 1, "train": {"dp-sgd-sample-epsilon-max": 1.5, "train-loss": 0.3}},
              {"round": 2, "train": {"dp-sgd-sample-epsilon-max": 2.25}}]
    units = epsilon_units(rounds)
    assert list(units) == ["dp-sgd-sample-epsilon-max"]
    section = "\n".join(_privacy_section({"rounds": rounds, "epsilon-units": units}))
    assert "| `dp-sgd-sample-epsilon-max` | 2.250 | sample | add/remove-one |" in section


def test_report_puts_the_empirical_bound_beside_the_accounted_epsilon() -> None:
    row = {"mechanism": "dp-sgd", "accounted-epsilon": 8.0, "empirical-epsilon-lower-bound": 9.5,
           "unit": "sample", "relation": "add/remove-one", "claim": "violated",
           "attack": "Dirac canaries", "bound": {"confidence": 0.95}}
    rounds = [{"round": 1, "train": {"dp-sgd-sample-epsilon-max": 8.0}}]
    section = "\n".join(_privacy_section({"rounds": rounds, "epsilon-units": epsilon_units(rounds),
                                          "dp-audit": {"mechanisms": [row]}}))
    assert "| dp-sgd | 8.000 | 9.500 at 95% | sample, add/remove-one | **VIOLATED** |" in section
