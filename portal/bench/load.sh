#!/usr/bin/env bash
# Load test of the portal's HTTP activation path, on a fresh portal.
#
#   portal/bench/load.sh [sqlite|postgres] [REQUESTS] [CONNECTIONS]
#
# Builds the release binaries, creates a portal (SQLite file in a temporary directory,
# or a fresh database in the local PostgreSQL at 127.0.0.1:5432), a license with enough
# seats, serves it on 127.0.0.1 without upload rate limit, and runs lic-load against it.
# Everything stays on this machine; the run is bounded by REQUESTS.
set -euo pipefail
cd "$(dirname "$0")/../.."
backend=${1:-sqlite}
requests=${2:-20000}
connections=${3:-32}
port=18477

cargo build --release -q -p lic-portal --bins
bin=target/release
dir=$(mktemp -d)
pid=
pgdb=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ -n "$pgdb" ] && psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $pgdb" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT

portal=("$bin/lic-portal" --data "$dir")
if [ "$backend" = postgres ]; then
  pgdb="lic_load_$$"
  psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $pgdb" >/dev/null
  portal+=(--database "postgres://postgres@127.0.0.1:5432/$pgdb")
fi

"${portal[@]}" init >/dev/null
"${portal[@]}" product create photo-pro --name "Photo Pro" >/dev/null
policy=$("${portal[@]}" policy create --product photo-pro --name load --seats $((requests + 100)) \
  --feature export-pdf | awk '{print $3}')
key=$("${portal[@]}" --format json license create --policy "$policy" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

LIC_LOG=warn "${portal[@]}" serve --listen 127.0.0.1:$port --uploads-per-minute 0 &
pid=$!
for _ in $(seq 1 100); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then break; fi
  python3 -c 'import time; time.sleep(0.1)'
done

echo "backend: $backend, $requests requests, $connections connections"
"$bin/lic-load" --addr 127.0.0.1:$port --key "$key" --requests "$requests" --connections "$connections"
