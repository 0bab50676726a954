#!/usr/bin/env bash
# `just package`: the five functions, built once against an old glibc, packaged
#   target/package/fgs/<function>.zip   FunctionGraph custom runtime: `bootstrap` + the
#                                       binary + `pgsurge.toml` at the zip's root
#   target/package/http/                the same binaries for HTTP hosting (systemd units,
#                                       a TLS front for HAProxy)
# See infra/package/README.md. Env: PGSURGE_PACKAGE_CONFIG = the config to ship (default
# infra/package/pgsurge.toml).
set -euo pipefail
cd "$(dirname "$0")/../.."
FUNCTIONS=(scale-up scale-down instance-ready instance-deleted reconcile)
# The oldest glibc the binaries may need (tests/tests/package.rs checks every symbol).
GLIBC_FLOOR=2.17
TARGET=x86_64-unknown-linux-gnu
config=${PGSURGE_PACKAGE_CONFIG:-infra/package/pgsurge.toml}
[ -f "$config" ] || { echo "package: config $config not found" >&2; exit 1; }

zig_path=$(bash infra/package/tools.sh)
export PATH="$zig_path:$PATH"

# One cargo invocation for all five: the dependencies are built once. Only the function
# packages are selected, so the tests crate's `failpoints` feature is not unified in.
pkgs=(); for f in "${FUNCTIONS[@]}"; do pkgs+=(-p "$f"); done
start=$(date +%s)
cargo zigbuild --release --locked --target "$TARGET.$GLIBC_FLOOR" "${pkgs[@]}"
echo "package: release build (zig, glibc $GLIBC_FLOOR) took $(( $(date +%s) - start )) s" >&2
bin=target/$TARGET/release

# Assemble beside the result and swap it in at the end: an interrupted run leaves the
# previous package (or none), never a half-written one.
out=target/package
tmp=$out.tmp
rm -rf "$tmp"; mkdir -p "$tmp/fgs" "$tmp/http/bin" "$tmp/http/systemd"
port=8001
for f in "${FUNCTIONS[@]}"; do
  d=$tmp/fgs/$f.d; mkdir -p "$d"
  install -m 0755 "$bin/$f" "$d/$f"
  sed "s/@FUNCTION@/$f/g" infra/package/bootstrap.in > "$d/bootstrap"; chmod 0755 "$d/bootstrap"
  install -m 0644 "$config" "$d/pgsurge.toml"
  # -X: no extra attributes; fixed file order and times: the same inputs, the same zip.
  touch -d @0 "$d"/*; (cd "$d" && zip -q -X -D "../$f.zip" bootstrap "$f" pgsurge.toml)
  rm -rf "$d"
  install -m 0755 "$bin/$f" "$tmp/http/bin/$f"
  sed "s/@FUNCTION@/$f/g; s/@PORT@/$port/g" infra/package/pgsurge-function.service.in \
    > "$tmp/http/systemd/pgsurge-$f.service"
  port=$((port + 1))
done
install -m 0644 infra/package/haproxy-tls.cfg "$tmp/http/haproxy-tls.cfg"
install -m 0644 "$config" "$tmp/http/pgsurge.toml"
rm -rf "$out"; mv "$tmp" "$out"

echo "package: $out (glibc >= $GLIBC_FLOOR)"
for f in "${FUNCTIONS[@]}"; do
  printf '  %-40s %8s bytes (binary %s bytes)\n' "fgs/$f.zip" "$(stat -c %s "$out/fgs/$f.zip")" \
    "$(stat -c %s "$out/http/bin/$f")"
done
