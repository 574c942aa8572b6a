"""Wall time of the same 2-round run deployed (SuperLink + 2 SuperNodes over TLS with node auth)
and in Flower's simulation engine (a simulation SuperLink, 2 virtual nodes), on this machine.

    .venv/bin/python deploy/compare.py [--out DIR] [--repeats N]

Prints a Markdown table and writes DIR/compare.json. The run is the one the deployment e2e test
makes (`TWO_ROUNDS`). Times: `submit->finished` from `flwr run` until the SuperLink reports the
run finished; `ServerApp` is results.json's wall-time-s (first line of the ServerApp to
results.json's last write). Starting the federation is timed apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.federation import LocalFederation  # noqa: E402

# lenet-snn, FedSGD (one batch per client and round), the in-line audit on round 1.
TWO_ROUNDS: dict[str, Any] = {
    "model": "lenet-snn", "num-server-rounds": 2, "update-mode": "gradient", "batch-size": 2,
    "learning-rate": 0.05, "audit-enabled": True, "audit-rounds": "1", "audit-max-clients": 2,
    "audit-attack": "idlg", "audit-optimizer": "adam", "audit-iterations": 20,
    "audit-time-budget-s": 30.0, "round-timeout": 300.0}
NODES = ("node0", "node1")


def measure(mode: str, root: Path) -> dict[str, Any]:
    """One run in `mode` ('deployment' or 'simulation'): its timings and final accuracy."""
    started = time.monotonic()
    with LocalFederation(root, simulation=mode == "simulation") as fed:
        if mode == "deployment":
            fed.make_credentials(list(NODES))
        fed.start_superlink()
        if mode == "deployment":
            for index, name in enumerate(NODES):
                fed.register(name)
                fed.start_supernode(name, f"partition-id={index} num-partitions={len(NODES)}")
            fed.wait_online(len(NODES))
        setup = time.monotonic() - started
        load = Path("/proc/loadavg").read_text().split()[0]
        submitted = time.monotonic()
        run_id = fed.flwr_run(TWO_ROUNDS | {"output-dir": str(root / "runs")},
                              num_supernodes=len(NODES))
        status = fed.wait_run(run_id, timeout=1200)
        total = time.monotonic() - submitted
    (path,) = (root / "runs").glob("*/results.json")
    results = json.loads(path.read_text())
    return {"mode": mode, "status": status, "setup-s": round(setup, 1),
            "submit-to-finished-s": round(total, 1), "serverapp-s": results.get("wall-time-s"),
            "final-accuracy": results["rounds"][-1]["central"]["accuracy"],
            "load-average-1min": float(load)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for compare.json")
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode, alternating")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="fedsnn-compare-"))
    rows = []
    for repeat in range(args.repeats):
        for mode in ("deployment", "simulation"):
            rows.append(measure(mode, out / f"{mode}-{repeat}") | {"repeat": repeat})
            print(json.dumps(rows[-1]), flush=True)
    (out / "compare.json").write_text(json.dumps({"run-config": TWO_ROUNDS, "runs": rows},
                                                 indent=2) + "\n")
    print("\n| mode | setup (s) | submit→finished (s) | ServerApp (s) | final accuracy | load avg |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['setup-s']} | {row['submit-to-finished-s']} | "
              f"{row['serverapp-s']} | {row['final-accuracy']:.3f} | {row['load-average-1min']} |")
    print(f"\n(compare.json in {out})")


if __name__ == "__main__":
    main()
