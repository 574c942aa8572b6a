"""Fixtures of the demo's tests: the embedded digits with their judge, and a small audited run
folder written by the project's own writers (RunRecord, the audit queue and complete_audit)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the demo extra is not installed (pip install -e '.[demo]')")

from fedsnn.audit.auditor import Auditor  # noqa: E402
from fedsnn.audit.observe import observe_update  # noqa: E402
from fedsnn.audit.plan import AuditPlan  # noqa: E402
from fedsnn.audit.queue import AuditJob, AuditQueue  # noqa: E402
from fedsnn.audit.session import complete_audit  # noqa: E402
from fedsnn.core.models import build_model, spec_for  # noqa: E402
from fedsnn.core.results import RunRecord  # noqa: E402
from fedsnn.tools.demo.engine import Scenario, Victims, client_reply  # noqa: E402


@pytest.fixture(scope="session")
def victims() -> Victims:
    return Victims()


def write_run(run_dir: Path, victims: Victims, scenario: Scenario) -> Path:
    """A one-round audited run folder: results.json, audit.json, pictures and report."""
    config = scenario.run_config()
    data = victims.data
    spec = spec_for(config, data.in_channels, data.num_classes, data.image_size)
    model = build_model(spec, dlg_init=True, seed=0)
    sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
    images, labels = victims.batch(*victims.digit(3), size=scenario.batch_size, after=3)
    returned, metrics, trained = client_reply(config, spec, sent, images, labels)
    observation = observe_update("round-1/partition-0", spec, sent, returned,
                                 lr=config.learning_rate, steps=int(metrics["local-steps"]),
                                 batch_size=int(metrics["num-examples"]))
    plan = AuditPlan.from_config(config)
    run_dir.mkdir(parents=True)
    record = RunRecord(run_dir, config.to_dict(), {"seed": 0})
    record.update_round(0, "central", {"accuracy": 0.1, "loss": 2.3})
    record.update_round(1, "central", {"accuracy": 0.2, "loss": 2.2})
    pool_x, pool_y = data.test_x, data.test_y
    queue = AuditQueue(workers=0)
    queue.submit(AuditJob(1, 0, observation, plan.settings))
    ids = [3 + i for i in trained]  # the batch is test digits 3, 4, …
    auditor = Auditor(pool_x, pool_y, judge=victims.judge().model,
                      ground_truth=lambda server_round, partition_id: ids)
    summary = complete_audit(run_dir, queue=queue, plan=plan, skipped=[], auditor=auditor,
                             judge=victims.judge().card())
    record.set("audit", summary)
    record.finish()
    return run_dir


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory, victims: Victims) -> Path:
    """Two audited runs (mlp and mlp-snn, analytic attack: instant) under one output folder."""
    base = tmp_path_factory.mktemp("runs")
    write_run(base / "run-mlp", victims, Scenario(model="mlp", attack="analytic"))
    write_run(base / "run-mlp-snn", victims, Scenario(model="mlp-snn", attack="analytic"))
    return base
