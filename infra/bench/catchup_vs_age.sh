#!/usr/bin/env bash
# Bench: catch-up time vs snapshot age under a steady write load — what
# `ops.snapshot_interval_secs` trades (README "Snapshots ahead of time and pre-warm").
# On the local provider's XFS reflink pool: each round takes a snapshot of the seed and
# clones it when it is AGES seconds old, boots the clone and waits until it is caught up
# (the product's readiness). Prints a table of medians (min–max) with the write rate and
# the primary's WAL/s; writes target/bench/catchup_vs_age.csv.
#
#   AGES="0 30 120 300" RUNS=3 RATE=100 bash infra/bench/catchup_vs_age.sh
#
#   AGES       snapshot ages, seconds, increasing (default "0 30 120 300"; a round lasts
#              the largest plus ~15 s per age)
#   SIZE_MB    catalog dataset size (default 1024), TABLES (default 4500)
#   RUNS       rounds (default 3)
#   RATE       write load, transactions/s of 10 rows each (default 100)
#   BENCH_DIR, XFS_SIZE, PORT_FIRST: see clone_bench_run.sh
#
# Needs root. About 20 min at the defaults on two cores.
set -euo pipefail
ages=${AGES:-0 30 120 300}
exec bash "$(dirname "$0")/clone_bench_run.sh" --mode catchup --ages "${ages// /,}" \
  --sizes-mb "${SIZE_MB:-1024}" --tables "${TABLES:-4500}" --runs "${RUNS:-3}" --rate "${RATE:-100}"
