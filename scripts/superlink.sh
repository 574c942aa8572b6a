#!/usr/bin/env bash
# This checkout's own simulation SuperLink, so that `flwr run` never lands on a Flower server that
# someone else (another checkout, another user) left running: Flower's default `local` connection
# attaches to whatever answers on 127.0.0.1:39091, under that server's virtualenv and Ray.
#
#   bash scripts/superlink.sh start   # start it; refuses (exit 3) when its address is held
#   bash scripts/superlink.sh stop    # stop the one `start` started (by its PID), if any
#   bash scripts/superlink.sh status  # say whether it runs, and where
#
# Address: 127.0.0.1:$FEDSNN_SUPERLINK_PORT, by default a port derived from this checkout's path
# (40000-59999), so two checkouts get two SuperLinks. State (SQLite), log and PID file:
# $FLWR_HOME/superlink/ (scripts/env.sh: ./.flwr). `start` names it as the connection
# `fedsnn-own` in $FLWR_HOME/config.toml and makes that the default: `flwr run .` then goes there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
default_port=$(( 40000 + $(printf '%s' "$PWD" | cksum | cut -d' ' -f1) % 20000 ))
port="${FEDSNN_SUPERLINK_PORT:-$default_port}"
address="127.0.0.1:$port"
state="$FLWR_HOME/superlink"
pidfile="$state/superlink.pid"

ours() {  # the PID in the PID file, when that process is still this checkout's SuperLink
    local pid
    pid="$(cat "$pidfile" 2>/dev/null)" || return 1
    [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null \
        | grep -q "flower-superlink .*--database $state/state.db" && echo "$pid"
}

held() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

healthy() { curl -sf --max-time 1 "http://$address/health" >/dev/null 2>&1; }

alive() {  # any of these PIDs still running
    local pid
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && return 0; done
    return 1
}

tree() {  # a PID and all its descendants
    local child
    echo "$1"
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree "$child"; done
}

name_connection() {  # `fedsnn-own` -> this SuperLink, the default connection of this FLWR_HOME
    [ -f "$FLWR_HOME/config.toml" ] || flwr config list >/dev/null
    python - "$FLWR_HOME/config.toml" "$address" <<'PY'
import sys
from pathlib import Path
import tomli, tomli_w

path, address = Path(sys.argv[1]), sys.argv[2]
config = tomli.loads(path.read_text())
links = config.setdefault("superlink", {})
links["fedsnn-own"] = {"address": address, "insecure": True}
links["default"] = "fedsnn-own"
path.write_text(tomli_w.dumps(config))
PY
}

start() {
    local pid
    if pid="$(ours)"; then
        echo "superlink.sh: this checkout's SuperLink already runs on $address (PID $pid)," \
             "started by another run of this checkout; stop it with: bash scripts/superlink.sh stop" >&2
        exit 3
    fi
    if held; then
        echo "superlink.sh: refusing to run: $address is held by a process that is not this" \
             "checkout's SuperLink (another checkout or user?); pick a free port with" \
             "FEDSNN_SUPERLINK_PORT=NNNNN" >&2
        exit 3
    fi
    mkdir -p "$state"
    setsid flower-superlink --insecure --simulation --host 127.0.0.1 --port "$port" \
        --database "$state/state.db" --log-file "$state/superlink.log" \
        --disable-runtime-dependency-installation >>"$state/superlink.out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    for _ in $(seq 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "superlink.sh: flower-superlink exited at start; its output: $state/superlink.out" >&2
            rm -f "$pidfile"
            exit 3
        fi
        healthy && break
        sleep 0.2
    done
    healthy || { echo "superlink.sh: no answer from $address after 30 s" >&2; stop; exit 3; }
    name_connection
    echo "superlink.sh: this checkout's SuperLink runs on $address (PID $pid; state and log in" \
         "$state)" >&2
}

stop() {
    local pid pids
    pid="$(ours)" || { rm -f "$pidfile"; return 0; }
    pids="$(tree "$pid")"
    kill $pids 2>/dev/null || true
    for _ in $(seq 50); do
        alive $pids || break
        sleep 0.2
    done
    kill -9 $pids 2>/dev/null || true
    rm -f "$pidfile"
    echo "superlink.sh: stopped this checkout's SuperLink on $address (PID $pid)" >&2
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status)
        if pid="$(ours)"; then echo "running on $address (PID $pid)"
        else echo "not running (its address would be $address)"; exit 1; fi ;;
    *) sed -n '6,9p' "$0" >&2; exit 2 ;;
esac
