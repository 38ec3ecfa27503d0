# Shared by the benchmark scripts (sourced, not run).

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
