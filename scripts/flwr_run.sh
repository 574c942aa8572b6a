#!/usr/bin/env bash
# `flwr run .` on this checkout's own SuperLink (scripts/superlink.sh), started here and stopped
# when the run ends. The arguments go to `flwr run . fedsnn-own`, e.g.
#   bash scripts/flwr_run.sh --stream --run-config "model='lenet5'" \
#       --federation-config "num-supernodes=5 client-resources-num-cpus=1"
# Exit status: flwr run's; 3 when this checkout's SuperLink address is held by another process.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/superlink.sh start || exit 3
trap 'bash scripts/superlink.sh stop' EXIT
trap 'exit 130' INT TERM
flwr run . fedsnn-own "$@"
