# Environment for the deploy scripts (sourced): the repository's venv first on PATH (the
# SuperLink and SuperNodes start flower-superexec by name), no telemetry, no update checks, and
# no per-run dependency installation. FLWR_HOME defaults to ~/.flwr; set it to keep apart.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$repo/.venv/bin:$PATH"
export FLWR_TELEMETRY_ENABLED=0
export FLWR_DISABLE_UPDATE_CHECK=1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
