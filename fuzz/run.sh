#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) with cargo fuzz (libFuzzer) and
# prints a table of executions and crashes per target. Exits non-zero if any
# target crashed (a panic, a failed invariant, a timeout or running out of
# memory); the input that did it is in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh                   1,000,000 executions per target
#   fuzz/run.sh --runs 50000      another count
#   fuzz/run.sh --short [SECS]    SECS seconds per target (default 5), for CI
#   fuzz/run.sh dns config        only these targets
#
# Needs cargo-fuzz on PATH (integration/run-tests.sh installs a pinned one
# into target/tools). Builds with the stable toolchain, no sanitizer (the
# code is safe Rust; panics, overflow checks and debug assertions are what
# the targets catch), in release mode with debug assertions on. Each target
# starts from its committed seeds (fuzz/seeds/<target>/, see
# make-seeds.py) and its local corpus (fuzz/corpus/<target>/, kept between
# runs, not committed).
set -euo pipefail
cd "$(dirname "$0")"

RUNS=1000000
SECS=""
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --short)
      SECS=5
      if [ $# -gt 1 ] && [[ "$2" =~ ^[0-9]+$ ]]; then SECS="$2"; shift; fi
      shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done

if ! command -v cargo-fuzz >/dev/null; then
  echo "cargo-fuzz not found: cargo install cargo-fuzz --locked (see docs/development.md)" >&2
  exit 2
fi
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(cargo fuzz list)
fi

FUZZ=(-s none)
echo "==> building the fuzz targets"
cargo fuzz build "${FUZZ[@]}"

if [ -n "$SECS" ]; then
  LIMIT=(-max_total_time="$SECS")
  WHAT="$SECS s per target"
else
  LIMIT=(-runs="$RUNS")
  WHAT="$RUNS executions per target"
fi

mkdir -p logs
declare -A EXECS CRASHES TIME RATE
failed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  before=$(find "artifacts/$t" -type f | wc -l)
  log="logs/$t${SECS:+-short}.log"
  echo "==> $t: $WHAT (log: fuzz/$log)"
  start=$(date +%s)
  status=0
  cargo fuzz run "${FUZZ[@]}" "$t" "corpus/$t" "${seeds[@]}" -- \
    "${LIMIT[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  end=$(date +%s)
  after=$(find "artifacts/$t" -type f | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  EXECS[$t]=${execs:-?}
  RATE[$t]=${rate:-?}
  TIME[$t]=$((end - start))
  CRASHES[$t]=$((after - before))
  if [ "$status" != 0 ] && [ "${CRASHES[$t]}" = 0 ]; then
    # Failed without leaving an input behind (a build or setup error).
    CRASHES[$t]="error"
  fi
  if [ "${CRASHES[$t]}" != 0 ]; then
    failed=1
    echo "!!! $t failed (exit $status); last lines of fuzz/$log:" >&2
    tail -n 30 "$log" >&2
    for a in $(ls -t "artifacts/$t" | head -n "${CRASHES[$t]/error/0}"); do
      echo "!!! input: fuzz/artifacts/$t/$a; replay: (cd fuzz && cargo fuzz run ${FUZZ[*]} $t artifacts/$t/$a)" >&2
    done
  fi
done

echo
echo "fuzz run: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -m), $WHAT"
printf '| %-12s | %12s | %7s | %8s | %7s |\n' target execs crashes "exec/s" "time s"
printf '|%s|%s|%s|%s|%s|\n' -------------- -------------- --------- ---------- ---------
for t in "${TARGETS[@]}"; do
  printf '| %-12s | %12s | %7s | %8s | %7s |\n' "$t" "${EXECS[$t]}" "${CRASHES[$t]}" "${RATE[$t]}" "${TIME[$t]}"
done
exit $failed
