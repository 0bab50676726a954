#!/usr/bin/env bash
# Release binary sizes, and wall time + peak RSS of one CLI invocation (median of N).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-21}
cargo build --release --workspace --bins -q
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
printf '| binary | size (MiB) | CLI invoke wall (ms, median of %s) | peak RSS (MiB, median) |\n|---|---|---|---|\n' "$N"
for f in scale-up scale-down instance-ready instance-deleted; do
  bin=target/release/$f
  size=$(stat -c %s "$bin")
  for _ in $(seq "$N"); do
    /usr/bin/time -f '%e %M' -o /tmp/pgsurge-bench.t "$bin" invoke --event tests/events/alertmanager-firing.json >/dev/null 2>&1 || true
    cat /tmp/pgsurge-bench.t
  done | sort -n | awk -v n="$N" -v f="$f" -v s="$size" '
    { w[NR]=$1*1000; r[NR]=$2 }
    END { asort(w); asort(r); m=int((n+1)/2); printf "| %s | %.1f | %.0f | %.1f |\n", f, s/1048576, w[m], r[m]/1024 }'
done
