#!/usr/bin/env bash
# Fuzz every target (or those named) for SECONDS each, on the stable toolchain.
#
#   fuzz/run.sh SECONDS [TARGET…]
#   FUZZ_RUNS=10000000 fuzz/run.sh 0 [TARGET…]   # a number of executions instead
#
# Seeds each target's corpus (fuzz/corpus/TARGET, kept between runs and in git) with the
# fixtures (fixtures/valid, fixtures/invalid). A crash stops the run with the input in
# fuzz/artifacts/TARGET/; keep it in fuzz/regressions/TARGET/, which every run executes
# (docs/security.md, "Fuzzing").
# FUZZ_SANITIZER=none builds without AddressSanitizer (faster, as .ci/run does); the
# default is address. FUZZ_JOBS=N runs N processes per target. Builds are optimized with
# debug assertions and overflow checks on (cargo-fuzz's default), so an overflow is a crash.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET…]}
shift || true
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}
jobs=${FUZZ_JOBS:-1}
if ! command -v cargo-fuzz >/dev/null; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
# The routes a target's first byte picks among (0: the input is the file alone).
routes_of() {
  case "$1" in
    portal_http) echo 8 ;;
    onprem) echo 5 ;;
    *) echo 0 ;;
  esac
}
cargo fuzz build -s "$sanitizer"
mkdir -p logs
# The targets' databases and stores, removed at the end (libFuzzer exits without running
# destructors): on tmpfs where there is one.
LIC_FUZZ_TMP=$(mktemp -d "$([ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/lic-fuzz.XXXXXX")
export LIC_FUZZ_TMP
trap 'rm -rf "$LIC_FUZZ_TMP"' EXIT
for t in "${targets[@]}"; do
  corpus="corpus/$t"
  mkdir -p "$corpus"
  # The fixtures as seeds (content-named, so copying again adds nothing new). The
  # targets whose first byte picks a route get each fixture behind every route's byte.
  routes=$(routes_of "$t")
  for f in ../fixtures/valid/* ../fixtures/invalid/*; do
    [ -f "$f" ] || continue
    if [ "$routes" -eq 0 ]; then
      cp -n "$f" "$corpus/seed-$(sha1sum "$f" | cut -c1-16)" 2>/dev/null || true
    else
      for ((r = 0; r < routes; r++)); do
        seed="$corpus/seed-$r-$(sha1sum "$f" | cut -c1-16)"
        [ -e "$seed" ] || { printf "\\x$(printf %02x "$r")"; cat "$f"; } >"$seed"
      done
    fi
  done
  echo "== $t: $([ -n "${FUZZ_RUNS:-}" ] && echo "$FUZZ_RUNS runs" || echo "${seconds}s")"
  log="logs/$t.log"
  extra=()
  [ "$jobs" -gt 1 ] && extra=(-jobs="$jobs" -workers="$jobs")
  budget=(-max_total_time="$seconds")
  [ -n "${FUZZ_RUNS:-}" ] && budget=(-runs="$FUZZ_RUNS")
  # Inputs that once crashed, kept as regression cases: run first, with the corpus.
  regressions=()
  [ -d "regressions/$t" ] && regressions=("regressions/$t")
  if ! cargo fuzz run -s "$sanitizer" "$t" "$corpus" "${regressions[@]}" -- \
      "${budget[@]}" -print_final_stats=1 -max_len=65536 "${extra[@]}" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $t failed: the input is in fuzz/artifacts/$t/ (log: fuzz/$log)" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "$log" | sed "s/^/  /"
  echo "  corpus: $(ls "$corpus" | wc -l) inputs"
done
