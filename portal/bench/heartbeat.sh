#!/usr/bin/env bash
# Load test of the floating lease renewal (heartbeat) path, both backends side by side.
#
#   portal/bench/heartbeat.sh [RENEWALS] [CONNECTIONS...]     (default: 30000 1 8 32)
#
# For each connection count and backend: a fresh portal (SQLite file in a temporary
# directory, or a fresh database in the local PostgreSQL at 127.0.0.1:5432), a floating
# license with 64 seats, served on 127.0.0.1 without upload rate limit; lic-load
# --heartbeat makes each connection a client holding a lease and renewing it as fast as it
# can (durable: every renewal is committed before it is answered). ROUNDS times (default
# 1), interleaved. Prints one Markdown row per run. Everything stays on this machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
renewals=${1:-30000}
shift || true
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(1 8 32)
rounds=${ROUNDS:-1}
port=18478

cargo build --release -q -p lic-portal --bins
bin=target/release

run() {
  local backend=$1 connections=$2
  local dir pid= pgdb=
  dir=$(mktemp -d)
  cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "$pgdb" ] && psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $pgdb" >/dev/null 2>&1
    rm -rf "$dir"
  }
  trap cleanup RETURN
  local portal=("$bin/lic-portal" --data "$dir")
  if [ "$backend" = postgres ]; then
    pgdb="lic_heartbeat_$$"
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $pgdb" >/dev/null
    portal+=(--database "postgres://postgres@127.0.0.1:5432/$pgdb")
  fi
  "${portal[@]}" init >/dev/null
  "${portal[@]}" product create photo-pro --name "Photo Pro" >/dev/null
  local policy key
  policy=$("${portal[@]}" policy create --product photo-pro --name heartbeat --seats 64 \
    --floating --lease-secs 600 | awk '{print $3}')
  key=$("${portal[@]}" --format json license create --policy "$policy" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  LIC_LOG=warn "${portal[@]}" serve --listen 127.0.0.1:$port --uploads-per-minute 0 >/dev/null &
  pid=$!
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then break; fi
    python3 -c 'import time; time.sleep(0.1)'
  done
  local out
  out=$("$bin/lic-load" --heartbeat --addr 127.0.0.1:$port --key "$key" \
    --requests "$renewals" --connections "$connections" 2>/dev/null)
  field() { awk -v k="$1" -F': *' '$1 == k {print $2}' <<<"$out"; }
  echo "| $connections | $backend | $(field throughput | awk '{print $1}') | $(field 'latency p50') | $(field 'latency p99') | $(field 'latency max') |"
}

echo "| connections | backend | renewals/s | p50 | p99 | max |"
echo "|---|---|---|---|---|---|"
for c in "${counts[@]}"; do
  for _ in $(seq 1 "$rounds"); do
    for backend in sqlite postgres; do
      run "$backend" "$c"
    done
  done
done
