#!/usr/bin/env bash
# The pgsurge demo on the local provider: a surge of read replicas from a load alarm and
# back, on real PostgreSQL 15 and HAProxy, through the functions' real webhook path.
#
#   ./just demo            (installs the Debian packages and builds first; run as root)
#   bash infra/local/demo.sh
#
# From nothing, on loopback only, everything under one scratch dir:
#   1. a PostgreSQL 15 primary with the "catalog" dataset (infra/local/dataset/generate.sh)
#      and a light write load (so new replicas have WAL to catch up on);
#   2. the seed replica: a volume in the local provider's pool filled by pg_basebackup and
#      started through the provider (`pgsurge local seed`), a base replica in the state;
#   3. two HAProxy nodes, admin socket, backend pg_read with the seed declared statically;
#   4. the five functions as HTTP endpoints, one config file, token auth;
#   5. a rate-limited read load through both HAProxy nodes (pgbench -C, a new connection
#      per transaction, index lookups in random catalog tables);
#   6. an Alertmanager "firing" webhook to scale-up → snapshot of the seed, two clones,
#      two servers; instance-ready ticks until both are verified and serve on both nodes;
#   7. an Alertmanager "firing" low-load webhook to scale-down → drained, removed, deleted;
#   8. a per-phase timing table (the functions' /metrics) and the read-load result.
# Progress is printed every ~1.5 s: replicas and phases (the state document), replay lag
# (psql), and what each HAProxy node says about every server (admin socket).
# Ctrl-C at any point stops everything it started, by PID, and removes the scratch dir.
#
# Knobs (environment):
#   DEMO_TABLES=4500        tables in the catalog dataset
#   DEMO_SIZE_MB=256        approximate dataset size in MiB (~2x on disk with indexes and
#                           4,500 tables' overhead); 256 keeps the demo at ~3-5 min on 2 cores
#   DEMO_PORT_BASE=21000    ports used: base (primary), +1..+5 (functions), +21..+25 (their
#                           /metrics), +11/+12 (HAProxy), +100..+119 (replicas); all on
#                           127.0.0.1, checked free first
#   DEMO_READ_RATE=40       read transactions per second, in total over both HAProxy nodes
#   DEMO_WRITE_RATE=20      write transactions per second on the primary (0: none)
#   DEMO_HOLD_SECS=10       how long the surge serves before the scale-down alarm
#   DEMO_LOG_DIR=/tmp/pgsurge-demo-logs   logs of every process (kept; emptied at start)
#   DEMO_POOL=xfs           volume pool: "xfs" = a loop-mounted XFS reflink=1 filesystem
#                           (copy-on-write snapshots and clones, like block storage;
#                           falls back to "dir" when it cannot be made), "dir" = a plain
#                           directory (plain copies)
#   DEMO_HAPROXY=push       "agent": each HAProxy node is converged by its own
#                           pgsurge-agent (mode = "agent", /metrics on +31/+32), not by push
#   DEMO_REPLICAS=2         new replicas per alarm (1..12; the alarm's pgsurge_replicas)
#   DEMO_SERVERS=process    "vm": the two new replicas are qemu VMs booted from the replica
#                           image (infra/image/build.sh, built or reused from its cache;
#                           `[local] servers = "vm"`): their first-boot unit reads the config
#                           drive, mounts the cloned data disk, streams as a role whose
#                           password only the image holds and calls instance-ready back
#                           (ticks only every 10 s, as a timer would, for a replica still
#                           catching up then). Software emulation: minutes more. The image is built
#                           with the test secrets (tests/data/image/secrets.yml).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

TABLES=${DEMO_TABLES:-4500}
SIZE_MB=${DEMO_SIZE_MB:-256}
P=${DEMO_PORT_BASE:-21000}
READ_RATE=${DEMO_READ_RATE:-40}
WRITE_RATE=${DEMO_WRITE_RATE:-20}
HOLD=${DEMO_HOLD_SECS:-10}
N=${DEMO_REPLICAS:-2}
LOGS=${DEMO_LOG_DIR:-/tmp/pgsurge-demo-logs}
CLUSTER=demo
PG_BIN=/usr/lib/postgresql/15/bin

die() { echo "demo: $*" >&2; exit 1; }
for v in TABLES SIZE_MB P READ_RATE WRITE_RATE HOLD N; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number (got ${!v})"
done
[ "$P" -ge 1024 ] && [ "$P" -le 65400 ] || die "DEMO_PORT_BASE must be 1024..65400"
[ "$READ_RATE" -ge 2 ] || die "DEMO_READ_RATE must be at least 2"
# The seed and the new replicas share the 20 ports base+100..+119.
[ "$N" -ge 1 ] && [ "$N" -le 12 ] || die "DEMO_REPLICAS must be 1..12 (got $N)"
export DEMO_REPLICAS=$N
SERVERS=${DEMO_SERVERS:-process}
case "$SERVERS" in process | vm) ;; *) die "DEMO_SERVERS must be process or vm (got $SERVERS)" ;; esac
# The mission's bound is 10 minutes; VMs under software emulation on a busy box need more.
UP_TIMEOUT=$([ "$SERVERS" = vm ] && echo 1200 || echo 600)
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL runs as the postgres user through runuser)"
id postgres >/dev/null 2>&1 || die "no postgres user: apt-get install postgresql-15 (./just deps)"
for c in "$PG_BIN/initdb" "$PG_BIN/pg_ctl" psql pgbench /usr/sbin/haproxy curl python3; do
  command -v "$c" >/dev/null || die "$c not found: run ./just deps (infra/local/deps.sh) as root"
done
for b in scale-up scale-down instance-ready instance-deleted reconcile pgsurge; do
  [ -x "target/debug/$b" ] || die "target/debug/$b missing: run ./just build"
done
if [ "$SERVERS" = vm ]; then
  for c in qemu-system-x86_64 qemu-img mmdebstrap ansible-playbook genisoimage mkfs.ext4; do
    command -v "$c" >/dev/null || die "$c not found (DEMO_SERVERS=vm): run ./just deps (infra/local/deps.sh) as root"
  done
fi
STATUS="python3 $ROOT/infra/local/demo-status.py"

declare -A PORT=([scale-up]=$((P + 1)) [scale-down]=$((P + 2)) [instance-ready]=$((P + 3))
  [instance-deleted]=$((P + 4)) [reconcile]=$((P + 5)))
PPORT=$P
HA_PORT=($((P + 11)) $((P + 12)))
python3 - "$P" <<'EOF' || die "a port in DEMO_PORT_BASE's range is in use (set DEMO_PORT_BASE)"
import socket, sys
base = int(sys.argv[1])
for p in [base + i for i in (0, 1, 2, 3, 4, 5, 11, 12, 21, 22, 23, 24, 25)] + list(range(base + 100, base + 120)):
    s = socket.socket()
    # As the servers do: a port whose old connections sit in TIME_WAIT is free.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        sys.exit(f"port {p} is in use")
    finally:
        s.close()
EOF

S=$(mktemp -d /tmp/pgsurge-demo-XXXXXX)
chmod 755 "$S"
rm -rf "$LOGS"
mkdir -p "$LOGS" "$S/run"
POOL=$S/pool # a plain directory, or a directory on the XFS copy-on-write pool (below)
chown postgres: "$LOGS"
T0=$(date +%s.%N)
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(date +%s.%N)" 2>/dev/null || echo '?'; }
step() { printf '\n== [%6ss] %s\n' "$(since "$T0")" "$*"; }

# --- cleanup: every process by the PID we recorded; postgres by its postmaster.pid -------
# A postmaster is only signalled when /proc says it is a postgres whose working
# directory is that data dir (a stale pidfile's PID may belong to someone else now).
stop_postmaster() { # data-dir
  local d=$1 pid
  [ -f "$d/postmaster.pid" ] || return 0
  pid=$(head -n1 "$d/postmaster.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$d")" ] || return 0
  grep -q postgres "/proc/$pid/comm" 2>/dev/null || return 0
  kill -INT "$pid" 2>/dev/null || return 0 # fast shutdown
  for _ in $(seq 100); do alive "$pid" || return 0; sleep 0.1; done
  kill -QUIT "$pid" 2>/dev/null || true # immediate
}
# Background jobs run in their own process group (setsid, see bg): the group goes too,
# so a loop's current pgbench is not orphaned. HAProxy's pidfile holds a plain PID.
# Alive and not a zombie (our dead children stay zombies until `wait`: kill -0 says yes).
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }
stop_pidfile() { # pidfile
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}
# A VM the provider started and scale-down did not delete: its qemu, by the pidfile qemu
# wrote, only when /proc says that PID is a qemu.
stop_qemu() { # pidfile
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q qemu-system || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleaned=0
cleanup() {
  [ $cleaned = 0 ] || return 0
  cleaned=1
  trap '' INT TERM
  echo
  echo "== cleaning up: stopping what the demo started"
  local t=$SECONDS
  local f
  for f in "$S"/run/*.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
  # Replicas the local provider started (scale-down normally deleted the surge ones),
  # then the primary.
  if [ -d "$POOL" ]; then
    while IFS= read -r f; do stop_postmaster "$(dirname "$f")"; done \
      < <(find "$POOL" -name postmaster.pid 2>/dev/null)
    for f in "$POOL"/servers/*/qemu.pid; do [ -e "$f" ] && stop_qemu "$f"; done
    for f in "$POOL"/servers/*/console.log; do
      [ -e "$f" ] && cp "$f" "$LOGS/console-$(basename "$(dirname "$f")").log"
    done
    for f in "$POOL"/servers/*/postgres.log; do
      [ -e "$f" ] && cp "$f" "$LOGS/replica-$(basename "$(dirname "$f")").log"
    done
  fi
  stop_postmaster "$S/primary"
  wait 2>/dev/null || true
  if findmnt -n -M "$S/xfs" >/dev/null 2>&1; then
    bash "$ROOT/infra/local/pool-xfs.sh" down "$S/xfs" >>"$LOGS/pool-xfs.log" 2>&1 || true
  fi
  rm -rf "$S"
  echo "   stopped, scratch dir $S removed in $((SECONDS - t))s; logs kept in $LOGS"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted"; cleanup; exit 130' INT TERM

bg() { # name command...: start in the background in its own process group, record the PID
  local name=$1
  shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$S/run/$name.pid"
}

echo "pgsurge demo: scratch $S, logs $LOGS, ports 127.0.0.1:$P.."

# --- 0. the replica image (DEMO_SERVERS=vm) ----------------------------------------------------
if [ "$SERVERS" = vm ]; then
  step "the replica image: infra/image/build.sh (Ansible role; cached in /var/cache/pgsurge/image)"
  SECRETS=$ROOT/tests/data/image/secrets.yml
  PGSURGE_IMAGE_SECRETS=$SECRETS bash infra/image/build.sh target/debug/pgsurge \
    >"$S/image.env" 2>"$LOGS/image-build.log" || die "the image build failed: see $LOGS/image-build.log"
  img() { sed -n "s/^$1=//p" "$S/image.env"; }
  echo "   $(img IMAGE) ($([ "$(img CACHED)" = yes ] && echo cached || echo built))"
  # The role the VMs stream as: its password is baked into the image, never in user data.
  VM_REPL_PASSWORD=$(sed -n 's/^pgsurge_replication_password: *"\(.*\)"$/\1/p' "$SECRETS")
  [ -n "$VM_REPL_PASSWORD" ] || die "no pgsurge_replication_password in $SECRETS"
fi

# --- 1. the primary -------------------------------------------------------------------------
step "PostgreSQL 15 primary on 127.0.0.1:$PPORT"
chown postgres: "$S"
runuser -u postgres -- "$PG_BIN/initdb" -D "$S/primary" -U postgres --auth=trust --no-sync \
  -E UTF8 --locale=C >"$LOGS/initdb.log" 2>&1 || die "initdb failed: see $LOGS/initdb.log"
cat >>"$S/primary/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PPORT
unix_socket_directories = '$S/primary'
wal_level = replica
max_wal_senders = 20
max_replication_slots = 20
hot_standby = on
wal_keep_size = '1GB'
checkpoint_timeout = '30s'
shared_buffers = '64MB'
max_connections = 200
log_min_messages = warning
EOF
cat >>"$S/primary/pg_hba.conf" <<EOF
host replication all 127.0.0.1/32 trust
host all all 127.0.0.1/32 trust
EOF
if [ "$SERVERS" = vm ]; then
  # First match wins: the VMs' role must give its password (qemu's user network makes
  # their connections come from 127.0.0.1). The guests are reached from qemu's gateway:
  # the replicas' pg_hba.conf (the seed's, copied by every snapshot) admits that network,
  # as a cloud's would admit its VPC.
  { printf 'host replication vmrepl 127.0.0.1/32 scram-sha-256\nhost all all 10.0.2.0/24 trust\n'
    cat "$S/primary/pg_hba.conf"; } >"$S/hba.new"
  cat "$S/hba.new" >"$S/primary/pg_hba.conf"
fi
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$S/primary" -l "$LOGS/primary.log" -w -t 60 start >/dev/null \
  || die "the primary did not start: see $LOGS/primary.log"
psql_p() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "host=127.0.0.1 port=$PPORT user=postgres dbname=${2:-postgres}" -c "$1"; }
# HAProxy's health check logs in as this role (option pgsql-check); trust on 127.0.0.1.
psql_p "CREATE ROLE haproxy_check LOGIN"
if [ "$SERVERS" = vm ]; then
  # The local provider's snapshot connects as this role too: it checkpoints the primary
  # and puts the seed in backup mode. Those rights, not a superuser.
  psql_p "CREATE ROLE vmrepl LOGIN REPLICATION PASSWORD '$VM_REPL_PASSWORD'"
  psql_p "GRANT pg_checkpoint TO vmrepl"
  psql_p "GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO vmrepl"
  psql_p "GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO vmrepl"
fi

step "catalog dataset: $TABLES tables, ~$SIZE_MB MiB (infra/local/dataset/generate.sh)"
bash infra/local/dataset/generate.sh --conn "host=127.0.0.1 port=$PPORT user=postgres" \
  --tables "$TABLES" --size-mb "$SIZE_MB" 2>&1 | tee "$LOGS/dataset.log" | sed 's/^/   /'
[ "${PIPESTATUS[0]}" = 0 ] || die "dataset generation failed: see $LOGS/dataset.log"
# A point read in table t: what the read load runs (works on standbys: read-only).
psql_p "CREATE FUNCTION catalog.read_item(t int, k int) RETURNS text LANGUAGE plpgsql STABLE AS \$\$
DECLARE s text; BEGIN
  EXECUTE format('SELECT sku FROM catalog.%I WHERE id = \$1', catalog.item_table(t)) INTO s USING k;
  RETURN s; END \$\$" catalog
ROWS=$(psql_p "SELECT rows_per_table FROM catalog.dataset" catalog)
if [ "$WRITE_RATE" -gt 0 ]; then
  bg write-load bash infra/local/dataset/load.sh --conn "host=127.0.0.1 port=$PPORT user=postgres" \
    --clients 2 --threads 1 --seconds 3600 --rate "$WRITE_RATE" --progress 3600
  echo "   write load on the primary: $WRITE_RATE tx/s (pid $(cat "$S/run/write-load.pid"))"
fi

# --- the volume pool: copy-on-write when this machine can (root, xfsprogs, loop devices) --
if [ "${DEMO_POOL:-xfs}" = xfs ]; then
  if bash "$ROOT/infra/local/pool-xfs.sh" up "$S/xfs" 20G >>"$LOGS/pool-xfs.log" 2>&1; then
    POOL=$S/xfs/pool
    echo "   volume pool: XFS reflink=1 on a loop device (copy-on-write snapshots and clones)"
  else
    echo "   volume pool: plain directory, plain copies (XFS pool failed: $LOGS/pool-xfs.log)"
  fi
else
  echo "   volume pool: plain directory, plain copies (DEMO_POOL=${DEMO_POOL})"
fi

# --- 4 (config first: the seed needs it). One file for the five functions and the CLI. -----
export PGSURGE_AUTH__TOKEN="demo-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
CFG=$S/pgsurge.toml
cat >"$CFG" <<EOF
[cluster]
name = "$CLUSTER"
[runtime]
# scale-up snapshots and clones before it answers: allow for a loaded 2-core box (and,
# with VMs, an ext4 image of each volume: the local pool is directories, a VM needs a disk).
timeout_secs = $((UP_TIMEOUT < 900 ? UP_TIMEOUT : 900))
[cloud]
provider = "local"
[local]
pool_dir = "$POOL"
port_first = $((P + 100))
port_last = $((P + 119))
bootstrap_script = "$ROOT/infra/image/bootstrap-replica.sh"
start_timeout_secs = 120
[postgres]
primary_host = "127.0.0.1"
primary_port = $PPORT
replication_user = "postgres"
sslmode = "disable"
max_replay_lag_bytes = 16777216
max_replay_lag_secs = 30
[state]
backend = "local"
local_dir = "$S/state"
[policy]
mode = "step"
step = $N
min_replicas = 1
max_replicas = $((N + 3))
scale_up_cooldown_secs = 0
scale_down_cooldown_secs = 0
scale_down_step = $N
[ops]
ready_wait_secs = 5
[haproxy]
backend = "pg_read"
slowstart_secs = 2
drain_deadline_secs = 10
[[haproxy.nodes]]
name = "haproxy1"
runtime_api = "unix:$S/haproxy1/admin.sock"
mode = "${DEMO_HAPROXY:-push}"
[[haproxy.nodes]]
name = "haproxy2"
runtime_api = "unix:$S/haproxy2/admin.sock"
mode = "${DEMO_HAPROXY:-push}"
[agent]
interval_ms = 1000
EOF
if [ "$SERVERS" = vm ]; then
  export PGSURGE_AUTH__CALLBACK_SECRET="demo-cb-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  cat >>"$CFG" <<EOF
[local.vm]
image = "$(img IMAGE)"
kernel = "$(img KERNEL)"
initrd = "$(img INITRD)"
memory_mb = 1024
[node]
# Loopback as the guests see it is qemu's gateway: the provider rewrites it.
callback_url = "http://127.0.0.1:${PORT[instance-ready]}/"
EOF
fi
case "${DEMO_HAPROXY:-push}" in push | agent) ;; *) die "DEMO_HAPROXY must be push or agent" ;; esac
export DEMO_STATE=$S/state/$CLUSTER/state.json DEMO_PRIMARY_PORT=$PPORT DEMO_BACKEND=pg_read \
  DEMO_CLUSTER=$CLUSTER DEMO_NODES="haproxy1=$S/haproxy1/admin.sock,haproxy2=$S/haproxy2/admin.sock"

# --- 2. the seed replica ------------------------------------------------------------------
step "seed replica: pool volume + pg_basebackup + server (pgsurge local seed)"
target/debug/pgsurge --config "$CFG" local seed >"$S/seed.json" 2>"$LOGS/seed.log" \
  || { cat "$LOGS/seed.log" >&2; die "seeding failed"; }
SEED_PORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$S/seed.json")
echo "   $(cat "$S/seed.json")"
if [ "$SERVERS" = vm ]; then
  # The seed stays a process (the replica every snapshot is taken of); the functions'
  # servers are VMs, streaming as the image's role.
  export PGSURGE_LOCAL__SERVERS=vm PGSURGE_POSTGRES__REPLICATION_USER=vmrepl
fi

# --- 3. HAProxy -------------------------------------------------------------------------------
step "two HAProxy nodes: pg_read on 127.0.0.1:${HA_PORT[0]} and :${HA_PORT[1]}, seed declared statically"
for i in 1 2; do
  d=$S/haproxy$i
  mkdir -p "$d"
  cat >"$d/haproxy.cfg" <<EOF
global
    stats socket $d/admin.sock mode 600 level admin expose-fd listeners
    pidfile $S/run/haproxy$i.pid
    hard-stop-after 30s
defaults
    mode tcp
    timeout connect 2s
    timeout client 5m
    timeout server 5m
    timeout check 2s
    retries 3
    option redispatch 1
frontend pg_read_in
    bind 127.0.0.1:${HA_PORT[$((i - 1))]}
    default_backend pg_read
backend pg_read
    balance roundrobin
    option pgsql-check user haproxy_check
    server seed 127.0.0.1:$SEED_PORT check inter 1s fall 2 rise 1
EOF
  /usr/sbin/haproxy -D -f "$d/haproxy.cfg" >"$LOGS/haproxy$i.log" 2>&1 \
    || die "haproxy$i did not start: see $LOGS/haproxy$i.log"
  for _ in $(seq 50); do [ -S "$d/admin.sock" ] && [ -s "$S/run/haproxy$i.pid" ] && break; sleep 0.1; done
done

if [ "${DEMO_HAPROXY:-push}" = agent ]; then
  step "a pgsurge-agent per HAProxy node (the functions never connect to the nodes)"
  for i in 1 2; do
    bg "agent$i" env PGSURGE_AGENT__NODE="haproxy$i" PGSURGE_AGENT__LISTEN="127.0.0.1:$((P + 30 + i))" \
      target/debug/pgsurge-agent --config "$CFG"
  done
fi

step "the five functions as HTTP endpoints (token auth), config $CFG"
for f in scale-up scale-down instance-ready instance-deleted reconcile; do
  # /metrics is never on the webhook port: each function serves it on port + 20.
  bg "$f" env PGSURGE_RUNTIME__METRICS_LISTEN="127.0.0.1:$((PORT[$f] + 20))" \
    target/debug/$f --config "$CFG" serve --port "${PORT[$f]}"
done
FUNCTIONS=(scale-up scale-down instance-ready instance-deleted reconcile)
for f in "${FUNCTIONS[@]}"; do
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:${PORT[$f]}/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:${PORT[$f]}/healthz" >/dev/null 2>&1 || die "$f did not come up: see $LOGS/$f.log"
  printf '   %-17s http://127.0.0.1:%s/\n' "$f" "${PORT[$f]}"
done

# POST a webhook body (file) to a function with the token; the answer goes to a file.
post() { # function body-file answer-file
  curl -sS -o "$3" -w '%{http_code}' -H "x-pgsurge-token: $PGSURGE_AUTH__TOKEN" \
    -H 'content-type: application/json' --data-binary "@$2" "http://127.0.0.1:${PORT[$1]}/" || echo 000
}
answer() { # answer-file: one line of what the function said
  python3 - "$1" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit(print("   (no answer)"))
if "errorType" in d:
    print(f"   error {d['errorType']}: {d.get('errorMessage')}")
    sys.exit()
dec = d.get("decision") or {}
print(f"   {d.get('status')}: {(dec.get('action') or {}).get('action', '-')} ({dec.get('reason', d.get('reason', ''))})")
for a in (d.get("report") or d).get("actions", []):
    print(f"     did: {a}")
for a in (d.get("report") or d).get("pending", []):
    print(f"     pending: {a}")
EOF
}
show() { printf '[%6ss]\n' "$(since "$T0")"; $STATUS show; }

# --- 5. read load through both nodes ---------------------------------------------------------
step "read load: pgbench -C (new connection per read), $READ_RATE tx/s over both HAProxy nodes"
cat >"$S/read.sql" <<EOF
\set t random(1, $TABLES)
\set k random(1, $ROWS)
SELECT catalog.read_item(:t, :k);
EOF
chmod 644 "$S/read.sql"
# pgbench prints its totals only when its -T runs out (SIGINT just kills it), so the load
# is a loop of 5-second runs, each appending its summary, until $S/stop-reads appears.
for i in 1 2; do
  bg "read-load$i" bash -c 'while [ ! -e "$1/stop-reads" ]; do
      pgbench -n -C -c 2 -j 1 -R "$2" -T 5 -f "$1/read.sql" -h 127.0.0.1 -p "$3" -U postgres catalog
    done' read-load "$S" $((READ_RATE / 2)) "${HA_PORT[$((i - 1))]}"
done
sleep 3
show

# --- 6. scale up -------------------------------------------------------------------------------
step "ALARM: Alertmanager firing PgReadLoadHigh → POST scale-up (pgsurge_replicas=$N)"
$STATUS alarm up "demo-up-$$" >"$S/alarm-up.json"
T_UP=$(date +%s.%N)
( code=$(post scale-up "$S/alarm-up.json" "$S/answer-up.json"); echo "$code" >"$S/answer-up.code" ) &
echo $! >"$S/run/post-up.pid"
tick_pid=
while :; do
  sleep 0.3
  show
  if [ -s "$S/answer-up.code" ] && [ ! -e "$S/answer-up.shown" ]; then
    touch "$S/answer-up.shown"
    since "$T_UP" >"$S/answer-up.secs"
    echo "   scale-up answered HTTP $(cat "$S/answer-up.code") after $(cat "$S/answer-up.secs") s:"
    answer "$S/answer-up.json"
    [ "$(cat "$S/answer-up.code")" = 200 ] || die "scale-up failed"
  fi
  # instance-ready: a tick whenever the previous one has answered (it polls up to
  # ops.ready_wait_secs itself, so ticks do not pile up). VMs call it back themselves
  # when their PostgreSQL is up; a replica still catching up then is verified again by
  # the timer trigger, as in production: every 10 s.
  if [ -e "$S/answer-up.shown" ] && { [ -z "$tick_pid" ] || ! kill -0 "$tick_pid" 2>/dev/null; } \
    && { [ "$SERVERS" = process ] || python3 -c "import sys; sys.exit(float(sys.argv[1]) < 10)" "$(since "${T_TICK:-0}")"; }; then
    T_TICK=$(date +%s.%N)
    echo '{"pgsurge": 1, "kind": "tick"}' >"$S/tick.json"
    ( post instance-ready "$S/tick.json" "$S/answer-ready.json" >/dev/null ) &
    tick_pid=$!
    echo $tick_pid >"$S/run/tick.pid"
  fi
  serving=$($STATUS count serving surge)
  [ "$serving" -ge "$N" ] && break
  python3 -c "import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))" "$(since "$T_UP")" "$UP_TIMEOUT" \
    || die "the new replicas did not serve within $UP_TIMEOUT s"
done
UP_WALL=$(since "$T_UP")
UP_ANSWER=$(cat "$S/answer-up.secs")
wait "$tick_pid" 2>/dev/null || true
step "SERVING: $N new replicas serve on both HAProxy nodes, ${UP_WALL}s after the alarm"
show
echo "   holding the surge for ${HOLD}s under load..."
end=$(( $(date +%s) + HOLD ))
while [ "$(date +%s)" -lt "$end" ]; do sleep 2; show; done

# --- 7. scale down -----------------------------------------------------------------------------
step "ALARM: Alertmanager firing PgReadLoadLow → POST scale-down (pgsurge_replicas=$N)"
$STATUS alarm down "demo-down-$$" >"$S/alarm-down.json"
T_DOWN=$(date +%s.%N)
( code=$(post scale-down "$S/alarm-down.json" "$S/answer-down.json"); echo "$code" >"$S/answer-down.code" ) &
echo $! >"$S/run/post-down.pid"
while :; do
  sleep 0.3
  show
  [ -s "$S/answer-down.code" ] && [ "$($STATUS count any)" = 1 ] && break
  python3 -c "import sys; sys.exit(float(sys.argv[1]) > 300)" "$(since "$T_DOWN")" \
    || die "scale-down did not finish within 5 minutes"
done
DOWN_WALL=$(since "$T_DOWN")
echo "   scale-down answered HTTP $(cat "$S/answer-down.code"):"
answer "$S/answer-down.json"
[ "$(cat "$S/answer-down.code")" = 200 ] || die "scale-down failed"
step "BACK TO THE SEED ONLY, ${DOWN_WALL}s after the alarm"
echo '{"pgsurge": 1, "kind": "tick"}' >"$S/tick.json"
echo "   reconcile tick (converges HAProxy, rotates snapshots; should find nothing to repair):"
code=$(post reconcile "$S/tick.json" "$S/answer-reconcile.json")
answer "$S/answer-reconcile.json"
sleep 2
show

# --- 8. results --------------------------------------------------------------------------------
touch "$S/stop-reads"
[ ! -e "$S/run/write-load.pid" ] || { stop_pidfile "$S/run/write-load.pid"; rm -f "$S/run/write-load.pid"; }
for i in 1 2; do
  for _ in $(seq 100); do alive "$(cat "$S/run/read-load$i.pid")" || break; sleep 0.1; done
  rm -f "$S/run/read-load$i.pid"
done
left=$(find "$POOL/servers" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
echo
echo "================================ pgsurge demo: results ================================"
echo " per-phase durations (pgsurge_phase_duration_seconds from the functions' /metrics):"
$STATUS timings $((PORT[scale-up] + 20)) $((PORT[instance-ready] + 20)) $((PORT[scale-down] + 20)) $((PORT[reconcile] + 20))
echo " wall time, as the demo saw it:"
printf '  %-52s %7ss\n' \
  "alarm -> scale-up answered (snapshot, clones, boots)" "$UP_ANSWER" \
  "answered -> both serving ($([ "$SERVERS" = vm ] && echo "VMs boot, call back" || echo "instance-ready ticks"))" "$(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.1f}')" "$UP_WALL" "$UP_ANSWER")" \
  "alarm -> $N new replicas serving (total)" "$UP_WALL" \
  "scale-down alarm -> seed only" "$DOWN_WALL" \
  "whole demo (before cleanup)" "$(since "$T0")"
echo " read load through HAProxy: $($STATUS reads "$LOGS/read-load1.log" "$LOGS/read-load2.log")"
echo " servers left in the pool: $left (the seed)"
echo "======================================================================================"
