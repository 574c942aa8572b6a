#!/usr/bin/env bash
# Set up (if needed) and run the default job with `flwr run .`: a local simulation with 5 clients
# on the embedded digits dataset, first the ANN `lenet`, then its spiking twin `lenet-snn`.
# Environment knobs: MODELS (default "lenet lenet-snn"), FEDSNN_OUT (default ./runs),
# RUN_CONFIG (extra --run-config pairs, e.g. "num-server-rounds=3").
# Every run goes to this checkout's own SuperLink (scripts/superlink.sh), started here and stopped
# when the script ends, whatever the ending: nothing it started stays up.
# Exit status: 0 only when every run completed (results.json "status": "completed"); 2 when the
# run config is refused before anything runs; 3 when this checkout's SuperLink address is held by
# another process; 1 when a run failed or wrote no results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
out="${FEDSNN_OUT:-$PWD/runs}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"  # the app runs from a copy of itself: paths must be absolute
stamp="$(date -u +%H%M%S)"
models="${MODELS:-lenet lenet-snn}"
federation="num-supernodes=5 client-resources-num-cpus=1"
for model in $models; do  # pre-flight: Flower would refuse a bad key without naming it
    .venv/bin/fedsnn check-config --run-config "model='$model' ${RUN_CONFIG:-}" \
        --federation-config "$federation" || exit 2
done
bash scripts/superlink.sh start || exit 3
trap 'bash scripts/superlink.sh stop' EXIT
trap 'exit 130' INT TERM
run_dirs=()
for model in $models; do
    name="$model-$stamp"
    echo "== fedsnn: training $model (5 simulated clients) =="
    # `flwr run` exits 0 even when the run fails: results.json's status is what counts
    # Flower 1.39's simulation prints one notice per run, unconditionally, before the app loads
    # ("Since flwr 1.32, default simulated SuperNodes changed from 10 to 2."): this script sets
    # num-supernodes itself, so that one known line is dropped here; every other line passes.
    { flwr run . fedsnn-own --stream \
        --run-config "model='$model' output-dir='$out' run-name='$name' ${RUN_CONFIG:-}" \
        --federation-config "$federation" || true; } 2>&1 \
        | grep --line-buffered -v "default simulated SuperNodes changed from 10 to 2" || true
    run_dir="$(ls -d "$out"/*-"$name" 2>/dev/null | tail -n 1 || true)"
    run_dirs+=("${run_dir:-$out/<no run folder for $name>}")
done
.venv/bin/fedsnn summary "${run_dirs[@]}"  # exits 1 unless every run completed
