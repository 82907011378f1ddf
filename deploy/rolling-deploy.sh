#!/usr/bin/env bash
# `make deploy`: a new version of the app without stopping sales. Build the image, migrate once, start
# as many new replicas beside the running ones, let nginx send to all of them, then retire the old
# ones one at a time (nginx retries a refused or dropped idempotent request on the next replica, and
# a replica stopped with SIGTERM finishes the requests it has), and let nginx forget them.
#
# COMPOSE: the compose command with its files (default: docker-compose with the scale file).
set -euo pipefail
COMPOSE=${COMPOSE:-docker-compose -f docker-compose.yml -f docker-compose.scale.yml}
DOCKER=${DOCKER:-docker}

$COMPOSE build app
$COMPOSE run --rm --no-deps app migrate

old=$($COMPOSE ps -q app)
count=$(echo "$old" | grep -c . || true)
if [ "$count" -eq 0 ]; then
  echo "deploy: no app replica is running; use make docker-up (or docker-scale) first" >&2
  exit 1
fi
echo "deploy: $count replicas running; starting $count new ones beside them"
$COMPOSE up -d --no-deps --no-recreate --scale app=$((count * 2)) app

new=$($COMPOSE ps -q app | grep -vxF "$old")
for container in $new; do
  for _ in $(seq 120); do
    state=$($DOCKER inspect -f '{{.State.Health.Status}}' "$container")
    [ "$state" = healthy ] && break
    sleep 1
  done
  if [ "$state" != healthy ]; then
    echo "deploy: new replica $container is $state; the old ones keep serving, retiring it" >&2
    $DOCKER rm -f $new >/dev/null
    exit 1
  fi
done
# nginx resolves `app` when it loads its configuration: now every replica, old and new.
$COMPOSE exec -T nginx nginx -s reload
sleep 2
for container in $old; do
  echo "deploy: retiring $(${DOCKER} inspect -f '{{.Name}}' "$container")"
  # SIGTERM: the replica refuses new connections (nginx sends those to another at once) and finishes
  # the requests it has. Once it is gone, nginx forgets its address at once: a connection to an
  # address nobody holds would wait out the connect timeout before nginx tried the next replica.
  $DOCKER stop -t 40 "$container" >/dev/null  # the stack's stop_grace_period
  $DOCKER rm "$container" >/dev/null
  $COMPOSE exec -T nginx nginx -s reload
  sleep 1
done
# The worker serves no request: it is simply recreated on the new image (on SIGTERM it ends the item
# each step has under way; what is left is due again, and leased work is taken up once its lease ends).
$COMPOSE up -d --no-deps worker
echo "deploy: done, $count new replicas serving"
