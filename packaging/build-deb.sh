#!/usr/bin/env bash
# Builds the Debian package: target/debian/anypop_<version>-1_<arch>.deb
# (and anypop-dbgsym_<version>-1_<arch>.ddeb with the debug symbols).
#
#   packaging/build-deb.sh [--binary PATH] [cargo deb options...]
#
# Needs cargo-deb (`cargo install cargo-deb --version 3.8.0 --locked`).
# Builds anypop in release mode (or, with --binary, packs that already
# built binary instead: the tests pack the debug binary they run, release
# packages are always built without it), writes the man pages and shell
# completions it generates from its own command-line definition into
# target/packaging/, then packs the files listed in Cargo.toml's
# [package.metadata.deb]. Prints the paths of the packages.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "cargo-deb not found: cargo install cargo-deb --version 3.8.0 --locked" >&2
  exit 1
fi

out=target/packaging
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"

if [ "${1:-}" = --binary ]; then
  bin="$(realpath "${2:?--binary needs a path}")"
  shift 2
  # cargo-deb takes the binary from <target dir>/release/anypop (the asset
  # in Cargo.toml): a target dir of its own keeps target/release untouched.
  staging="$PWD/$out/target"
  mkdir -p "$staging/release"
  cp "$bin" "$staging/release/anypop"
  export CARGO_TARGET_DIR="$staging"
  set -- --output "$PWD/target/debian/" "$@"
else
  cargo build --release --locked -p anypop --bin anypop
  bin="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/anypop"
fi

"$bin" man-pages "$out/man" >/dev/null
"$bin" completions bash >"$out/completions/anypop.bash"
"$bin" completions zsh >"$out/completions/_anypop"
"$bin" completions fish >"$out/completions/anypop.fish"

# The binary is stripped; its debug symbols go to anypop-dbgsym_*.ddeb.
cargo deb --no-build --locked -p anypop --dbgsym --compress-debug-symbols=zlib "$@"
