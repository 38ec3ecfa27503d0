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

# shellcheck source=lib.sh
. integration/bench/lib.sh
bench_require bgp.sh "frr gobgpd tcpdump iproute2" \
  /usr/lib/frr/bgpd vtysh gobgpd gobgp tcpdump ip
bench_build bench_bgp
# Namespaces ap<pid>x*, lab directories /tmp/anypop-lab-ap<pid>x*.
run_bench ap /tmp/anypop-lab-ap ./target/release/bench_bgp "$@"
