#!/usr/bin/env bash
# SuperNode authentication key pairs (EC P-384, OpenSSH format, as Flower expects).
# Usage: deploy/make-node-keys.sh OUT_DIR NAME [NAME ...]  ->  OUT_DIR/NAME (private), NAME.pub
# Existing keys are never overwritten.
set -euo pipefail
out="${1:?usage: make-node-keys.sh OUT_DIR NAME [NAME ...]}"
shift
[ "$#" -gt 0 ] || { echo "make-node-keys: name at least one node" >&2; exit 1; }
mkdir -p "$out"
for name in "$@"; do
    if [ -e "$out/$name" ]; then
        echo "make-node-keys: $out/$name exists; keeping it" >&2
        continue
    fi
    ssh-keygen -q -t ecdsa -b 384 -N "" -C "fedsnn-$name" -f "$out/$name"
    echo "make-node-keys: $out/$name (private) and $out/$name.pub (register this one)"
done
