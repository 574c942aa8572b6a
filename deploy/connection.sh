#!/usr/bin/env bash
# Name a SuperLink connection for `flwr` commands in $FLWR_HOME/config.toml (default ~/.flwr).
#
#   deploy/connection.sh NAME HOST:PORT CA_FILE      # TLS: verify the SuperLink with CA_FILE
#   deploy/connection.sh NAME HOST:PORT --insecure   # local testing only
#
# HOST:PORT is the SuperLink's Control API (superlink.sh --control). Then:
#   flwr supernode register keys/node0.pub NAME;  flwr run . NAME --stream
set -euo pipefail
[ $# -eq 3 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
source "$(dirname "$0")/env.sh"
home="${FLWR_HOME:-$HOME/.flwr}"
[ -f "$home/config.toml" ] || flwr config list >/dev/null  # Flower writes its defaults first
python - "$@" <<'PY'
import os, sys
from pathlib import Path
import tomli, tomli_w

name, address, security = sys.argv[1:]
home = Path(os.environ.get("FLWR_HOME", Path.home() / ".flwr"))
path = home / "config.toml"
config = tomli.loads(path.read_text()) if path.exists() else {}
entry = {"address": address}
if security == "--insecure":
    entry["insecure"] = True
else:
    entry["root-certificates"] = str(Path(security).resolve(strict=True))
config.setdefault("superlink", {})[name] = entry
home.mkdir(parents=True, exist_ok=True)
path.write_text(tomli_w.dumps(config))
print(f"connection.sh: {name} -> {address} in {path}")
PY
