"""`fedsnn summary`: one line per run, with the audit's verdict in the verdict's own words."""

import json
from pathlib import Path

from fedsnn.core.summary import summary_line


def test_the_summary_carries_the_audit_verdict(tmp_path: Path) -> None:
    audit = {"scored": 2, "attacked": 2, "skipped": 0, "report": "r.html",
             "identified": {"value": 0.03, "low": 0.01, "high": 0.06, "successes": 14,
                            "trials": 462},
             "verdict": "no evidence beyond chance",
             "verdict-sentence": "**no evidence beyond chance** at level 0.05: …",
             "histogram-verdict": "no evidence beyond chance"}
    (tmp_path / "results.json").write_text(json.dumps(
        {"status": "completed", "config": {"model": "lenet"}, "wall-time-s": 60.0,
         "rounds": [{"round": 0, "central": {"accuracy": 0.1}},
                    {"round": 1, "central": {"accuracy": 0.8}}], "audit": audit}))
    line, ok = summary_line(tmp_path)
    assert ok and "= 14/462" in line
    assert "verdict (images): no evidence beyond chance" in line
    assert "verdict (class histograms): no evidence beyond chance" in line
