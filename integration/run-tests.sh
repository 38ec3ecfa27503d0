#!/usr/bin/env bash
# Runs every anypop test: formatting, lints, unit, property and integration
# tests (the latter against real FRR, BIRD, GoBGP, dig and dnsperf in
# network namespaces and on loopback).
#
# On a fresh Debian 12 machine, as root, it first installs the system
# packages the tests need. Set ANYPOP_SKIP_INSTALL=1 to skip that step.
# Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  frr bird2 gobgpd        # real routers for the BGP interop tests
  dnsutils dnsperf knot   # dig, dnsperf and a reference DNS server
  iproute2 tcpdump procps # namespaces, captures, process tools
  dbus-daemon dbus-user-session # with systemd (below): a real systemd for the systemd checks
  busybox nftables        # three-pop lab: PoP HTTP service, firewall rules
  ca-certificates openssl stunnel4 # fleet: https peers behind a real TLS terminator
  chromium chromium-driver # the web view, driven headless through WebDriver
  prometheus              # promtool: alerting rules checked and unit-tested
  systemd man-db          # systemd-analyze verify of the unit (and its man page)
  lintian                 # the Debian package is checked by lintian
  g++                     # cargo fuzz builds libFuzzer (C++)
)

# cargo-deb builds the Debian package in the packaging test, cargo-fuzz runs
# the fuzz targets (fuzz/run.sh); pinned, and installed into target/tools so
# nothing outside the tree changes.
CARGO_DEB_VERSION=3.8.0
CARGO_FUZZ_VERSION=0.13.2

if [ "${ANYPOP_SKIP_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing test dependencies: ${PACKAGES[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
fi

# As root the lab tests (network namespaces, real FRR/BIRD/GoBGP) must run:
# a missing daemon or privilege fails them instead of skipping them.
if [ "$(id -u)" = 0 ]; then
  export ANYPOP_LAB_REQUIRED=1
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain (rustup) first" >&2
  exit 1
fi

TOOLS="$PWD/target/tools"
if [ "$("$TOOLS/bin/cargo-deb" --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "==> installing cargo-deb $CARGO_DEB_VERSION into $TOOLS"
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --root "$TOOLS"
fi
if [ "$("$TOOLS/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$TOOLS"
fi
export PATH="$TOOLS/bin:$PATH"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> cargo test"
# The process tests run the anypop binary: build it first, with the very
# command the harness runs (anypop_bin), so the harness finds it fresh
# and nothing is rebuilt while tests run. The package test packs this
# same binary (no release build in the tests).
cargo build -p anypop --bin anypop
cargo test --workspace --no-fail-fast

echo "==> fuzz targets (short run)"
# A few seconds per target from the committed seeds, so a regression that
# any of them finds quickly fails here; fuzz/run.sh without --short is the
# full run (docs/development.md).
fuzz/run.sh --short "${ANYPOP_FUZZ_SECONDS:-5}"

echo "==> all tests passed"
