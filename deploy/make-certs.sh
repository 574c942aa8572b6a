#!/usr/bin/env bash
# Dev CA + SuperLink server certificate for TLS (development and testing; use your own PKI in
# production). Usage: deploy/make-certs.sh OUT_DIR [HOST_NAME ...] [IP ...]
# Defaults to SANs for localhost and 127.0.0.1. Writes OUT_DIR/{ca.crt,ca.key,server.crt,server.key}
# (keys mode 600). Existing files are never overwritten.
set -euo pipefail
out="${1:?usage: make-certs.sh OUT_DIR [HOST_NAME|IP ...]}"
shift
names=("$@")
[ "${#names[@]}" -gt 0 ] || names=(localhost 127.0.0.1)
if [ -e "$out/ca.crt" ] || [ -e "$out/server.crt" ]; then
    echo "make-certs: $out already holds certificates; remove them or pick another folder" >&2
    exit 1
fi
mkdir -p "$out"
umask 077
sans=()
for name in "${names[@]}"; do
    if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then sans+=("IP:$name"); else sans+=("DNS:$name"); fi
done
san_list=$(IFS=,; echo "${sans[*]}")
days="${CERT_DAYS:-365}"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -sha384 -days "$days" \
    -subj "/CN=fedsnn dev CA" -keyout "$out/ca.key" -out "$out/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -sha384 \
    -subj "/CN=${names[0]}" -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days "$days" -sha384 -out "$out/server.crt" \
    -extfile <(printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$san_list") \
    2>/dev/null
rm -f "$out/server.csr" "$out/ca.srl"
chmod 644 "$out/ca.crt" "$out/server.crt"
echo "make-certs: CA $out/ca.crt; server certificate $out/server.crt for $san_list"
