#!/usr/bin/env bash
# Fleet benchmark: how fast a drain sent to node a, and a service failure on
# PoP c, reach every node's DNS in topologies/three-pop, with the fleet's
# long-poll and with plain polling, and the failure again with fast-failover
# HTTP checks (mode fast). Not a test: prints numbers.
#
#   sudo integration/bench/fleet.sh                # 10 repetitions per change and mode
#   sudo integration/bench/fleet.sh --reps 30 --skip poll
#   sudo integration/bench/fleet.sh --skip stream --skip poll --fast-check 50
#
# Needs root and the Debian packages frr, busybox, nftables, dnsutils,
# iproute2. Builds anypop and the bench in release mode first.
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=lib.sh
. integration/bench/lib.sh
bench_require fleet.sh "frr busybox nftables dnsutils iproute2" \
  /usr/lib/frr/zebra /usr/lib/frr/bgpd vtysh busybox dig nft ss ip
bench_build bench_fleet
# Namespaces ap<pid>x*, lab directories /tmp/anypop-lab-ap<pid>x*.
run_bench ap /tmp/anypop-lab-ap ./target/release/bench_fleet "$@"
