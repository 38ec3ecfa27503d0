#!/usr/bin/env bash
# BGP benchmark: anypop vs GoBGP feeding the same N prefixes to FRR, anypop's
# RSS, and its state-change -> UPDATE delay. Not a test: prints numbers.
#
#   sudo integration/bench/bgp.sh                       # N = 10000,100000; 100 delay samples
#   sudo integration/bench/bgp.sh --sizes 50000 --samples 200
#   sudo integration/bench/bgp.sh --skip gobgp --skip delay
#
# Needs root and the Debian packages frr, gobgpd, tcpdump, iproute2.
# Builds anypop and the bench in release mode first.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" != 0 ]; then
  echo "bgp.sh: run as root (network namespaces)" >&2
  exit 2
fi
for p in /usr/lib/frr/bgpd vtysh gobgpd gobgp tcpdump ip; do
  if ! command -v "$p" >/dev/null && [ ! -x "$p" ]; then
    echo "bgp.sh: $p not found (apt-get install frr gobgpd tcpdump iproute2)" >&2
    exit 2
  fi
done

cargo build --release --bin anypop -p anypop
cargo build --release --bin bench_bgp -p anypop-integration

export ANYPOP_BIN="$PWD/target/release/anypop"
./target/release/bench_bgp "$@" &
pid=$!
cleanup() {
  # A bench killed by a signal cannot run its own cleanup: remove what it
  # created (namespaces ap<pid>x*, their processes, its lab directories).
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for ns in $(ip netns list | awk '{print $1}' | grep "^ap${pid}x" || true); do
    for p in $(ip netns pids "$ns"); do kill "$p" 2>/dev/null || true; done
  done
  sleep 1
  for ns in $(ip netns list | awk '{print $1}' | grep "^ap${pid}x" || true); do
    ip netns del "$ns" || true
  done
  rm -rf /tmp/anypop-lab-ap"${pid}"x*
}
trap 'cleanup; exit 130' INT TERM
wait "$pid"
