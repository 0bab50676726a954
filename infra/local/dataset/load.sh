#!/usr/bin/env bash
# The write load on the catalog dataset: pgbench running write-load.sql against the
# primary. Replaces itself with pgbench (exec), so its pid is pgbench's: stop it with
# `kill <pid>`.
#
#   load.sh [--conn CONNINFO] [--db catalog] [--clients 4] [--threads 2] [--seconds 60]
#           [--rate TPS] [--batch 10] [--progress 10]
#
#   --rate   limit to TPS transactions per second in total (default: as fast as it goes)
#   --batch  rows updated per transaction (default 10)
#   --progress  seconds between pgbench progress lines on stderr (default 10)
# Table count and rows per table are read from catalog.dataset (written by generate.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conn=${PGSURGE_DATASET_CONN:-"host=127.0.0.1 port=5432 user=postgres"}
db=catalog clients=4 threads=2 seconds=60 rate='' batch=10 progress=10
while [ $# -gt 0 ]; do
  case $1 in
    --conn) conn=$2; shift 2 ;;
    --db) db=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --progress) progress=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "load.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in clients threads seconds batch progress; do
  [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] || { echo "load.sh: --$v must be a positive integer" >&2; exit 2; }
done
[ -z "$rate" ] || [[ $rate =~ ^[0-9]+$ ]] || { echo "load.sh: --rate must be a positive integer" >&2; exit 2; }
pgbench=$(command -v pgbench || echo /usr/lib/postgresql/15/bin/pgbench)
[ -x "$pgbench" ] || { echo "load.sh: pgbench not found: apt-get install postgresql-15" >&2; exit 2; }

read -r tables rows < <(psql -X -A -t -F ' ' -v ON_ERROR_STOP=1 -d "$conn dbname=$db" \
  -c "SELECT tables, rows_per_table FROM catalog.dataset")
[ -n "${rows:-}" ] || { echo "load.sh: no catalog.dataset in $db: run generate.sh first" >&2; exit 2; }

args=(-n -f "$here/write-load.sql" -D "tables=$tables" -D "rows=$rows" -D "batch=$batch"
  -c "$clients" -j "$threads" -T "$seconds" -P "$progress")
[ -z "$rate" ] || args+=(-R "$rate")
exec "$pgbench" "${args[@]}" "$conn dbname=$db"
