"""One function from a reply to a verdict: observe, attack, score beside the nulls, decide."""

from __future__ import annotations

import torch

from attacks import AttackSettings
from fedsnn.audit.auditor import Auditor
from fedsnn.audit.canary import Reply, client_reply, make_canary
from fedsnn.audit.plan import AuditPlan
from fedsnn.audit.reply import NotAttacked, audit_reply
from fedsnn.core.config import RunConfig
from fedsnn.core.data import load_dataset
from fedsnn.core.models import ModelSpec, build_model

import pytest

CONFIG = RunConfig(update_mode="gradient", batch_size=1, learning_rate=0.1)
SPEC = ModelSpec("lenet")
PLAN = AuditPlan(rounds=None, max_clients=1, max_batch=8, workers=0,
                 settings=AttackSettings(attack="idlg", iterations=60))


def test_a_batch_of_one_through_audit_reply_is_a_leak_and_its_canary_has_power() -> None:
    data = load_dataset("digits", 28)
    sent = build_model(SPEC, seed=0, dlg_init=True).state_dict()
    returned, metrics, trained = client_reply(CONFIG, SPEC, sent, data.train_x[5:6],
                                              data.train_y[5:6], {"lr": 0.1})
    reply = Reply(1, 0, sent, returned, int(metrics["num-examples"]), int(metrics["local-steps"]))
    auditor = Auditor(data.train_x, data.train_y, ground_truth=lambda _r, _p: [5],
                      public_x=data.test_x, public_y=data.test_y, native_size=8)
    canary = make_canary(CONFIG, SPEC, sent, {"lr": 0.1}, data.test_x, data.test_y, images=1,
                         server_round=1)
    audited = audit_reply(reply, plan=PLAN, config=CONFIG, spec=SPEC, auditor=auditor,
                          canary=canary)
    assert trained == [0] and audited.row["identified"] == 1
    assert audited.verdict is not None and audited.verdict.outcome.value == "leak"
    assert audited.canary_row is not None and audited.canary_row["identified"] == 1
    assert audited.verdict.canary_has_power
    assert audited.row["verdict"]["outcome"] == "leak"  # the same verdict in audit.json's row


def test_a_reply_the_plan_does_not_attack_says_why() -> None:
    sent = build_model(SPEC, seed=0).state_dict()
    reply = Reply(1, 0, sent, sent, num_examples=9)
    with pytest.raises(NotAttacked, match="audit-max-batch"):
        audit_reply(reply, plan=PLAN, config=CONFIG, spec=SPEC,
                    auditor=Auditor(torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long)))
