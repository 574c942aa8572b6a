#!/usr/bin/env bash
# Start a Flower SuperNode that connects to a SuperLink over TLS with its authentication key
# (exec: the PID is the SuperNode).
#
#   deploy/supernode.sh --superlink HOST:PORT --ca FILE --key FILE --node-config "..." [--port N]
#   deploy/supernode.sh --insecure-local-testing --superlink HOST:PORT --node-config "..." [--port N]
#
# --superlink    the SuperLink's Fleet API address
# --ca           CA certificate that signed the SuperLink's certificate (ca.crt)
# --key          this node's private key (deploy/make-node-keys.sh; its .pub must be registered)
# --node-config  this node's data: "partition-id=0 num-partitions=2" (a partition of the run's
#                dataset) or 'data-path="/data/node0.npz"' (its own data; partition-id optional)
# --port         the node's local ClientApp API port on 127.0.0.1 (default 9094; one per node)
# --max-retries  give up after N failed connection attempts (default: retry forever)
set -euo pipefail
superlink=127.0.0.1:9092
ca=""
key=""
node_config=""
port=9094
insecure=0
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --superlink) superlink="$2"; shift 2 ;;
        --ca) ca="$2"; shift 2 ;;
        --key) key="$2"; shift 2 ;;
        --node-config) node_config="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --max-retries) extra+=(--max-retries "$2" --max-wait-time 30); shift 2 ;;
        --insecure-local-testing) insecure=1; shift ;;
        *) echo "supernode.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
source "$(dirname "$0")/env.sh"
[ -n "$node_config" ] || { echo "supernode.sh: pass --node-config" >&2; exit 2; }
if [ "$insecure" = 1 ]; then
    echo "supernode.sh: INSECURE local-testing mode: no TLS, no node authentication" >&2
    security=(--insecure)
else
    [ -f "$ca" ] || { echo "supernode.sh: pass --ca FILE (the CA certificate)" >&2; exit 2; }
    [ -f "$key" ] || { echo "supernode.sh: pass --key FILE (this node's private key)" >&2; exit 2; }
    security=(--root-certificates "$ca" --auth-supernode-private-key "$key")
fi
exec flower-supernode "${security[@]}" --superlink "$superlink" --host 127.0.0.1 --port "$port" \
    --node-config "$node_config" "${extra[@]}"
