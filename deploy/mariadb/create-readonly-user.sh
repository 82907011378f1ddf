#!/bin/sh
# The guide's `readonly` user, for read replicas and reporting: SELECT on Ticketera's database only.
# Run it on the primary: replication brings the user to every replica.
#   docker-compose exec -T -e READONLY_PASSWORD=... mariadb sh < deploy/mariadb/create-readonly-user.sh
# or, beside any server:
#   READONLY_PASSWORD=... MARIADB_ROOT_PASSWORD=... [MARIADB_HOST=... MARIADB_PORT=...] sh create-readonly-user.sh
set -eu
: "${READONLY_PASSWORD:?set READONLY_PASSWORD}"
database=${MARIADB_DATABASE:-ticketera}
# The password travels in the environment, not on the command line (where `ps` shows it), and an
# empty one (a root that logs in by socket or without a password) must not make the client prompt.
export MYSQL_PWD="${MARIADB_ROOT_PASSWORD:-}"
set -- -uroot
if [ -n "${MARIADB_HOST:-}" ]; then
  set -- "$@" --protocol=tcp -h"${MARIADB_HOST}" -P"${MARIADB_PORT:-3306}"
fi
mariadb "$@" <<SQL
CREATE USER IF NOT EXISTS 'readonly'@'%' IDENTIFIED BY '${READONLY_PASSWORD}';
ALTER USER 'readonly'@'%' IDENTIFIED BY '${READONLY_PASSWORD}';
GRANT SELECT ON \`${database}\`.* TO 'readonly'@'%';
FLUSH PRIVILEGES;
SQL
echo "readonly: SELECT on ${database}"
