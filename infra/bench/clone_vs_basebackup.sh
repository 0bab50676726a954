#!/usr/bin/env bash
# Bench: a new caught-up replica from (a) snapshot + copy-on-write clone + boot vs
# (b) pg_basebackup + boot, side by side on the same primary, dataset and write load,
# at several database sizes, with a plain-directory pool (plain copies) and an XFS
# reflink pool (copy-on-write). Prints a Markdown table of medians and the ratio.
#
#   SIZES_MB="1024 4096" TABLES=4500 RUNS=3 RATE=200 bash infra/bench/clone_vs_basebackup.sh
#
#   SIZES_MB   database sizes to generate (MiB of tables + indexes; default "1024 4096")
#   TABLES     tables in the catalog dataset (default 4500, like the production seed)
#   RUNS       runs per path, size and pool; medians are reported (default 3)
#   RATE       write load on the primary during every run, transactions/s of 10 rows
#              each (default 200)
#   NO_PLAIN=1 skip the plain-directory pool (at 16 GB it copies 32 GB per run and needs
#              that much more disk; it only shows that copies cost what streaming does)
#   BENCH_DIR, XFS_SIZE, NO_XFS=1, PORT_FIRST: see clone_bench_run.sh. BENCH_DIR needs
#              about 2.2x the largest size free with the XFS pool alone (NO_PLAIN=1: the
#              primary lives on the XFS filesystem and the seed shares its extents), 5x
#              with the plain pool.
#
# Needs root. Not part of CI: at the default sizes it runs for about an hour on two cores.
set -euo pipefail
sizes=${SIZES_MB:-1024 4096}
args=(--sizes-mb "${sizes// /,}" --tables "${TABLES:-4500}" --runs "${RUNS:-3}" --rate "${RATE:-200}")
[ -z "${NO_PLAIN:-}" ] || args+=(--plain off)
exec bash "$(dirname "$0")/clone_bench_run.sh" "${args[@]}"
