#!/usr/bin/env bash
# The demo, for now: the four functions as real HTTP webhook endpoints on loopback,
# each sent the example events of the formats it handles, through the real webhook
# path (token-authenticated POST). The orchestration issue turns this into the full
# scale-up / scale-down demo on real PostgreSQL and HAProxy.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v curl >/dev/null || { echo "demo needs curl (apt-get install curl)" >&2; exit 1; }

export PGSURGE_AUTH__TOKEN="demo-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

declare -A port=([scale-up]=18101 [scale-down]=18102 [instance-ready]=18103 [instance-deleted]=18104)
for f in scale-up scale-down instance-ready instance-deleted; do
  target/debug/$f serve --port "${port[$f]}" 2>>"${TMPDIR:-/tmp}/pgsurge-demo.log" &
  pids+=($!)
done
for f in "${!port[@]}"; do
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:${port[$f]}/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
done

send() { # function event-file
  local f=$1 e=$2 code
  code=$(curl -sS -o /tmp/pgsurge-demo.out -w '%{http_code}' -H "x-pgsurge-token: $PGSURGE_AUTH__TOKEN" \
    -H 'content-type: application/json' --data-binary "@tests/events/$e" "http://127.0.0.1:${port[$f]}/")
  printf '%-17s %-38s HTTP %s  %s\n' "$f" "$e" "$code" \
    "$(python3 -c 'import json,sys; d=json.load(open("/tmp/pgsurge-demo.out")); print(d.get("status") or d.get("errorType"), "-", d.get("reason") or d.get("errorMessage"))')"
}

echo "== pgsurge functions as webhook endpoints on 127.0.0.1:18101-18104 =="
send scale-up alertmanager-firing.json
send scale-up cloudeye-smn-alarm.json
send scale-up aodh-alarm.json
send scale-up alertmanager-resolved.json
send scale-down generic-alarm.json
send instance-ready generic-instance-ready.json
send instance-ready as-lifecycle-launching.json
send instance-deleted generic-instance-deleted.json
send scale-up malformed-truncated.json
echo "== unauthenticated webhook =="
curl -sS -w '  HTTP %{http_code}\n' --data-binary @tests/events/alertmanager-firing.json "http://127.0.0.1:${port[scale-up]}/"
echo "Logs (JSON lines): ${TMPDIR:-/tmp}/pgsurge-demo.log"
