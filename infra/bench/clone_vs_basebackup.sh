#!/usr/bin/env bash
# Bench: a new caught-up replica from (a) snapshot + copy-on-write clone + boot vs
# (b) pg_basebackup + boot, side by side on the same primary, dataset and write load,
# at several database sizes, with a plain-directory pool (plain copies) and an XFS
# reflink pool (copy-on-write). Prints a Markdown table of medians and the ratio.
#
#   SIZES_MB="1024 4096" TABLES=4500 RUNS=3 RATE=200 bash infra/bench/clone_vs_basebackup.sh
#
#   SIZES_MB   database sizes to generate (MiB of tables + indexes; default "1024 4096")
#   TABLES     tables in the catalog dataset (default 4500, like the production seed)
#   RUNS       runs per path, size and pool; medians are reported (default 3)
#   RATE       write load on the primary during every run, transactions/s of 10 rows
#              each (default 200)
#   BENCH_DIR  scratch directory (default ${TMPDIR:-/tmp}/pgsurge-bench); needs about
#              2.2x the largest size free with the XFS pool alone (NO_PLAIN=1: the
#              primary lives on the XFS filesystem and the seed shares its extents),
#              5x with the plain pool
#   XFS_SIZE   size of the sparse XFS image (default 40G; only written blocks use disk;
#              it holds the primary, the seed and one pg_basebackup copy at a time)
#   NO_XFS=1   skip the XFS pool (e.g. without root or loop devices)
#   NO_PLAIN=1 skip the plain-directory pool (at 16 GB it copies 32 GB per run and needs
#              that much more disk; it only shows that copies cost what streaming does)
#   PORT_FIRST first of 40 loopback ports for the servers (default 20500)
#
# Needs root (PostgreSQL runs as postgres via runuser; the XFS pool is a loop mount).
# Not part of CI: at the default sizes it runs for about an hour on two cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "clone_vs_basebackup: run as root (runuser, mount)" >&2; exit 1; }

sizes=${SIZES_MB:-1024 4096}
dir=${BENCH_DIR:-${TMPDIR:-/tmp}/pgsurge-bench}
mnt=$dir/xfs
bash infra/local/deps.sh
cargo build -q -p pgsurge-tests --bin clone-bench

args=(--sizes-mb "${sizes// /,}" --tables "${TABLES:-4500}" --runs "${RUNS:-3}"
  --rate "${RATE:-200}" --work "$dir/ext4" --port-first "${PORT_FIRST:-20500}")
[ -z "${NO_PLAIN:-}" ] || args+=(--plain off)
mkdir -p "$dir"
trimmer=
cleanup() {
  [ -z "$trimmer" ] || kill "$trimmer" 2>/dev/null || true
  # After a failed run: stop the PostgreSQL servers this bench started (only those with
  # a data directory under $dir), then drop the XFS pool.
  find "$dir" -maxdepth 8 -name postmaster.pid 2>/dev/null | while read -r pidfile; do
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$(dirname "$pidfile")" \
      -m immediate -w stop >/dev/null 2>&1 || true
  done
  [ -n "${NO_XFS:-}" ] || bash infra/local/pool-xfs.sh down "$mnt"
}
trap cleanup EXIT
if [ -z "${NO_XFS:-}" ]; then
  bash infra/local/pool-xfs.sh up "$mnt" "${XFS_SIZE:-40G}"
  args+=(--xfs-pool "$mnt/pool")
  # The image is a sparse file: blocks XFS frees (each pg_basebackup copy is deleted after
  # its run) stay allocated in it until trimmed. Without this, 3 runs at 16 GB write ~50 GB.
  (while sleep 15; do fstrim "$mnt" 2>/dev/null || true; done) &
  trimmer=$!
fi

echo "clone vs basebackup: $(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB RAM, $(date -u +%Y-%m-%d)" >&2
target/debug/clone-bench "${args[@]}"
rm -rf "$dir/ext4"
