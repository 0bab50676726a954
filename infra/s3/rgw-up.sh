#!/usr/bin/env bash
# Start a single-node Ceph RADOS Gateway (S3) on loopback, in the background, for tests.
#
#   infra/s3/rgw-up.sh [--fresh]
#
# One monitor, one OSD on memstore (RAM), no manager, cephx off, pool size 1, and
# radosgw (beast) on 127.0.0.1:$PGSURGE_S3_PORT. Then an S3 user and the test buckets.
# Why Ceph RGW: it is what many OpenStack clouds run for object storage, it installs from
# Debian, and it enforces conditional writes atomically (see README, "State store").
#
# Environment (all optional):
#   PGSURGE_S3_PORT       RGW port            (default 22480)
#   PGSURGE_CEPH_MON_PORT monitor port        (default 22789)
#   PGSURGE_CEPH_PORTS    OSD/msgr port range (default 22800-22899)
#   PGSURGE_CEPH_DIR      data, logs, pidfiles (default ${TMPDIR:-/tmp}/pgsurge-ceph-$PGSURGE_S3_PORT)
#   PGSURGE_S3_AK / PGSURGE_S3_SK  S3 keys    (default pgsurge-test / pgsurge-test-secret)
#   PGSURGE_S3_BUCKETS    buckets to create   (default "pgsurge-test")
#
# Idempotent: when every daemon in the pidfiles is alive and RGW answers, it only
# (re)creates missing buckets. memstore keeps data in RAM, so if any daemon died the
# survivors are stopped (by pidfile) and the cluster is rebuilt (~15 s). --fresh forces it.
# Writes $PGSURGE_CEPH_DIR/env with the endpoint and keys. Stop with infra/s3/rgw-down.sh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PORT="${PGSURGE_S3_PORT:-22480}"
MON_PORT="${PGSURGE_CEPH_MON_PORT:-22789}"
PORTS="${PGSURGE_CEPH_PORTS:-22800-22899}"
DIR="${PGSURGE_CEPH_DIR:-${TMPDIR:-/tmp}/pgsurge-ceph-$PORT}"
AK="${PGSURGE_S3_AK:-pgsurge-test}"
SK="${PGSURGE_S3_SK:-pgsurge-test-secret}"
BUCKETS="${PGSURGE_S3_BUCKETS:-pgsurge-test}"
ENDPOINT="http://127.0.0.1:$PORT"
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
export CEPH_CONF="$DIR/ceph.conf"

for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool curl; do
  if ! command -v "$bin" >/dev/null; then
    echo "rgw-up: '$bin' not found: install Debian packages ceph-mon ceph-osd radosgw ceph-common curl" >&2
    echo "        (as root: bash infra/local/deps.sh, which the Justfile's test recipe runs)" >&2
    exit 1
  fi
done

alive() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

wait_for() { # seconds, description, command...
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "rgw-up: timed out after ${secs}s waiting for $what; logs in $DIR" >&2
      tail -n 20 "$DIR"/*.log "$DIR"/*.stdout >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.3
  done
}

make_buckets() {
  local b code
  for b in $BUCKETS; do
    # curl signs with SigV4 itself; RGW also wants the payload hash header (empty body).
    code="$(curl -s -o "$DIR/bucket-$b.out" -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
      -H "x-amz-content-sha256: $EMPTY_SHA256" --user "$AK:$SK" -X PUT "$ENDPOINT/$b")"
    case "$code" in
      200|409) ;;
      *) echo "rgw-up: creating bucket $b answered HTTP $code: $(cat "$DIR/bucket-$b.out")" >&2; exit 1 ;;
    esac
  done
}

write_env() {
  cat >"$DIR/env" <<ENV
PGSURGE_S3_ENDPOINT=$ENDPOINT
PGSURGE_S3_AK=$AK
PGSURGE_S3_SK=$SK
PGSURGE_S3_BUCKETS=$BUCKETS
ENV
}

if [ "${1:-}" != "--fresh" ] && alive mon.a && alive osd.0 && alive rgw.a \
   && curl -s -o /dev/null "$ENDPOINT/"; then
  make_buckets
  write_env
  echo "ceph rgw already up: $ENDPOINT (dir $DIR)"
  exit 0
fi

started=$SECONDS
"$HERE/rgw-down.sh" >/dev/null || true
rm -rf "$DIR"
mkdir -p "$DIR/mon.a" "$DIR/osd.0" "$DIR/rgw.a"
FSID="$(cat /proc/sys/kernel/random/uuid)"
cat >"$CEPH_CONF" <<CONF
[global]
fsid = $FSID
mon_host = v1:127.0.0.1:$MON_PORT
public_addr = 127.0.0.1
ms_bind_ipv6 = false
ms_bind_port_min = ${PORTS%-*}
ms_bind_port_max = ${PORTS#*-}
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $DIR
log_file = $DIR/\$name.log
admin_socket = $DIR/\$name.asok
mon_data = $DIR/mon.\$id
osd_data = $DIR/osd.\$id
keyring = $DIR/keyring
osd_objectstore = memstore
# RAM is used only for what is written; 8 GiB leaves room for the OpenStack test
# cloud's RBD volumes (tests/openstack/up.sh) beside the S3 buckets
memstore_device_bytes = 8589934592
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
mon_data_avail_warn = 1
mon_data_avail_crit = 0
osd_max_object_name_len = 460
osd_max_object_namespace_len = 64
debug_ms = 0

# Clients (the ceph and rbd CLIs, cinder-volume's RBD driver, radosgw) get one admin
# socket per process: with one shared client.admin.asok, two concurrent commands (two
# Cinder attachments at once) fought over it and one failed ("failed to bind ...
# client.admin.asok: File exists", then "EPERM: problem getting command descriptions"),
# and a VM's volume attachment with it (a CI run on 2026-12-07).
[client]
admin_socket = $DIR/\$name.\$pid.asok

[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$PORT
rgw_data = $DIR/rgw.a
rgw_dns_name = localhost
rgw_enable_usage_log = false
CONF

ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
# --addv with an explicit v1 address: on a non-default port monmaptool would assume msgr v2.
monmaptool --create --fsid "$FSID" --addv a "[v1:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" >"$DIR/mon.mkfs.log" 2>&1

# -f: stay in the foreground so $! is the daemon itself (the pid we may later stop).
nohup ceph-mon -f -i a >"$DIR/mon.a.stdout" 2>&1 &
echo $! >"$DIR/mon.a.pid"
wait_for 60 "the monitor" ceph -s --connect-timeout 2

OSD_UUID="$(cat /proc/sys/kernel/random/uuid)"
ID="$(ceph osd new "$OSD_UUID")"
[ "$ID" = 0 ] || { echo "rgw-up: unexpected OSD id $ID" >&2; exit 1; }
ceph-osd -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$DIR/osd.mkfs.log" 2>&1
nohup ceph-osd -f -i 0 >"$DIR/osd.0.stdout" 2>&1 &
echo $! >"$DIR/osd.0.pid"
wait_for 120 "the OSD" bash -c 'ceph osd dump 2>/dev/null | grep -q "^osd.0 up"'

nohup radosgw -f -n client.rgw.a >"$DIR/rgw.a.stdout" 2>&1 &
echo $! >"$DIR/rgw.a.pid"
wait_for 180 "radosgw on $ENDPOINT" curl -sf -o /dev/null "$ENDPOINT/"

radosgw-admin user create --uid=pgsurge-test --display-name=pgsurge-test \
  --access-key="$AK" --secret-key="$SK" >"$DIR/user.json" 2>"$DIR/user.log"
make_buckets
write_env
echo "ceph rgw up in $((SECONDS - started))s: $ENDPOINT (mon $(cat "$DIR/mon.a.pid"), osd $(cat "$DIR/osd.0.pid"), rgw $(cat "$DIR/rgw.a.pid"); dir $DIR)"
