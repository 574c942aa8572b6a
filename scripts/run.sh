#!/usr/bin/env bash
# Set up (if needed) and run the default job with `flwr run .`: a local simulation with 5 clients
# on the embedded digits dataset, first the ANN `lenet`, then its spiking twin `lenet-snn`.
# Environment knobs: MODELS (default "lenet lenet-snn"), FEDSNN_OUT (default ./runs),
# RUN_CONFIG (extra --run-config pairs, e.g. "num-server-rounds=3").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
out="${FEDSNN_OUT:-$PWD/runs}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"  # the app runs from a copy of itself: paths must be absolute
stamp="$(date -u +%H%M%S)"
run_dirs=()
for model in ${MODELS:-lenet lenet-snn}; do
    name="$model-$stamp"
    echo "== fedsnn: training $model (5 simulated clients) =="
    flwr run . --stream \
        --run-config "model='$model' output-dir='$out' run-name='$name' ${RUN_CONFIG:-}" \
        --federation-config "num-supernodes=5 client-resources-num-cpus=1"
    run_dirs+=("$(ls -d "$out"/*-"$name" | tail -n 1)")
done
.venv/bin/fedsnn summary "${run_dirs[@]}"
