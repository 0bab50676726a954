#!/usr/bin/env bash
# bootstrap-replica.sh — turn a PostgreSQL data directory restored from a snapshot of a
# replica's volume into a streaming standby of the primary, and start it.
#
# The cloud image runs this at boot with the server's user data; pgsurge's local provider
# runs the very same script for each of its servers, so it is tested for real.
#
# Usage: bootstrap-replica.sh [PARAMS_FILE]      (default /etc/pgsurge/bootstrap.env)
#
# PARAMS_FILE holds one KEY=VALUE per line. Blank lines and lines starting with '#' are
# ignored. The value is everything after the first '=', taken literally: no quotes, no
# variable expansion, nothing is ever evaluated. Unknown or repeated keys are errors.
#
#   key                   default                      meaning
#   PGDATA                (required)                   data directory on the volume
#   PRIMARY_HOST          (required)                   primary, as this server reaches it
#   PRIMARY_PORT          5432
#   REPLICATION_USER      (required)                   role with REPLICATION
#   REPLICATION_PASSWORD  (none)                       its password (keep it out of cloud user
#                                                      data: the image or provider adds it)
#   REPLICATION_PASSFILE  (none)                       or a pgpass file with it
#   PRIMARY_SSLMODE       prefer                       disable|allow|prefer|require|verify-ca|verify-full
#   PRIMARY_SSLROOTCERT   (libpq's default)            CA file (on this server) the primary's
#                                                      certificate must chain to (verify-ca/-full)
#   PRIMARY_SLOT_NAME     (none)                       physical slot on the primary
#   CLUSTER_NAME          (hostname)                   cluster_name (process titles, logs)
#   APPLICATION_NAME      CLUSTER_NAME                 name in the primary's pg_stat_replication
#   PORT                  5432                         port this server listens on
#   LISTEN_ADDRESSES      *
#   SOCKET_DIR            /var/run/postgresql          empty: no Unix socket
#   HOT_STANDBY_FEEDBACK  (unchanged)                  on|off
#   RESTORE_COMMAND       (none)                       fetch WAL from an archive
#   RECOVERY_INIT_SYNC_METHOD  syncfs                  fsync|syncfs: how PostgreSQL syncs the
#                                                      data directory before crash recovery
#                                                      (a clone starts with one: syncfs is one
#                                                      call instead of an fsync per file)
#   PG_BIN                /usr/lib/postgresql/15/bin
#   PG_USER               postgres                     OS user that runs PostgreSQL
#   LOG_FILE              /var/log/postgresql/pgsurge-replica.log   server log (pg_ctl -l)
#   START                 yes                          no: prepare only
#   START_TIMEOUT         60                           seconds to wait for the server to start
#
# What it does, in order (parameters are all checked before anything is changed):
#   1. if PostgreSQL already runs on PGDATA: say so and exit 0 (a re-run is harmless);
#   2. remove stale state carried over from the source server: postmaster.pid/.opts,
#      recovery/standby signal files, recovery.conf, replication slots, temp files
#      (backup_label and tablespace_map, if the snapshot has them, are kept: they tell
#      recovery where a consistent start is);
#   3. rewrite the per-replica settings in postgresql.auto.conf (port, listen addresses,
#      socket dir, cluster_name, primary_conninfo, ...) and create standby.signal;
#   4. start PostgreSQL with pg_ctl and wait until it accepts connections. If it is still
#      replaying after START_TIMEOUT it is left running (exit 0, message says so).
#
# Exit status: 0 started / already running / prepared; 1 failed (log tail on stderr);
# 2 bad parameters (nothing changed). The password is never printed.
set -euo pipefail

say() { printf 'bootstrap-replica: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
bad() { say "bad parameters: $*"; exit 2; }

KEYS=(PGDATA PRIMARY_HOST PRIMARY_PORT REPLICATION_USER REPLICATION_PASSWORD
  REPLICATION_PASSFILE PRIMARY_SSLMODE PRIMARY_SSLROOTCERT PRIMARY_SLOT_NAME CLUSTER_NAME APPLICATION_NAME
  PORT LISTEN_ADDRESSES SOCKET_DIR HOT_STANDBY_FEEDBACK RESTORE_COMMAND
  RECOVERY_INIT_SYNC_METHOD PG_BIN PG_USER LOG_FILE START START_TIMEOUT)

params=${1:-/etc/pgsurge/bootstrap.env}
[ -r "$params" ] || bad "cannot read parameters file $params"

# --- 0. read and check every parameter ------------------------------------------------
declare -A P=()
n=0
while IFS= read -r line || [ -n "$line" ]; do
  n=$((n + 1))
  line=${line%$'\r'}
  [[ -z ${line//[[:space:]]/} || $line == \#* ]] && continue
  [[ $line =~ ^([A-Z][A-Z0-9_]*)=(.*)$ ]] || bad "$params line $n: expected KEY=VALUE"
  key=${BASH_REMATCH[1]}
  val=${BASH_REMATCH[2]}
  known=0
  for k in "${KEYS[@]}"; do [ "$k" = "$key" ] && known=1; done
  [ $known = 1 ] || bad "$params line $n: unknown key $key"
  [ -z "${P[$key]+set}" ] || bad "$params line $n: $key given twice"
  P[$key]=$val
done <"$params"

get() { printf '%s' "${P[$1]-$2}"; }
need() { [ -n "${P[$1]-}" ] || bad "$1 is required"; printf '%s' "${P[$1]}"; }
match() { [[ $2 =~ $3 ]] || bad "$1=${2@Q} is invalid (expected $4)"; }
port_ok() { match "$1" "$2" '^[0-9]{1,5}$' "a port number"; [ "$2" -ge 1 ] && [ "$2" -le 65535 ] || bad "$1=$2 is outside 1..65535"; }

PGDATA=$(need PGDATA)
PRIMARY_HOST=$(need PRIMARY_HOST)
PRIMARY_PORT=$(get PRIMARY_PORT 5432)
REPLICATION_USER=$(need REPLICATION_USER)
REPLICATION_PASSWORD=$(get REPLICATION_PASSWORD '')
REPLICATION_PASSFILE=$(get REPLICATION_PASSFILE '')
PRIMARY_SSLMODE=$(get PRIMARY_SSLMODE prefer)
PRIMARY_SSLROOTCERT=$(get PRIMARY_SSLROOTCERT '')
PRIMARY_SLOT_NAME=$(get PRIMARY_SLOT_NAME '')
CLUSTER_NAME=$(get CLUSTER_NAME "$(hostname -s)")
APPLICATION_NAME=$(get APPLICATION_NAME "$CLUSTER_NAME")
PORT=$(get PORT 5432)
LISTEN_ADDRESSES=$(get LISTEN_ADDRESSES '*')
SOCKET_DIR=$(get SOCKET_DIR /var/run/postgresql)
HOT_STANDBY_FEEDBACK=$(get HOT_STANDBY_FEEDBACK '')
RESTORE_COMMAND=$(get RESTORE_COMMAND '')
RECOVERY_INIT_SYNC_METHOD=$(get RECOVERY_INIT_SYNC_METHOD syncfs)
PG_BIN=$(get PG_BIN /usr/lib/postgresql/15/bin)
PG_USER=$(get PG_USER postgres)
LOG_FILE=$(get LOG_FILE /var/log/postgresql/pgsurge-replica.log)
START=$(get START yes)
START_TIMEOUT=$(get START_TIMEOUT 60)

match PGDATA "$PGDATA" '^/' "an absolute path"
[ -f "$PGDATA/PG_VERSION" ] || bad "PGDATA=$PGDATA is not a PostgreSQL data directory (no PG_VERSION)"
match PRIMARY_HOST "$PRIMARY_HOST" '^[A-Za-z0-9._:-]+$' "a host name or IP address"
port_ok PRIMARY_PORT "$PRIMARY_PORT"
port_ok PORT "$PORT"
match REPLICATION_USER "$REPLICATION_USER" '^[A-Za-z_][A-Za-z0-9_.-]{0,62}$' "a role name"
[ -z "$REPLICATION_PASSFILE" ] || match REPLICATION_PASSFILE "$REPLICATION_PASSFILE" '^/' "an absolute path"
match PRIMARY_SSLMODE "$PRIMARY_SSLMODE" '^(disable|allow|prefer|require|verify-ca|verify-full)$' "an sslmode"
[ -z "$PRIMARY_SSLROOTCERT" ] || match PRIMARY_SSLROOTCERT "$PRIMARY_SSLROOTCERT" '^/[A-Za-z0-9._/-]*$' "an absolute path"
[ -z "$PRIMARY_SLOT_NAME" ] || match PRIMARY_SLOT_NAME "$PRIMARY_SLOT_NAME" '^[a-z0-9_]{1,63}$' "a slot name"
match CLUSTER_NAME "$CLUSTER_NAME" '^[A-Za-z0-9_.-]{1,63}$' "1-63 of A-Z a-z 0-9 _ . -"
match APPLICATION_NAME "$APPLICATION_NAME" '^[A-Za-z0-9_.-]{1,63}$' "1-63 of A-Z a-z 0-9 _ . -"
match LISTEN_ADDRESSES "$LISTEN_ADDRESSES" '^[A-Za-z0-9.:*, -]+$' "addresses separated by commas"
[ -z "$SOCKET_DIR" ] || match SOCKET_DIR "$SOCKET_DIR" '^/[A-Za-z0-9._/-]*$' "an absolute path"
match RECOVERY_INIT_SYNC_METHOD "$RECOVERY_INIT_SYNC_METHOD" '^(fsync|syncfs)$' "fsync or syncfs"
[ -z "$HOT_STANDBY_FEEDBACK" ] || match HOT_STANDBY_FEEDBACK "$HOT_STANDBY_FEEDBACK" '^(on|off)$' "on or off"
match PG_BIN "$PG_BIN" '^/' "an absolute path"
[ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/postgres" ] || bad "PG_BIN=$PG_BIN has no pg_ctl/postgres (install postgresql-15)"
id -u "$PG_USER" >/dev/null 2>&1 || bad "PG_USER=$PG_USER is not a user on this machine"
match LOG_FILE "$LOG_FILE" '^/' "an absolute path"
match START "$START" '^(yes|no)$' "yes or no"
match START_TIMEOUT "$START_TIMEOUT" '^[0-9]{1,4}$' "seconds"
[ "$START_TIMEOUT" -ge 1 ] && [ "$START_TIMEOUT" -le 3600 ] || bad "START_TIMEOUT=$START_TIMEOUT is outside 1..3600"

me=$(id -un)
[ "$me" = "$PG_USER" ] || [ "$(id -u)" = 0 ] || bad "run as root or as $PG_USER (running as $me)"

# Run a PostgreSQL program as PG_USER (PostgreSQL refuses to run as root).
as_pg() { if [ "$me" = "$PG_USER" ]; then "$@"; else runuser -u "$PG_USER" -- "$@"; fi; }

# --- 1. already running? ----------------------------------------------------------------
if as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  say "PostgreSQL already runs on $PGDATA (pid $(head -n1 "$PGDATA/postmaster.pid")); nothing to do"
  exit 0
fi

# --- 2. stale state from the source server ---------------------------------------------
# pg_ctl status found no live postmaster, so a postmaster.pid is left over from the
# server the snapshot was taken of (or a crash): PostgreSQL would refuse to start if the
# recorded pid happened to be alive.
rm -f "$PGDATA/postmaster.pid" "$PGDATA/postmaster.opts" \
  "$PGDATA/recovery.signal" "$PGDATA/standby.signal" "$PGDATA/recovery.conf" \
  "$PGDATA/recovery.done" "$PGDATA/postgresql.auto.conf.tmp"
# Slots of the source would pin WAL on this server forever.
[ -d "$PGDATA/pg_replslot" ] && find "$PGDATA/pg_replslot" -mindepth 1 -delete
[ -d "$PGDATA/pg_stat_tmp" ] && find "$PGDATA/pg_stat_tmp" -mindepth 1 -delete
find "$PGDATA/base" -maxdepth 2 -name 'pgsql_tmp*' -prune -exec rm -rf {} + 2>/dev/null || true

# --- 3. per-replica settings --------------------------------------------------------------
# A postgresql.conf string: ' and \ doubled.
conf_quote() { local s=$1; s=${s//\\/\\\\}; s=${s//\'/\'\'}; printf "'%s'" "$s"; }
# A libpq connection-string value: ' and \ backslash-escaped.
ci_quote() { local s=$1; s=${s//\\/\\\\}; s=${s//\'/\\\'}; printf "'%s'" "$s"; }

conninfo="host=$(ci_quote "$PRIMARY_HOST") port=$PRIMARY_PORT user=$(ci_quote "$REPLICATION_USER")"
conninfo+=" application_name=$(ci_quote "$APPLICATION_NAME") sslmode=$PRIMARY_SSLMODE"
[ -z "$REPLICATION_PASSWORD" ] || conninfo+=" password=$(ci_quote "$REPLICATION_PASSWORD")"
[ -z "$REPLICATION_PASSFILE" ] || conninfo+=" passfile=$(ci_quote "$REPLICATION_PASSFILE")"
[ -z "$PRIMARY_SSLROOTCERT" ] || conninfo+=" sslrootcert=$(ci_quote "$PRIMARY_SSLROOTCERT")"

managed='port|listen_addresses|unix_socket_directories|cluster_name|primary_conninfo|primary_slot_name|restore_command|hot_standby|hot_standby_feedback|recovery_init_sync_method|recovery_target[a-z_]*'
auto="$PGDATA/postgresql.auto.conf"
tmp="$PGDATA/postgresql.auto.conf.pgsurge-tmp"
{
  # Keep every other setting (ALTER SYSTEM's, the source's); drop ours and our old marker.
  if [ -f "$auto" ]; then
    grep -Eiv "^[[:space:]]*($managed)[[:space:]]*(=|[[:space:]])|^# pgsurge bootstrap-replica" "$auto" || true
  fi
  printf '# pgsurge bootstrap-replica.sh %s: per-replica settings, rewritten at every bootstrap\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf 'port = %s\n' "$PORT"
  printf 'listen_addresses = %s\n' "$(conf_quote "$LISTEN_ADDRESSES")"
  printf 'unix_socket_directories = %s\n' "$(conf_quote "$SOCKET_DIR")"
  printf 'cluster_name = %s\n' "$(conf_quote "$CLUSTER_NAME")"
  printf 'hot_standby = on\n'
  printf 'recovery_init_sync_method = %s\n' "$RECOVERY_INIT_SYNC_METHOD"
  printf 'primary_conninfo = %s\n' "$(conf_quote "$conninfo")"
  [ -z "$PRIMARY_SLOT_NAME" ] || printf 'primary_slot_name = %s\n' "$(conf_quote "$PRIMARY_SLOT_NAME")"
  [ -z "$RESTORE_COMMAND" ] || printf 'restore_command = %s\n' "$(conf_quote "$RESTORE_COMMAND")"
  [ -z "$HOT_STANDBY_FEEDBACK" ] || printf 'hot_standby_feedback = %s\n' "$HOT_STANDBY_FEEDBACK"
} >"$tmp"
pg_uid=$(id -u "$PG_USER")
pg_gid=$(id -g "$PG_USER")
# The volume may come from a cloud that maps owners differently; PostgreSQL insists on
# owning its data directory with no group/other write access.
[ "$(stat -c %u "$PGDATA")" = "$pg_uid" ] || chown -R "$pg_uid:$pg_gid" "$PGDATA"
chmod 0700 "$PGDATA"
chown "$pg_uid:$pg_gid" "$tmp"
chmod 0600 "$tmp"
mv -f "$tmp" "$auto"
: >"$PGDATA/standby.signal"
chown "$pg_uid:$pg_gid" "$PGDATA/standby.signal"

if [ -n "$SOCKET_DIR" ]; then
  mkdir -p "$SOCKET_DIR"
  chown "$pg_uid:$pg_gid" "$SOCKET_DIR"
fi
mkdir -p "$(dirname "$LOG_FILE")"
touch "$LOG_FILE"
chown "$pg_uid:$pg_gid" "$LOG_FILE"
say "prepared $PGDATA as a standby of $PRIMARY_HOST:$PRIMARY_PORT (port $PORT, cluster_name $CLUSTER_NAME)"

[ "$START" = yes ] || { say "START=no: not starting"; exit 0; }

# --- 4. start -------------------------------------------------------------------------------
if as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOG_FILE" -w -t "$START_TIMEOUT" start >/dev/null; then
  say "started: pid $(head -n1 "$PGDATA/postmaster.pid"), accepting connections on port $PORT"
  exit 0
fi
if as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  say "still starting after ${START_TIMEOUT}s (replaying WAL); left running: pid $(head -n1 "$PGDATA/postmaster.pid")"
  exit 0
fi
say "PostgreSQL did not start; last lines of $LOG_FILE:"
tail -n 20 "$LOG_FILE" >&2 || true
exit 1
