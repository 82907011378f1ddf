#!/usr/bin/env bash
# Stand-ins for the official images the stack uses (python:3.11-slim, nginx, redis, mariadb), built
# from Debian's packages, for machines that cannot reach Docker Hub: a Debian root file system made
# by debootstrap and imported as a base image, then one small image per service that accepts the
# same environment variables, commands and configuration paths as the official one. Each image is
# built only when missing; `FORCE=1` rebuilds them.
#
#   deploy/local-images/build.sh            # what `make docker-up LOCAL_IMAGES=1` runs
set -euo pipefail

DOCKER=${DOCKER:-docker}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=ticketera-local/debian:$SUITE
here=$(cd "$(dirname "$0")" && pwd)

missing() { [ "${FORCE:-0}" = 1 ] || ! $DOCKER image inspect "$1" >/dev/null 2>&1; }

if missing "$BASE"; then
  command -v debootstrap >/dev/null || { echo "debootstrap is needed (apt-get install debootstrap)" >&2; exit 1; }
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  echo "local-images: debootstrap $SUITE into $rootfs"
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$MIRROR" >/dev/null
  cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | $DOCKER import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  echo "local-images: $BASE imported"
fi

for service in python nginx redis mariadb; do
  image=ticketera-local/$service:latest
  if missing "$image"; then
    echo "local-images: building $image"
    $DOCKER build --quiet --build-arg "BASE=$BASE" -t "$image" -f "$here/$service.Dockerfile" "$here" >/dev/null
  fi
done
echo "local-images: ready (ticketera-local/{python,nginx,redis,mariadb}:latest)"
