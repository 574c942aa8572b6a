"""The declared threat model: attacks are refused when it withholds what they need."""

import pytest

from attacks import NEEDS, ThreatModel, refusal
from attacks.threat_model import PUBLIC_DATA, UNROLLED_NEEDS, UNROLLED_SHUFFLE_NEEDS


def test_default_server_runs_every_attack_that_needs_no_public_data():
    for name, needs in NEEDS.items():
        reason = refusal(name, needs, ThreatModel())
        if PUBLIC_DATA in needs:  # surrogate data is a capability a server must be granted
            assert reason is not None and PUBLIC_DATA in reason, name
            assert refusal(name, needs, ThreatModel().grant(PUBLIC_DATA)) is None, name
        else:
            assert reason is None, name


def test_withheld_capability_refuses_the_attack_with_a_one_line_reason():
    weak = ThreatModel().withhold("local-epochs")
    reason = refusal("unrolled", UNROLLED_NEEDS, weak)
    assert reason == "attack 'unrolled' needs local-epochs, which the threat model withholds"
    assert "\n" not in reason


def test_stronger_capabilities_are_off_by_default_and_can_be_granted():
    assert refusal("unrolled-shuffle", UNROLLED_SHUFFLE_NEEDS, ThreatModel()) is not None
    assert refusal("decoder", {PUBLIC_DATA}, ThreatModel()) is not None
    strong = ThreatModel().grant("client-randomness", PUBLIC_DATA)
    assert refusal("unrolled-shuffle", UNROLLED_SHUFFLE_NEEDS, strong) is None
    assert strong.to_dict()["withheld"] == []


def test_unknown_capability_names_are_rejected():
    with pytest.raises(ValueError, match="unknown capability 'epochs'"):
        ThreatModel().withhold("epochs")
    with pytest.raises(ValueError, match="declares unknown capability"):
        refusal("x", {"telepathy"}, ThreatModel())
