#!/usr/bin/env bash
# Stop the Ceph daemons infra/s3/rgw-up.sh started — only those, by the PIDs in its
# pidfiles (other Ceph clusters on the machine are left alone). Same environment as
# rgw-up.sh. Add --purge to delete the data directory too.
set -uo pipefail
PORT="${PGSURGE_S3_PORT:-22480}"
DIR="${PGSURGE_CEPH_DIR:-${TMPDIR:-/tmp}/pgsurge-ceph-$PORT}"

stop() {
  local f="$DIR/$1.pid" pid i
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null; fi
    echo "stopped $1 (pid $pid)"
  fi
  rm -f "$f"
}

for d in rgw.a osd.0 mon.a; do stop "$d"; done
if [ "${1:-}" = "--purge" ]; then rm -rf "$DIR"; fi
exit 0
