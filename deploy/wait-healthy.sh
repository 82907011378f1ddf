#!/usr/bin/env bash
# Wait until URL answers 200 (the stack's /health through nginx), at most SECONDS; say how long it took.
set -euo pipefail
url=$1 limit=${2:-180}
started=$(date +%s)
until curl -fsS -o /dev/null "$url" 2>/dev/null; do
  if (( $(date +%s) - started >= limit )); then
    echo "stack: $url did not answer 200 within ${limit}s; see make docker-logs" >&2
    exit 1
  fi
  sleep 1
done
echo "stack: healthy after $(( $(date +%s) - started ))s ($url)"
