#!/usr/bin/env bash
# Release binary sizes, and wall time + peak RSS of one CLI invocation (median of N runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-21}
cargo build --release --workspace --bins -q
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
printf '| binary | size (MiB) | CLI invoke wall (ms, median of %s) | peak RSS (MiB, median) |\n|---|---|---|---|\n' "$N"
# Each binary gets an event it accepts (with cloud.provider = "none": parse, authenticate,
# classify — the cold start of a function, no cloud call).
declare -A event=(
  [scale-up]=alertmanager-firing.json [scale-down]=alertmanager-firing.json
  [instance-ready]=generic-tick.json [instance-deleted]=generic-instance-deleted.json
  [reconcile]=generic-tick.json
)
for f in scale-up scale-down instance-ready instance-deleted reconcile; do
  bin=target/release/$f
  runs=$(mktemp)
  for _ in $(seq "$N"); do
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o /tmp/pgsurge-bench.t "$bin" invoke --event "tests/events/${event[$f]}" >/dev/null 2>&1
    t1=$(date +%s%N)
    echo "$(( (t1 - t0) / 1000 )) $(cat /tmp/pgsurge-bench.t)" >>"$runs"
  done
  wall=$(awk '{print $1/1000}' "$runs" | median)
  rss=$(awk '{print $2/1024}' "$runs" | median)
  size=$(stat -c %s "$bin" | awk '{print $1/1048576}')
  printf '| %s | %.1f | %.1f | %.1f |\n' "$f" "$size" "$wall" "$rss"
  rm -f "$runs"
done
