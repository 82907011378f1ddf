#!/usr/bin/env bash
# A self-signed certificate for nginx (deploy/nginx/certs/tls.crt and tls.key) for localhost and
# 127.0.0.1, valid a year, when there is none. A real deployment mounts its own there instead.
set -euo pipefail
folder="$(cd "$(dirname "$0")" && pwd)/nginx/certs"
mkdir -p "$folder"
[ -f "$folder/tls.crt" ] && [ "${FORCE:-0}" != 1 ] && exit 0
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$folder/tls.key" -out "$folder/tls.crt" 2>/dev/null
chmod 644 "$folder/tls.key"  # read by nginx's workers in the container
echo "certs: wrote $folder/tls.crt (self-signed, localhost and 127.0.0.1)"
