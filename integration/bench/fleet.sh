#!/usr/bin/env bash
# Fleet benchmark: how fast a drain sent to node a, and a service failure on
# PoP c, reach every node's DNS in topologies/three-pop, with the fleet's
# long-poll and with plain polling. Not a test: prints numbers.
#
#   sudo integration/bench/fleet.sh                # 10 repetitions per change and mode
#   sudo integration/bench/fleet.sh --reps 30 --skip poll
#
# Needs root and the Debian packages frr, busybox, nftables, dnsutils,
# iproute2. Builds anypop and the bench in release mode first.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" != 0 ]; then
  echo "fleet.sh: run as root (network namespaces)" >&2
  exit 2
fi
for p in /usr/lib/frr/bgpd vtysh busybox ip; do
  if ! command -v "$p" >/dev/null && [ ! -x "$p" ]; then
    echo "fleet.sh: $p not found (apt-get install frr busybox iproute2)" >&2
    exit 2
  fi
done

cargo build --release --bin anypop -p anypop
cargo build --release --bin bench_fleet -p anypop-integration

export ANYPOP_BIN="$PWD/target/release/anypop"
# shellcheck source=lib.sh
. integration/bench/lib.sh
# Namespaces ap<pid>x*, lab directories /tmp/anypop-lab-ap<pid>x*.
run_bench ap /tmp/anypop-lab-ap ./target/release/bench_fleet "$@"
