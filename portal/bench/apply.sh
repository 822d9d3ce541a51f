#!/usr/bin/env bash
# Bulk apply of a folder of activation requests, on a fresh portal.
#
#   portal/bench/apply.sh [sqlite|postgres] [FILES]
#
# Builds the release binaries, creates a portal (SQLite file in a temporary directory, or
# a fresh database in the local PostgreSQL at 127.0.0.1:5432) with a license of enough
# seats, writes FILES activation requests (each from its own device key) with
# `lic-load --write-to`, and times `lic-portal apply --out-dir` on all of them.
set -euo pipefail
cd "$(dirname "$0")/../.."
backend=${1:-sqlite}
files=${2:-5000}

cargo build --release -q -p lic-portal --bins
bin=target/release
dir=$(mktemp -d)
pgdb=
cleanup() {
  [ -n "$pgdb" ] && psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $pgdb" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT

portal=("$bin/lic-portal" --data "$dir/portal")
if [ "$backend" = postgres ]; then
  pgdb="lic_apply_$$"
  psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $pgdb" >/dev/null
  portal+=(--database "postgres://postgres@127.0.0.1:5432/$pgdb")
fi
"${portal[@]}" init >/dev/null
"${portal[@]}" product create photo-pro --name "Photo Pro" >/dev/null
policy=$("${portal[@]}" --format json policy create --product photo-pro --name bulk --seats $((files + 100)) \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["policy"]["id"])')
key=$("${portal[@]}" --format json license create --policy "$policy" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
"$bin/lic-load" --key "$key" --requests "$files" --write-to "$dir/in"

echo "backend: $backend, $files files"
start=$(date +%s.%N)
"${portal[@]}" --format json apply --out-dir "$dir/out" "$dir"/in/*.req >"$dir/result.json"
end=$(date +%s.%N)
python3 - "$dir/result.json" "$start" "$end" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
secs = float(sys.argv[3]) - float(sys.argv[2])
print(f"applied:        {doc['applied']} (refused {doc['refused']}, not written {doc['not_written']})")
print(f"elapsed:        {secs:.2f} s (the whole command: start, {doc['applied']} files, exit)")
print(f"throughput:     {doc['applied'] / secs:.0f} files/s")
PY
