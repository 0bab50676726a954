#!/usr/bin/env bash
# Bench: alarm → all new replicas serving on both HAProxy nodes, end to end through the
# functions' webhook path (the demo's headline figure, as a benchmark), for N replicas
# per alarm, side by side in one run: each round runs the demo once per N, in alternating
# order (1 3 6, then 6 3 1, ...), so no N always runs on a warmer or busier box.
#
#   NS="1 3 6" RUNS=3 bash infra/bench/alarm_to_serving.sh
#
#   NS         replicas per alarm to measure (DEMO_REPLICAS; default "1 3 6")
#   RUNS       rounds; medians and min–max are reported (default 3)
#   DEMO_*     passed on to the demo (infra/local/demo.sh), e.g. DEMO_SERVERS=vm,
#              DEMO_SIZE_MB (default 256), DEMO_POOL (default xfs)
#
# Each run is a whole demo (fresh primary, dataset, seed, HAProxy, functions): about
# 1.5–2 min on 2 cores. Writes every run to target/bench/alarm_to_serving.csv (bench-plot
# draws it) and prints a Markdown table: scale-up's answer (snapshot, clones, boots), all
# serving, the ratio to N = 1, and scale-down back to the seed.
# Needs root, like the demo.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "alarm_to_serving: run as root (the demo runs PostgreSQL via runuser)" >&2; exit 1; }
ns=(${NS:-1 3 6})
runs=${RUNS:-3}
for n in "${ns[@]}"; do
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 12 ] || { echo "NS: 1..12 each (got $n)" >&2; exit 2; }
done
[[ $runs =~ ^[0-9]+$ ]] && [ "$runs" -ge 1 ] || { echo "RUNS must be a positive number" >&2; exit 2; }
mkdir -p target/bench
csv=target/bench/alarm_to_serving.csv
logs=$(mktemp -d /tmp/pgsurge-bench-alarm-XXXXXX)
chmod 755 "$logs" # the demo's PostgreSQL (user postgres) writes its logs below it
echo "n,run,answered_s,serving_s,down_s" >"$csv"
echo "alarm to serving: $(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB RAM, $(date -u +%Y-%m-%dT%H:%MZ), logs $logs" >&2

# The demo's results block: "  <label>   <seconds>s".
figure() { # log label-prefix
  sed -n "s/^  $2.* \([0-9.]*\)s\$/\1/p" "$1" | tail -n1
}
for ((r = 1; r <= runs; r++)); do
  order=("${ns[@]}")
  if ((r % 2 == 0)); then
    order=()
    for ((i = ${#ns[@]} - 1; i >= 0; i--)); do order+=("${ns[$i]}"); done
  fi
  for n in "${order[@]}"; do
    log=$logs/n$n-run$r.log
    DEMO_REPLICAS=$n DEMO_HOLD_SECS=${DEMO_HOLD_SECS:-0} DEMO_LOG_DIR=$logs/demo-n$n-run$r \
      bash infra/local/demo.sh >"$log" 2>&1 \
      || { tail -n 30 "$log" >&2; echo "alarm_to_serving: the demo failed (N=$n, run $r): $log" >&2; exit 1; }
    answered=$(figure "$log" "alarm -> scale-up answered")
    serving=$(figure "$log" "alarm -> $n new replicas serving")
    down=$(figure "$log" "scale-down alarm -> seed only")
    [ -n "$answered" ] && [ -n "$serving" ] && [ -n "$down" ] \
      || { echo "alarm_to_serving: no figures in $log" >&2; exit 1; }
    echo "$n,$r,$answered,$serving,$down" >>"$csv"
    echo "  N=$n run $r: answered ${answered}s, all serving ${serving}s, back to the seed ${down}s" >&2
  done
done

python3 - "$csv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault(int(r["n"]), []).append(r)
def med(rs, k):
    return statistics.median(float(r[k]) for r in rs)
def rng(rs, k):
    v = [float(r[k]) for r in rs]
    return f"{min(v):.1f}–{max(v):.1f}"
one = med(by[min(by)], "serving_s")
print(f"\nalarm → all serving, medians of {len(next(iter(by.values())))} runs; seconds\n")
print("| new replicas | scale-up answered | all serving (min–max) | vs. the smallest N | back to the seed |")
print("|---|---|---|---|---|")
for n in sorted(by):
    rs = by[n]
    print(f"| {n} | {med(rs, 'answered_s'):.1f} | **{med(rs, 'serving_s'):.1f}** ({rng(rs, 'serving_s')}) "
          f"| {med(rs, 'serving_s') / one:.2f}x | {med(rs, 'down_s'):.1f} |")
EOF
echo "wrote $csv" >&2
rm -rf "$logs"
