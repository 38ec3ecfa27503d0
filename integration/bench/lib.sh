# Shared by the benchmark scripts (sourced, not run, from the repository's
# root).

# bench_require SCRIPT PACKAGES PROGRAM...: exits with 2 unless run as root
# with every PROGRAM on PATH (or an executable path); PACKAGES names the
# Debian packages to install for them.
bench_require() {
  local script=$1 packages=$2 p
  shift 2
  if [ "$(id -u)" != 0 ]; then
    echo "$script: run as root (network namespaces)" >&2
    exit 2
  fi
  for p in "$@"; do
    if ! command -v "$p" >/dev/null && [ ! -x "$p" ]; then
      echo "$script: $p not found (apt-get install $packages)" >&2
      exit 2
    fi
  done
}

# bench_build BENCH_BIN: builds anypop and the bench program BENCH_BIN
# (package anypop-integration) in release mode, like every benchmark, and
# exports ANYPOP_BIN for the bench's lab. One cargo call: built apart, the
# two packages' dependency features differ and anypop is compiled twice.
bench_build() {
  cargo build --release -p anypop --bin anypop -p anypop-integration --bin "$1"
  export ANYPOP_BIN="$PWD/target/release/anypop"
}

# run_bench NS_PREFIX DIR_PREFIX CMD...: runs CMD in the background and
# waits for it. A bench names what it creates after its pid: namespaces
# NS_PREFIX<pid>x*, directories DIR_PREFIX<pid>x*. One killed by a signal
# cannot run its own cleanup, so on INT/TERM this removes them (and the
# namespaces' processes).
run_bench() {
  local ns_prefix=$1 dir_prefix=$2
  shift 2
  "$@" &
  bench_pid=$!
  bench_ns="${ns_prefix}${bench_pid}x"
  bench_dirs="${dir_prefix}${bench_pid}x"
  trap 'bench_cleanup; exit 130' INT TERM
  wait "$bench_pid"
}

bench_cleanup() {
  kill "$bench_pid" 2>/dev/null || true
  wait "$bench_pid" 2>/dev/null || true
  for ns in $(ip netns list | awk '{print $1}' | grep "^${bench_ns}" || true); do
    for p in $(ip netns pids "$ns"); do kill "$p" 2>/dev/null || true; done
  done
  sleep 1
  for ns in $(ip netns list | awk '{print $1}' | grep "^${bench_ns}" || true); do
    ip netns del "$ns" || true
  done
  # shellcheck disable=SC2086 # the glob is meant to expand
  rm -rf ${bench_dirs}*
}
