#!/usr/bin/env bash
# Load test of lic-server's lease renewal (heartbeat) path.
#
#   server/bench/heartbeat.sh [RENEWALS] [CONNECTIONS...]     (default: 20000 1 8 32)
#
# Makes a fresh portal (SQLite) with a floating license of 64 seats, activates a
# lic-server store offline for a pool of all 64 (lic offline-activate --pool-seats, the
# portal's apply, lic install), serves it on 127.0.0.1, and for each connection count runs
# lic-load --heartbeat against it: each connection a workstation holding a lease and
# renewing it as fast as it can (every renewal committed with synchronous=FULL before it
# is answered, and answered with a lease signed by the server's key carrying the pool
# chain). Prints one Markdown row per run. Everything stays on this machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
renewals=${1:-20000}
shift || true
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(1 8 32)

cargo build --release -q -p lic-portal --bins -p lic -p lic-server
bin=target/release
dir=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

portal=("$bin/lic-portal" --data "$dir/portal")
"${portal[@]}" init >/dev/null
"${portal[@]}" product create photo-pro --name "Photo Pro" >/dev/null
policy=$("${portal[@]}" policy create --product photo-pro --name site --seats 64 \
  --floating --lease-secs 600 | awk '{print $3}')
key=$("${portal[@]}" --format json license create --policy "$policy" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
"${portal[@]}" key export --out "$dir/trust.pem" >/dev/null
lic=("$bin/lic" --store "$dir/server" --trust "$dir/trust.pem")
"${lic[@]}" offline-activate --product photo-pro --key "$key" --pool-seats 64 \
  --out "$dir/pool.req" >/dev/null 2>&1
"${portal[@]}" apply --out-dir "$dir" "$dir/pool.req" >/dev/null 2>&1
"${lic[@]}" install "$dir"/*.lic >/dev/null 2>&1

run() {
  local connections=$1 out
  rm -f "$dir/listen"
  RUST_LOG=warn "$bin/lic-server" --store "$dir/server" --product photo-pro \
    --trust "$dir/trust.pem" --db "$dir/server-$connections.db" \
    serve --listen 127.0.0.1:0 >"$dir/listen" &
  pid=$!
  for _ in $(seq 1 100); do
    [ -s "$dir/listen" ] && break
    python3 -c 'import time; time.sleep(0.1)'
  done
  local addr
  addr=$(sed -n 's|^listening on http://||p' "$dir/listen")
  out=$("$bin/lic-load" --heartbeat --addr "$addr" --key "$key" \
    --requests "$renewals" --connections "$connections" 2>/dev/null)
  kill "$pid" && wait "$pid" 2>/dev/null || true
  pid=
  field() { awk -v k="$1" -F': *' '$1 == k {print $2}' <<<"$out"; }
  echo "| $connections | $(field throughput | awk '{print $1}') | $(field 'latency p50') | $(field 'latency p99') | $(field 'latency max') |"
}

echo "| connections | renewals/s | p50 | p99 | max |"
echo "|---|---|---|---|---|"
for c in "${counts[@]}"; do
  run "$c"
done
