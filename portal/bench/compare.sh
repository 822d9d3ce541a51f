#!/usr/bin/env bash
# Both backends side by side, in one run, at several connection counts: the table of
# docs/performance.md ("Portal activations").
#
#   portal/bench/compare.sh [REQUESTS] [CONNECTIONS...]     (default: 10000 1 8 32 128)
#
# For each connection count it runs load.sh on SQLite and then on PostgreSQL (fresh
# portal each time), ROUNDS times (default 2), interleaved so that both see the same
# machine, and prints one Markdown row per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
requests=${1:-10000}
shift || true
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(1 8 32 128)
rounds=${ROUNDS:-2}

cargo build --release -q -p lic-portal --bins
echo "| connections | backend | activations/s | p50 | p99 | max |"
echo "|---|---|---|---|---|---|"
for c in "${counts[@]}"; do
  for _ in $(seq 1 "$rounds"); do
    for backend in sqlite postgres; do
      out=$(portal/bench/load.sh "$backend" "$requests" "$c")
      field() { awk -v k="$1" -F': *' '$1 == k {print $2}' <<<"$out"; }
      echo "| $c | $backend | $(field throughput | awk '{print $1}') | $(field 'latency p50') | $(field 'latency p99') | $(field 'latency max') |"
    done
  done
done
