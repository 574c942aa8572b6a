"""End of an in-line audit: wait for the attacks, score them, write audit.json and the report."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsnn.audit.auditor import Auditor
from attacks import Reconstruction
from fedsnn.audit.plan import AuditPlan, unused_capabilities
from fedsnn.audit.queue import AuditJob, AuditQueue
from fedsnn.audit.report import save_pair_grid, write_report
from fedsnn.audit.verdict import leakage_summary, update_verdicts
from fedsnn.core.results import write_json_atomic

log = logging.getLogger(__name__)


def drain_timeout(plan: AuditPlan, pending: int) -> float | None:
    """How long the server waits for outstanding attacks: their time budgets, run by the
    workers in parallel, plus a minute for starting workers and scoring."""
    budget = plan.settings.time_budget_s
    if budget is None:
        return None
    return budget * math.ceil(pending / max(plan.workers, 1)) + 60.0


def score_finished(auditor: Auditor, finished: Sequence[tuple[AuditJob, Reconstruction]]
                   ) -> list[dict[str, Any]]:
    """audit.json rows of finished attacks: each scored beside its nulls (the permutation null
    from the same round's other reconstructions), with its own verdict (its round's canaries as
    the positive control)."""
    rows = [auditor.score(job, reconstruction,
                          others=[other for other_job, other in finished
                                  if other_job is not job
                                  and other_job.server_round == job.server_round])
            for job, reconstruction in finished]
    for row, verdict in zip(rows, update_verdicts(rows), strict=True):
        if verdict is not None:
            row["verdict"] = verdict
    return rows


def complete_audit(run_dir: Path, *, queue: AuditQueue, plan: AuditPlan,
                   skipped: Sequence[dict[str, Any]], auditor: Auditor,
                   judge: dict[str, Any] | None = None) -> dict[str, Any]:
    """Drain the queue, score every attack, write audit.json, pictures and the report.

    `judge` is the judge's card (`Judge.card()`: accuracy, majority-class baseline, where it
    was fit and measured, whether ASR is meaningful); None without a judge.

    Returns the audit's summary (also stored in audit.json)."""
    finished = queue.drain(drain_timeout(plan, len(queue.pending)))
    rows = []
    for (job, _), row in zip(finished, score_finished(auditor, finished), strict=True):
        images = row.pop("_images", None)
        if images is not None:
            who = (f"canary{'-' + job.defense.split()[0] if job.defense else ''}" if job.is_canary
                   else f"partition-{job.partition_id}")
            name = f"audit/round-{job.server_round}-{who}.png"
            save_pair_grid(run_dir / name, *images,
                           title=f"{row['attack']}, round {job.server_round}, "
                                 f"{who.replace('-', ' ')}\nPSNR {row['psnr']:.1f} dB, "
                                 f"SSIM {row['ssim']:.2f}")
            row["image"] = name
        rows.append(row)
    audit = {
        "plan": {"attack": plan.attack_name, "rounds": "all" if plan.rounds is None
                 else sorted(plan.rounds), "max-clients": plan.max_clients,
                 "max-batch": plan.max_batch, "settings": plan.settings.to_dict(),
                 "public-data": None if queue.public is None else queue.public.source,
                 "unrolled-settings": plan.unrolled.to_dict() if plan.unrolled else None},
        "threat-model": {**plan.threat_model.to_dict(), "unused": unused_capabilities(
            plan.threat_model, sorted({row["attack"] for row in rows}))},
        "judge-test-accuracy": (judge or {}).get("accuracy"),
        "judge": judge or {},
        "baselines": auditor.baselines([i for job, _ in finished if not job.is_canary
                                        for i in auditor.sample_ids(job)]),
        "attacks": [row for row in rows if not row.get("canary")],
        "canaries": [row for row in rows if row.get("canary") and not row.get("defense")],
        # "what to change": canaries made under client-side defenses (audit-canary-defenses)
        "what-to-change": [row for row in rows if row.get("defense")],
        "skipped": list(skipped),
    }
    audit["summary"] = leakage_summary(audit)
    write_json_atomic(run_dir / "audit.json", audit)
    _, html_path = write_report(run_dir)
    log.info("audit: %d attacks scored, report at %s", len(rows), html_path)
    rows = audit["attacks"]
    return {"attacked": len(rows), "scored": sum(r.get("psnr") is not None for r in rows),
            "canaries": len(audit["canaries"]),
            "skipped": len(skipped), "report": str(html_path),
            "identified": audit["summary"]["identified"],
            "histogram-exact": (audit["summary"]["histogram"] or {}).get("clients-exact"),
            "verdict": (audit["summary"]["verdict"] or {}).get("outcome"),
            "verdict-sentence": (audit["summary"]["verdict"] or {}).get("sentence"),
            "histogram-verdict": (audit["summary"]["histogram-test"] or {}).get("outcome")}
