#!/usr/bin/env bash
# Start a Flower SuperLink with TLS and SuperNode authentication (exec: the PID is the SuperLink).
#
#   deploy/superlink.sh --certs DIR [--fleet HOST:PORT] [--control HOST:PORT] [--database FILE]
#   deploy/superlink.sh --insecure-local-testing [--fleet ...] [--control ...]
#   deploy/superlink.sh --simulation-local-testing [--control ...]   # Flower's simulation engine
#
# --certs DIR     holds ca.crt, server.crt, server.key (deploy/make-certs.sh makes a dev set)
# --fleet         gRPC Fleet API, where SuperNodes connect        (default 127.0.0.1:9092)
# --control       HTTPS Control/Runtime API, for `flwr` commands  (default 127.0.0.1:9093)
# --database      SQLite file for the SuperLink's state (default: in memory)
# Nothing binds to all interfaces unless you pass such an address (e.g. --fleet 0.0.0.0:9092).
# --insecure-local-testing: no TLS and no node authentication; for a laptop, never a network.
# --simulation-local-testing: the same, running ClientApps in Flower's simulation engine instead
#   of talking to SuperNodes (flwr run ... --federation-config "num-supernodes=2").
set -euo pipefail
fleet=127.0.0.1:9092
control=127.0.0.1:9093
certs=""
insecure=0
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --certs) certs="$2"; shift 2 ;;
        --fleet) fleet="$2"; shift 2 ;;
        --control) control="$2"; shift 2 ;;
        --database) extra+=(--database "$2"); shift 2 ;;
        --insecure-local-testing) insecure=1; shift ;;
        --simulation-local-testing) insecure=1; extra+=(--simulation); shift ;;
        *) echo "superlink.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/env.sh"
if [ "$insecure" = 1 ]; then
    echo "superlink.sh: INSECURE local-testing mode: no TLS, no node authentication" >&2
    security=(--insecure)
else
    [ -n "$certs" ] || { echo "superlink.sh: pass --certs DIR (or --insecure-local-testing)" >&2; exit 2; }
    for f in ca.crt server.crt server.key; do
        [ -f "$certs/$f" ] || { echo "superlink.sh: $certs/$f is missing (deploy/make-certs.sh)" >&2; exit 2; }
    done
    security=(--ssl-ca-certfile "$certs/ca.crt" --ssl-certfile "$certs/server.crt"
              --ssl-keyfile "$certs/server.key" --enable-supernode-auth)
fi
exec flower-superlink "${security[@]}" --fleet-api-address "$fleet" \
    --host "${control%:*}" --port "${control##*:}" \
    --disable-runtime-dependency-installation "${extra[@]}"
