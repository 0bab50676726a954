#!/usr/bin/env bash
# The part the clone-bench recipes share (clone_vs_basebackup.sh, catchup_vs_age.sh,
# prewarm_latency.sh): Debian packages, the bench binary, a loop-mounted XFS reflink pool
# under $BENCH_DIR (trimmed while it runs), the run, and on any exit the PostgreSQL
# servers it started (found by their data directories under $BENCH_DIR) stopped and the
# pool dropped. Arguments go to clone-bench as they are, after --work/--port-first and,
# with the pool, --xfs-pool.
#
#   BENCH_DIR  scratch directory (default ${TMPDIR:-/tmp}/pgsurge-bench)
#   XFS_SIZE   size of the sparse XFS image (default 40G; only written blocks use disk)
#   NO_XFS=1   no XFS pool (clone_vs_basebackup's plain pool only)
#   PORT_FIRST first of 40 loopback ports for the servers (default 20500)
#
# Needs root (PostgreSQL runs as postgres via runuser; the pool is a loop mount).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "$(basename "$0"): run as root (runuser, mount, drop_caches)" >&2; exit 1; }

dir=${BENCH_DIR:-${TMPDIR:-/tmp}/pgsurge-bench}
mnt=$dir/xfs
bash infra/local/deps.sh
cargo build -q -p pgsurge-tests --bin clone-bench

args=(--work "$dir/ext4" --port-first "${PORT_FIRST:-20500}")
mkdir -p "$dir"
trimmer=
cleanup() {
  # The trimmer's running fstrim (or sleep) too: an fstrim left holding the mount makes
  # pool-xfs.sh refuse to take the pool down.
  if [ -n "$trimmer" ]; then
    kids=$(pgrep -P "$trimmer" || true)
    kill "$trimmer" $kids 2>/dev/null || true
    for _ in $(seq 20); do
      [ -z "$kids" ] || ! kill -0 $kids 2>/dev/null && break
      sleep 0.5
    done
  fi
  # After a failed run: stop the PostgreSQL servers this bench started (only those with
  # a data directory under $dir) and its HAProxy, then drop the XFS pool.
  find "$dir" -maxdepth 8 -name postmaster.pid 2>/dev/null | while read -r pidfile; do
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$(dirname "$pidfile")" \
      -m immediate -w stop >/dev/null 2>&1 || true
  done
  # The pre-warm mode's HAProxy (its pidfile under $dir): by that PID only.
  find "$dir" -maxdepth 8 -name haproxy.pid 2>/dev/null | while read -r pidfile; do
    kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  [ -n "${NO_XFS:-}" ] || bash infra/local/pool-xfs.sh down "$mnt"
  rm -rf "$dir/ext4"
}
trap cleanup EXIT
if [ -z "${NO_XFS:-}" ]; then
  bash infra/local/pool-xfs.sh up "$mnt" "${XFS_SIZE:-40G}"
  args+=(--xfs-pool "$mnt/pool")
  # The image is a sparse file: blocks XFS frees (each deleted copy) stay allocated in it
  # until trimmed. Without this, 3 runs at 16 GB write ~50 GB.
  (while sleep 15; do fstrim "$mnt" 2>/dev/null || true; done) &
  trimmer=$!
fi

echo "$(basename "$0" .sh): $(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB RAM, $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
target/debug/clone-bench "${args[@]}" "$@"
echo "done $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
