#!/usr/bin/env bash
# Generate the "catalog" demo/test dataset on a PostgreSQL primary: like the production
# seed, many tables (default 4,500) of product rows, to a total size you choose.
#
#   generate.sh [--conn CONNINFO] [--db catalog] [--tables 4500] [--size-mb 1024]
#               [--jobs 2] [--recreate]
#
#   --conn     libpq key=value connection string to the primary, without dbname
#              (default: $PGSURGE_DATASET_CONN or "host=127.0.0.1 port=5432 user=postgres")
#   --db       database to create/fill (default catalog)
#   --tables   number of tables catalog.item_00001.. (1..99999, default 4500)
#   --size-mb  approximate size of tables + indexes in MiB (default 1024)
#   --jobs     parallel sessions creating tables (default 2)
#   --recreate drop the database first (otherwise an existing dataset is completed)
#
# Each table: id bigint primary key, sku, price, stock, updated_at, payload (192 chars),
# rows_per_table = size / (tables x ~330 bytes). Afterwards VACUUM ANALYZE (so tables
# have their visibility/free-space maps, like a live database) and a summary line:
#   tables=4500 rows_per_table=723 db_size_mb=1041
# The write load for this dataset: load.sh (pgbench with write-load.sql).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

conn=${PGSURGE_DATASET_CONN:-"host=127.0.0.1 port=5432 user=postgres"}
db=catalog tables=4500 size_mb=1024 jobs=2 recreate=0
while [ $# -gt 0 ]; do
  case $1 in
    --conn) conn=$2; shift 2 ;;
    --db) db=$2; shift 2 ;;
    --tables) tables=$2; shift 2 ;;
    --size-mb) size_mb=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --recreate) recreate=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "generate.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
bad() { echo "generate.sh: $*" >&2; exit 2; }
[[ $db =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || bad "--db must be a plain lower-case name (got $db)"
[[ $tables =~ ^[0-9]+$ ]] && [ "$tables" -ge 1 ] && [ "$tables" -le 99999 ] || bad "--tables must be 1..99999 (got $tables)"
[[ $size_mb =~ ^[0-9]+$ ]] && [ "$size_mb" -ge 1 ] || bad "--size-mb must be a positive integer (got $size_mb)"
[[ $jobs =~ ^[0-9]+$ ]] && [ "$jobs" -ge 1 ] && [ "$jobs" -le 64 ] || bad "--jobs must be 1..64 (got $jobs)"
command -v psql >/dev/null || bad "psql not found: apt-get install postgresql-client-15"

psql_() { psql -X -q -v ON_ERROR_STOP=1 -d "$conn dbname=$1" "${@:2}"; }

if [ $recreate = 1 ]; then
  psql_ postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
fi
if [ "$(psql_ postgres -A -t -c "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
  psql_ postgres -c "CREATE DATABASE $db"
fi
psql_ "$db" -f "$here/schema.sql"

rows=$(( size_mb * 1048576 / (tables * 330) ))
[ "$rows" -ge 1 ] || rows=1
psql_ "$db" -c "DELETE FROM catalog.dataset; INSERT INTO catalog.dataset (tables, rows_per_table) VALUES ($tables, $rows)"

start=$(date +%s)
pids=()
per=$(( (tables + jobs - 1) / jobs ))
for ((j = 0; j < jobs; j++)); do
  first=$(( j * per + 1 ))
  last=$(( (j + 1) * per ))
  [ $last -le "$tables" ] || last=$tables
  [ $first -le $last ] || continue
  psql_ "$db" -c "CALL catalog.make_tables($first, $last, $rows)" &
  pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
[ $failed = 0 ] || { echo "generate.sh: a table-creating session failed" >&2; exit 1; }
psql_ "$db" -c "VACUUM ANALYZE"

size=$(psql_ "$db" -A -t -c "SELECT pg_database_size(current_database()) / 1048576")
echo "tables=$tables rows_per_table=$rows db_size_mb=$size secs=$(( $(date +%s) - start ))"
