#!/usr/bin/env bash
# Convergence benchmark with traffic: anypop against ExaBGP's healthcheck
# on a two-PoP topology behind a transit FRR router (see convergence.py).
# Not a test: prints a table, asserts nothing.
#
#   sudo integration/bench/convergence.sh                  # 10 repetitions, every kind
#   sudo integration/bench/convergence.sh --reps 3 --kinds process,link
#   sudo integration/bench/convergence.sh --no-exabgp      # anypop only
#
# Needs root and the Debian packages frr, iproute2, curl, python3-venv.
# Builds anypop in release mode (ANYPOP_BIN=path skips that) and installs
# ExaBGP 4.2 from PyPI into target/exabgp-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=lib.sh
. integration/bench/lib.sh
bench_require convergence.sh "frr iproute2 curl python3-venv" \
  /usr/lib/frr/zebra /usr/lib/frr/bgpd /usr/lib/frr/bfdd vtysh ip curl python3

exabgp=(--exabgp-python "$PWD/target/exabgp-venv/bin/python")
args=()
for a in "$@"; do
  if [ "$a" = --no-exabgp ]; then exabgp=(); else args+=("$a"); fi
done
if [ ${#exabgp[@]} -gt 0 ] && ! target/exabgp-venv/bin/python -m exabgp --version >/dev/null 2>&1; then
  /usr/bin/python3 -m venv target/exabgp-venv
  target/exabgp-venv/bin/pip install --quiet 'exabgp>=4.2,<4.3'
fi

if [ -z "${ANYPOP_BIN:-}" ]; then
  cargo build --release --bin anypop -p anypop
  ANYPOP_BIN="$PWD/target/release/anypop"
fi

# Namespaces cv<pid>x*, lab directory /tmp/anypop-convergence-cv<pid>x-*.
run_bench cv /tmp/anypop-convergence-cv \
  python3 integration/bench/convergence.py --anypop "$ANYPOP_BIN" "${exabgp[@]}" "${args[@]}"
