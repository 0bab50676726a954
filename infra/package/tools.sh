#!/usr/bin/env bash
# Install the cross-build tools `just package` needs, once (cached, idempotent, safe to
# interrupt: a venv without its `.complete` marker is made again):
#   cargo-zigbuild  from crates.io (`cargo install --locked`, into ~/.cargo/bin)
#   zig             from PyPI (`ziglang`, in a venv under $PGSURGE_TOOLS_DIR)
# Prints the directory to put first on PATH (it holds `zig`).
set -euo pipefail
ZIGBUILD_VERSION=0.24.1
ZIGLANG_VERSION=0.17.1
tools=${PGSURGE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pgsurge/tools}
venv=$tools/ziglang-$ZIGLANG_VERSION
mkdir -p "$tools"
if ! cargo-zigbuild --version 2>/dev/null | grep -qw "$ZIGBUILD_VERSION"; then
  echo "installing cargo-zigbuild $ZIGBUILD_VERSION (crates.io)" >&2
  # its own target dir: a build in /tmp may be swept away by a tmp cleaner mid-way
  CARGO_TARGET_DIR="$tools/cargo-install-target" nice -n 10 cargo install --locked --quiet --version "$ZIGBUILD_VERSION" cargo-zigbuild >&2
fi
if [ ! -f "$venv/.complete" ]; then
  echo "installing ziglang $ZIGLANG_VERSION (PyPI) into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "ziglang==$ZIGLANG_VERSION" >&2
  # cargo-zigbuild runs `zig` from PATH; the wheel ships the binary inside the package.
  # (some wheels also install a `zig` script: replace it with the binary itself)
  ln -sfn "$("$venv/bin/python" -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))')/zig" "$venv/bin/zig"
  touch "$venv/.complete"
fi
echo "$venv/bin"
