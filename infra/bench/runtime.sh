#!/usr/bin/env bash
# Release binaries, per function: size; one CLI invocation's wall time and peak RSS (the
# cold start: process start, config, parse, authenticate, classify; median of N runs);
# and the HTTP host's warm per-request latency (`serve`, one keep-alive connection,
# median and p95 of REQUESTS requests after WARMUP), all with cloud.provider = "none" so
# no cloud call is timed.
#
#   N=21 REQUESTS=200 WARMUP=20 BENCH_HTTP_PORT=18650 bash infra/bench/runtime.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-21}
REQUESTS=${REQUESTS:-200}
WARMUP=${WARMUP:-20}
port=${BENCH_HTTP_PORT:-18650}
for v in N REQUESTS WARMUP port; do
  [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] || { echo "$v must be a positive number" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs curl (apt-get install curl)" >&2; exit 1; }
cargo build --release --workspace --bins -q
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
p95() { sort -n | awk '{v[NR]=$1} END {i=int(NR*0.95); if (i < NR*0.95) i++; print v[i]}'; }
echo "runtime: $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
printf '| binary | size (MiB) | CLI cold start wall (ms, median of %s) | peak RSS (MiB, median) | HTTP warm request (ms, median / p95 of %s) | HTTP status |\n|---|---|---|---|---|---|\n' "$N" "$REQUESTS"
# Each binary gets an event it accepts (with cloud.provider = "none": parse, authenticate,
# classify — the cold start of a function, no cloud call).
declare -A event=(
  [scale-up]=alertmanager-firing.json [scale-down]=alertmanager-firing.json
  [instance-ready]=generic-tick.json [instance-deleted]=generic-instance-deleted.json
  [reconcile]=generic-tick.json
)
# Not a secret: the loopback server lives for this script only. Passed to the binary as
# its configuration (PGSURGE_AUTH__TOKEN), never printed.
token=bench-runtime-token
server=
trap '[ -z "$server" ] || kill "$server" 2>/dev/null || true' EXIT
for f in scale-up scale-down instance-ready instance-deleted reconcile; do
  bin=target/release/$f
  ev=tests/events/${event[$f]}
  runs=$(mktemp)
  for _ in $(seq "$N"); do
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o /tmp/pgsurge-bench.t "$bin" invoke --event "$ev" >/dev/null 2>&1
    t1=$(date +%s%N)
    echo "$(( (t1 - t0) / 1000 )) $(cat /tmp/pgsurge-bench.t)" >>"$runs"
  done
  wall=$(awk '{print $1/1000}' "$runs" | median)
  rss=$(awk '{print $2/1024}' "$runs" | median)
  size=$(stat -c %s "$bin" | awk '{print $1/1048576}')

  # The HTTP host, warm: one process, one keep-alive connection (curl reuses it across
  # the URLs of one command line), the warm-up requests not counted.
  PGSURGE_AUTH__TOKEN=$token "$bin" serve --port "$port" >/tmp/pgsurge-bench-serve.log 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
  # Each URL needs its own output: -o applies to the first URL only, and the answers'
  # bodies would otherwise mix into the -w lines.
  urls() { for _ in $(seq "$1"); do printf 'url = "http://127.0.0.1:%s/"\noutput = "/dev/null"\n' "$port"; done; }
  http() { # count → "<seconds> <status>" per request
    urls "$1" | curl -s -K - -o /dev/null -H "x-pgsurge-token: $token" -H 'content-type: application/json' \
      --data-binary "@$ev" -w '%{time_total} %{http_code}\n'
  }
  http "$WARMUP" >/dev/null
  http "$REQUESTS" >"$runs"
  kill "$server"; wait "$server" 2>/dev/null || true; server=
  if [ "$(wc -l <"$runs")" -ne "$REQUESTS" ] || grep -qvE '^[0-9.]+ [1-5][0-9][0-9]$' "$runs"; then
    echo "$f: not every request was answered; the server said:" >&2
    tail -n 5 /tmp/pgsurge-bench-serve.log >&2
    exit 1
  fi
  hmed=$(awk '{print $1*1000}' "$runs" | median)
  hp95=$(awk '{print $1*1000}' "$runs" | p95)
  codes=$(awk '{print $2}' "$runs" | sort | uniq -c | awk '{printf "%s%s×%s", (NR>1?", ":""), $2, $1}')
  printf '| %s | %.1f | %.1f | %.1f | %.2f / %.2f | %s |\n' "$f" "$size" "$wall" "$rss" "$hmed" "$hp95" "$codes"
  rm -f "$runs"
done
echo "done $(date -u +%Y-%m-%dT%H:%MZ), load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
