#!/usr/bin/env bash
# What `audit-attack = "auto"` recovers with and without public data (issue 29): one round of
# lenet-snn on MNIST, 5 in-process nodes (fedsnn.tools.local_grid), every reply attacked.
#   $1: audit-public-data (test-split | none)
#   $2: gradient (FedSGD, batch 1) | fedavg (8 images per client, batch 8, 5 Adam epochs)
# Prints each attacked reply (attack, status, identified, MSE), the granted capabilities no
# attack read, and the pooled identified rate.
set -euo pipefail
public="${1:-test-split}"
mode="${2:-gradient}"
out="${OUT:-runs/auto-public}/$mode-$public"
PYTHON="${PYTHON:-.venv/bin/python}"
# -c, not stdin: the audit's worker processes re-import the main module, which stdin is not
code=$(cat <<'PY'
import json
import sys

import torch

from client_app import create_client_app
from fedsnn.tools.local_grid import federate_in_process
from server_app import run

torch.set_num_threads(1)
public, mode, out = sys.argv[1:]
config = {"model": "lenet-snn", "dataset": "mnist:/work/shared/data/mnist",
          "num-server-rounds": 1, "audit-max-clients": 5, "audit-public-data": public,
          "output-dir": out}
config |= ({"update-mode": "gradient", "batch-size": 1} if mode == "gradient" else
           {"update-mode": "fedavg", "max-train-samples": 8, "batch-size": 8,
            "local-epochs": 5, "audit-time-budget-s": 300})
folder = federate_in_process(run, create_client_app(config), config, 5)
audit = json.loads((folder / "audit.json").read_text())
for row in audit["attacks"]:
    print(row["attack"], row.get("status"), row.get("identified"), row.get("mse"),
          row["message"][:120])
print("granted, read by no attack:", audit["threat-model"].get("unused"))
print("identified:", audit["summary"]["identified"])
print("guesses:", {k: (v["identified"], v["samples"], round(v["mse"], 4))
                   for k, v in audit["baselines"].items()})
PY
)
"$PYTHON" -c "$code" "$public" "$mode" "$out"
