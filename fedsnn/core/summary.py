"""`fedsnn summary RUN_DIR…`: one line per run from its results.json."""

from __future__ import annotations

import json
from pathlib import Path


def summary_line(run_dir: Path) -> tuple[str, bool]:
    """A one-line summary of a run and whether it completed with every round trained."""
    path = run_dir / "results.json"
    if not path.is_file():
        return f"{run_dir}: no results.json", False
    data = json.loads(path.read_text())
    rounds = [r for r in data.get("rounds", []) if "central" in r]
    final = rounds[-1]["central"]["accuracy"] if rounds else float("nan")
    config = data.get("config", {})
    ok = data.get("status") == "completed"
    line = (f"{config.get('model', '?'):>12}  rounds {len(rounds) - 1 if rounds else 0:>3}  "
            f"test accuracy {final:.4f}  wall {data.get('wall-time-s', float('nan')):7.1f} s  "
            f"status {data.get('status')}  -> {run_dir}")
    audit = data.get("audit")
    if audit:
        line += (f"\n{'':>12}  audit: {audit['scored']} of {audit['attacked']} attacks scored, "
                 f"{audit['skipped']} skipped; report {audit['report']}")
        for key, what in (("identified", "images identified"),
                          ("histogram-exact", "class histograms read exactly")):
            stat = audit.get(key)
            if stat:
                counts = (f" = {stat['successes']}/{stat['trials']}" if "successes" in stat
                          else "")
                line += (f"\n{'':>12}  {what}: {stat['value']:.2f}{counts} "
                         f"(95 % CI {stat['low']:.2f}-{stat['high']:.2f})")
        if audit.get("verdict"):  # leak / no evidence beyond chance / inconclusive
            sentence = str(audit.get("verdict-sentence", "")).replace("**", "")
            line += (f"\n{'':>12}  verdict (images): "
                     f"{sentence or audit['verdict']}")
        if audit.get("histogram-verdict"):
            line += f"\n{'':>12}  verdict (class histograms): {audit['histogram-verdict']}"
    return line, ok
