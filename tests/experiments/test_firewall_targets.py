"""experiments.firewall_targets: a canary node-round is held and counted, timings come back."""

from __future__ import annotations

from experiments.firewall_targets import SCENARIOS, run_scenario


def test_a_held_canary_is_counted_and_nothing_reaches_the_server_audit() -> None:
    result = run_scenario("canary-lenet-hold", SCENARIOS["canary-lenet-hold"] | {"image-size": 16},
                          rounds=1, nodes=2, every=None)
    assert (result["held"], result["rounds"], result["held-or-hardened"]) == (2, 2, 1.0)
    assert result["reasons"] == {"fedsgd-batch-1": 2} and result["server-audit-on-sent"] == {}
    assert result["client-s-per-round"] > 0 and result["overhead"] > 0
