#!/usr/bin/env bash
# The in-line audit on an ANN and its spiking twin, same data, same clients, same attack (FedSGD,
# batch 1, iDLG on 2 clients in rounds 1 and 2), side by side in docs/audit-ann-vs-snn/.
# Usage: bash scripts/audit_ann_vs_snn.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
out="$PWD/runs/ann-vs-snn-$(date -u +%Y%m%d-%H%M%S)"
docs="${1:-$PWD/docs/audit-ann-vs-snn}"
mkdir -p "$out"
config="update-mode='gradient' batch-size=1 learning-rate=0.01 num-server-rounds=2 audit-rounds='1,2' \
audit-max-clients=2 audit-attack='idlg' audit-iterations=100 audit-time-budget-s=120.0 output-dir='$out'"
for model in lenet lenet-snn; do
    bash scripts/flwr_run.sh --stream --run-config "model='$model' run-name='$model' $config ${RUN_CONFIG:-}" \
        --federation-config "num-supernodes=5 client-resources-num-cpus=1" > "$out/$model.log" 2>&1
done
rm -rf "$docs"
.venv/bin/fedsnn report "$out"/*-lenet "$out"/*-lenet-snn --out "$docs"
