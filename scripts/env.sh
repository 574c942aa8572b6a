# Environment for Flower runs (sourced by the scripts): no telemetry, no update checks, and no
# per-run dependency installation (Flower would otherwise `uv sync` every run into a fresh env).
export FLWR_HOME="${FLWR_HOME:-$PWD/.flwr}"
export FLWR_TELEMETRY_ENABLED=0
export FLWR_DISABLE_UPDATE_CHECK=1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
export RAY_TMPDIR="${RAY_TMPDIR:-/tmp/fedsnn-ray}"
export RAY_DEDUP_LOGS=0
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p "$FLWR_HOME" "$RAY_TMPDIR"
