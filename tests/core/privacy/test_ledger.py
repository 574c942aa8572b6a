"""One ledger interface and one registry for every accountant (issue 25, item 4)."""

from __future__ import annotations

import json

import pytest
from opacus.accountants import RDPAccountant

from fedsnn.core.privacy.accounting import gaussian_epsilon, randomized_response_epsilon
from fedsnn.core.privacy.ledger import GaussianLedger, Ledger, LedgerError, OpacusLedger
from fedsnn.core.privacy.registry import LEDGERS, ledger_from_state
from fedsnn.core.privacy.spikes import RandomizedResponse, SpikeLedger


def spent() -> list[Ledger]:
    gaussian = GaussianLedger()
    for _ in range(3):
        gaussian.record(noise_multipliers=(1.0,))
    opacus = OpacusLedger()
    opacus.step(noise_multiplier=1.1, sample_rate=0.25, steps=8)
    spike = SpikeLedger(RandomizedResponse(0.05), bits_per_sample=64, delta=1e-5)
    spike.record()
    return [gaussian, opacus, spike]


def test_every_kind_of_ledger_is_registered() -> None:
    assert set(LEDGERS) == {type(ledger).kind for ledger in spent()}


@pytest.mark.parametrize("ledger", spent(), ids=lambda ledger: ledger.kind)
def test_every_ledger_round_trips_through_json_and_the_registry(ledger: Ledger) -> None:
    restored = ledger_from_state(json.loads(json.dumps(ledger.state_dict())))
    assert type(restored) is type(ledger) and restored.releases == ledger.releases
    assert restored.epsilon(1e-5) == pytest.approx(ledger.epsilon(1e-5), abs=1e-12)
    assert restored.unit.relation == ledger.unit.relation


def test_each_ledger_reports_what_its_library_accountant_does() -> None:
    gaussian, opacus, spike = spent()
    assert gaussian.epsilon(1e-5) == pytest.approx(
        gaussian_epsilon(noise_multiplier=1.0, releases=3, delta=1e-5))
    reference = RDPAccountant()
    reference.history = [(1.1, 0.25, 8)]
    assert opacus.epsilon(1e-5) == pytest.approx(reference.get_epsilon(1e-5))
    assert spike.epsilon(1e-5) == pytest.approx(randomized_response_epsilon(
        noise_parameter=RandomizedResponse(0.05).noise_parameter, bits=64, delta=1e-5))
    assert [ledger.unit.relation for ledger in (gaussian, opacus, spike)] == [
        "replace-one", "add/remove-one", "replace-one"]


def test_a_state_of_another_kind_or_setting_is_refused() -> None:
    gaussian, opacus, spike = spent()
    with pytest.raises(LedgerError, match="mechanism"):
        GaussianLedger().load_state_dict(opacus.state_dict())
    with pytest.raises(LedgerError, match="bits-per-sample"):
        SpikeLedger(RandomizedResponse(0.05), bits_per_sample=128,
                    delta=1e-5).load_state_dict(spike.state_dict())
    with pytest.raises(LedgerError, match="Unknown ledger"):
        ledger_from_state({"mechanism": "laplace"})
