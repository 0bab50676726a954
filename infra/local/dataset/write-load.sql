-- pgbench custom script: the write load run on the primary while replicas are cloned.
-- Each transaction updates a run of :batch rows of a random table and upserts one row.
-- Variables (pgbench -D): tables, rows (see catalog.dataset), batch. load.sh sets them.
\set t random(1, :tables)
\set k random(1, :rows)
SELECT catalog.write_batch(:t, :k, :batch);
