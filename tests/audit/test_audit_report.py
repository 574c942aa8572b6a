"""The audit report: a plain-words verdict first, the threat model, HTML from a Markdown library."""

from __future__ import annotations

import json
from pathlib import Path

from fedsnn.audit.report import write_report
from fedsnn.audit.verdict import leakage_summary


def _row(partition: int, identified: int, exact: float) -> dict:
    return {"round": 1, "partition-id": partition, "attack": "unrolled", "status": "ok",
            "batch-size": 8, "identified": identified, "asr": 0.5, "psnr": 12.0, "ssim": 0.3,
            "histogram": {"classes-exact": 0.9, "all-exact": exact, "total-variation": 0.05},
            "prior-histogram": {"classes-exact": 0.5, "all-exact": 0.0, "total-variation": 0.3}}


def _run_dir(tmp_path: Path) -> Path:
    audit = {"plan": {"attack": "auto"},
             "threat-model": {"granted": ["global-weights", "local-epochs"],
                              "withheld": ["client-randomness"], "unused": ["public-data"]},
             "baselines": {"mean-image": {"identified": 0, "samples": 16, "mse": 0.1,
                                          "psnr": 10.0, "ssim": 0.1, "asr": 0.1}},
             "attacks": [_row(0, 6, 1.0), _row(1, 2, 0.0)], "skipped": []}
    audit["summary"] = leakage_summary(audit)
    (tmp_path / "audit.json").write_text(json.dumps(audit))
    (tmp_path / "results.json").write_text(json.dumps(
        {"config": {"model": "lenet", "dataset": "digits", "update-mode": "fedavg"},
         "rounds": [{"round": r, "central": {"accuracy": 0.1 * r}} for r in range(3)]}))
    return tmp_path


def test_summary_pools_identified_images_with_a_wilson_interval(tmp_path: Path) -> None:
    summary = json.loads((_run_dir(tmp_path) / "audit.json").read_text())["summary"]
    assert summary["identified"]["value"] == 0.5  # 8 of 16 images
    assert 0.2 < summary["identified"]["low"] < 0.5 < summary["identified"]["high"] < 0.8
    assert summary["histogram"]["clients-exact"]["value"] == 0.5
    assert summary["identified-guesses"]["mean-image"]["value"] == 0.0


def test_report_opens_with_the_verdict_and_states_the_threat_model(tmp_path: Path) -> None:
    md_path, html_path = write_report(_run_dir(tmp_path))
    md = md_path.read_text()
    assert md.index("## Verdict") < md.index("## Threat model") < md.index("## How much leaked")
    assert "identified 50 % (95 % CI" in md and "That is leakage." in md
    assert "Withheld: client-randomness" in md
    assert "Granted but read by no attack that ran: public-data" in md
    page = html_path.read_text()
    assert "<table>" in page and "<code>lenet</code>" in page and "`" not in page
    assert "data:image/png;base64," in page  # the plot, inlined
