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
# shellcheck source=lib.sh
. integration/bench/lib.sh
# Namespaces ap<pid>x*, lab directories /tmp/anypop-lab-ap<pid>x*.
run_bench ap /tmp/anypop-lab-ap ./target/release/bench_bgp "$@"
