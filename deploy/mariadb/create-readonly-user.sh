#!/bin/sh
# The guide's `readonly` user, for read replicas and reporting: SELECT on Ticketera's database only.
#   docker-compose exec -T -e READONLY_PASSWORD=... mariadb sh < deploy/mariadb/create-readonly-user.sh
# or, beside any server: READONLY_PASSWORD=... MARIADB_ROOT_PASSWORD=... sh create-readonly-user.sh
set -eu
: "${READONLY_PASSWORD:?set READONLY_PASSWORD}"
database=${MARIADB_DATABASE:-ticketera}
mariadb -uroot -p"${MARIADB_ROOT_PASSWORD:-}" <<SQL
CREATE USER IF NOT EXISTS 'readonly'@'%' IDENTIFIED BY '${READONLY_PASSWORD}';
ALTER USER 'readonly'@'%' IDENTIFIED BY '${READONLY_PASSWORD}';
GRANT SELECT ON \`${database}\`.* TO 'readonly'@'%';
FLUSH PRIVILEGES;
SQL
echo "readonly: SELECT on ${database}"
