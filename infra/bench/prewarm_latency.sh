#!/usr/bin/env bash
# Bench: a new replica's first-minute read latency through HAProxy, slowstart alone vs
# slowstart + pre-warm (`[ops.prewarm]`: pg_prewarm of the hot tables and their indexes
# after caught up, before registration). The OS page cache is dropped before each replica
# is made, the variants alternate run by run; readers run through HAProxy at a fixed rate
# (a new connection per query, an index lookup in a random hot table) and the latencies
# of the queries the NEW replica served are kept. Prints a table of medians (min–max);
# writes target/bench/prewarm_latency.csv (per run and 10 s bucket).
#
#   RUNS=3 HOT_TABLES=1500 READ_RATE=100 bash infra/bench/prewarm_latency.sh
#
#   RUNS        runs per variant (default 3)
#   SIZE_MB     catalog dataset size (default 1024), TABLES (default 4500)
#   HOT_TABLES  tables item_00001.. that are read and pre-warmed (default 1500: about a
#               third of the dataset, several times the replicas' 64 MB shared_buffers)
#   READ_RATE   queries/s through HAProxy (default 100), WATCH_SECS (default 60)
#   SLOWSTART_SECS  HAProxy slowstart of the new server (default 30, the product's)
#   RATE        write load on the primary, transactions/s (default 100)
#   BENCH_DIR, XFS_SIZE, PORT_FIRST: see clone_bench_run.sh
#
# Needs root (drop_caches). About 12 min at the defaults on two cores.
set -euo pipefail
exec bash "$(dirname "$0")/clone_bench_run.sh" --mode prewarm \
  --sizes-mb "${SIZE_MB:-1024}" --tables "${TABLES:-4500}" --runs "${RUNS:-3}" --rate "${RATE:-100}" \
  --hot-tables "${HOT_TABLES:-1500}" --read-rate "${READ_RATE:-100}" --watch-secs "${WATCH_SECS:-60}" \
  --slowstart-secs "${SLOWSTART_SECS:-30}" --prewarm-budget 120
