#!/usr/bin/env bash
# Fuzz every target (or those named) for SECONDS each, on the stable toolchain.
#
#   fuzz/run.sh SECONDS [TARGET…]
#
# Seeds each target's corpus (fuzz/corpus/TARGET, kept between runs and in git) with the
# fixtures (fixtures/valid, fixtures/invalid). A crash stops the run with the input in
# fuzz/artifacts/TARGET/; keep it as a regression case (docs/security.md, "Fuzzing").
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
cargo fuzz build -s "$sanitizer"
mkdir -p logs
for t in "${targets[@]}"; do
  corpus="corpus/$t"
  mkdir -p "$corpus"
  # The fixtures as seeds (content-named, so copying again adds nothing new).
  for f in ../fixtures/valid/* ../fixtures/invalid/*; do
    [ -f "$f" ] || continue
    cp -n "$f" "$corpus/seed-$(sha1sum "$f" | cut -c1-16)" 2>/dev/null || true
  done
  echo "== $t: ${seconds}s"
  log="logs/$t.log"
  extra=()
  [ "$jobs" -gt 1 ] && extra=(-jobs="$jobs" -workers="$jobs")
  if ! cargo fuzz run -s "$sanitizer" "$t" "$corpus" -- \
      -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 "${extra[@]}" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $t failed: the input is in fuzz/artifacts/$t/ (log: fuzz/$log)" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "$log" | sed "s/^/  /"
  echo "  corpus: $(ls "$corpus" | wc -l) inputs"
done
rm -rf /dev/shm/lic-fuzz-store-* 2>/dev/null || true
