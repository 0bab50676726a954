#!/usr/bin/env bash
# Run checkov (pinned, from PyPI) over the Terraform in infra/terraform, installing it
# into a cached virtualenv on first use. The accepted findings, each with its reason, are
# the skip-check list in infra/terraform/.checkov.yaml; anything else fails.
#
# Usage: infra/terraform/checkov.sh [--install-only] [DIR...]   (default: both clouds)
# Cache: $PGSURGE_CACHE (default /var/cache/pgsurge as root, else ~/.cache/pgsurge).
set -euo pipefail
CHECKOV_VERSION=3.3.30
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$(id -u)" -eq 0 ]; then cache="${PGSURGE_CACHE:-/var/cache/pgsurge}"; else cache="${PGSURGE_CACHE:-$HOME/.cache/pgsurge}"; fi
venv="$cache/checkov-$CHECKOV_VERSION"
if [ ! -x "$venv/bin/checkov" ]; then
  echo "checkov.sh: installing checkov $CHECKOV_VERSION into $venv (once)" >&2
  # python3-venv is a Debian package (infra/local/deps.sh installs it).
  python3 -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
  rm -rf "$venv"; mv "$venv.tmp" "$venv"
  # A venv records its own path in its scripts: rewrite the temp path after the move.
  grep -rl "$venv.tmp" "$venv/bin" | xargs sed -i "s#$venv.tmp#$venv#g"
fi
[ "${1:-}" = "--install-only" ] && exit 0
[ $# -eq 0 ] && set -- "$here/huaweicloud" "$here/openstack"
args=()
for d in "$@"; do args+=(-d "$d"); done
cd "$here/../.."  # external-checks-dir in .checkov.yaml is relative to the workspace root
exec "$venv/bin/checkov" --config-file "$here/.checkov.yaml" "${args[@]}"
