#!/usr/bin/env bash
# The stack's .env, when there is none: .env.example's values (the `dev` profile, with the MercadoPago
# simulator, among them), and fresh random secrets (the app's five, the database user's and MariaDB root's), so
# `cp .env.example .env` is not even needed and no two installations share a key. An existing .env
# is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .env ] && exit 0
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
{
  cat .env.example
  echo
  echo "# --- Made by deploy/stack-env.sh for the Compose stack ($(date -u +%Y-%m-%dT%H:%M:%SZ)) ---"
  # Redis' IO threads for this host's cores (deploy/redis/redis.conf says why: a thread spins).
  cores=$(nproc 2>/dev/null || echo 1)
  if [ "$cores" -ge 8 ]; then threads=4; elif [ "$cores" -ge 4 ]; then threads=2; else threads=1; fi
  echo "REDIS_IO_THREADS=$threads"
  for name in ADMIN_API_KEY STAFF_API_KEY SECRET_KEY MP_ACCESS_TOKEN MP_WEBHOOK_SECRET DB_PASSWORD MARIADB_ROOT_PASSWORD; do
    echo "$name=$(secret)"
  done
} > .env
chmod 600 .env
echo "stack-env: wrote .env with fresh secrets (the admin key is ADMIN_API_KEY there)"
