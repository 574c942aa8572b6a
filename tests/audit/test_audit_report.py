"""The audit report: a plain-words verdict first, the threat model, HTML from a Markdown library."""

from __future__ import annotations

import json
from pathlib import Path

from fedsnn.audit.decision import Count, rate_test, values_test
from fedsnn.audit.report import write_report
from fedsnn.audit.verdict import leakage_summary


def _tests(identified: int) -> dict:
    nulls = {"matched-noise": Count(0, 24), "public-draws": Count(1, 24)}
    return {"identified": rate_test("identified", Count(identified, 8), nulls).to_dict(),
            "asr": rate_test("asr", Count(4, 8), {**nulls, "largest-class": Count(3, 8)}
                             ).to_dict(),
            "psnr": values_test("psnr", [12.0] * 8, {"public-draws": [9.0] * 24}).to_dict()}


def _row(partition: int, identified: int, exact: float, canary: bool = False) -> dict:
    return {"round": 1, "partition-id": partition, "attack": "unrolled", "status": "ok",
            "canary": canary, "steps-done": 200, "steps-planned": 200, "matching-loss": 0.01,
            "batch-size": 8, "images": 8, "identified": identified, "asr": 0.5, "psnr": 12.0,
            "ssim": 0.3, "tests": _tests(identified),
            "histogram": {"classes-exact": 0.9, "all-exact": exact, "total-variation": 0.05},
            "prior-histogram": {"classes-exact": 0.5, "all-exact": 0.0, "total-variation": 0.3},
            "histogram-test": {"p-value": 0.01, "worse-than-prior": False}}


def _run_dir(tmp_path: Path) -> Path:
    audit = {"plan": {"attack": "auto"},
             "threat-model": {"granted": ["global-weights", "local-epochs"],
                              "withheld": ["client-randomness"], "unused": ["public-data"]},
             "baselines": {"mean-image": {"identified": 0, "samples": 16, "mse": 0.1,
                                          "psnr": 10.0, "ssim": 0.1, "asr": 0.1}},
             "attacks": [_row(0, 6, 1.0), _row(1, 2, 0.0)],
             "canaries": [_row(-1, 8, 1.0, canary=True)], "skipped": []}
    audit["summary"] = leakage_summary(audit)
    (tmp_path / "audit.json").write_text(json.dumps(audit))
    (tmp_path / "results.json").write_text(json.dumps(
        {"config": {"model": "lenet", "dataset": "digits", "update-mode": "fedavg"},
         "rounds": [{"round": r, "central": {"accuracy": 0.1 * r}} for r in range(3)]}))
    return tmp_path


def test_summary_pools_identified_images_beside_their_nulls(tmp_path: Path) -> None:
    summary = json.loads((_run_dir(tmp_path) / "audit.json").read_text())["summary"]
    assert summary["identified"]["value"] == 0.5  # 8 of 16 images, the canary apart
    assert summary["identified"]["clusters"] == 2  # a client-clustered interval
    assert 0.0 < summary["identified"]["low"] < 0.5 < summary["identified"]["high"] < 1.0
    identified = summary["tests"]["identified"]
    assert identified["counts"]["public-draws"] == [2, 48] and identified["p_value"] < 0.001
    assert summary["canary"]["identified"]["attack"] == 1.0
    assert summary["verdict"]["outcome"] == "leak"
    assert summary["histogram"]["clients-exact"]["value"] == 0.5
    assert summary["identified-guesses"]["mean-image"]["value"] == 0.0


def test_report_opens_with_the_verdict_and_states_the_threat_model(tmp_path: Path) -> None:
    md_path, html_path = write_report(_run_dir(tmp_path))
    md = md_path.read_text()
    assert md.index("## Verdict") < md.index("## Threat model") < md.index("## How much leaked")
    assert "**lenet:** **leak**" in md and "8/16" in md and "canary" in md
    assert md.index("## Each metric beside its chance level") < md.index("## Glossary")
    assert "Withheld: client-randomness" in md
    assert "Granted but read by no attack that ran: public-data" in md
    page = html_path.read_text()
    assert "<table>" in page and "<code>lenet</code>" in page and "`" not in page
    assert "data:image/png;base64," in page  # the plot, inlined
