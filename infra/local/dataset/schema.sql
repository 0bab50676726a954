-- The "catalog" dataset: helper objects created once per database by generate.sh.
-- Tables catalog.item_00001 .. item_NNNNN are made by catalog.make_tables().

CREATE SCHEMA IF NOT EXISTS catalog;

-- What was generated, for the write load and for readers.
CREATE TABLE IF NOT EXISTS catalog.dataset (
    tables int NOT NULL,
    rows_per_table int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION catalog.item_table(t int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'item_' || lpad(t::text, 5, '0') $$;

-- Create and fill tables first..last, committing every 25 so a 4,500-table run never
-- holds thousands of locks in one transaction.
CREATE OR REPLACE PROCEDURE catalog.make_tables(first int, last int, nrows int)
LANGUAGE plpgsql AS $$
DECLARE
    t int;
BEGIN
    FOR t IN first..last LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS catalog.%I (
                 id bigint PRIMARY KEY,
                 sku text NOT NULL,
                 price numeric(12,2) NOT NULL,
                 stock int NOT NULL,
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 payload text NOT NULL)', catalog.item_table(t));
        -- 192 characters of md5 hex: incompressible enough that size on disk is real.
        EXECUTE format(
            'INSERT INTO catalog.%I (id, sku, price, stock, payload)
             SELECT g, %L || g, (g %% 100000) / 100.0, g %% 500,
                    repeat(md5(g::text || %L), 6)
             FROM generate_series(1, %s) g
             ON CONFLICT (id) DO NOTHING',
            catalog.item_table(t), 'SKU-' || t || '-', t::text, nrows);
        IF t % 25 = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
END $$;

-- One unit of write load: update a run of n rows of table t from id k on, and upsert one
-- row past the generated ids (so tables also grow). Used by write-load.sql.
CREATE OR REPLACE FUNCTION catalog.write_batch(t int, k int, n int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tbl text := catalog.item_table(t);
BEGIN
    EXECUTE format(
        'UPDATE catalog.%I SET price = price + 0.01, stock = stock + 1, updated_at = now(),
                payload = md5(random()::text) || substr(payload, 33)
         WHERE id >= $1 AND id < $1 + $2', tbl) USING k, n;
    EXECUTE format(
        'INSERT INTO catalog.%1$I AS i (id, sku, price, stock, payload)
         VALUES ($1, $2, 1, 1, repeat(md5($2), 6))
         ON CONFLICT (id) DO UPDATE SET stock = i.stock + 1, updated_at = now()', tbl)
        USING k + 1000000, 'SKU-NEW-' || k;
END $$;

-- Row count and md5 of one table's rows in id order.
CREATE OR REPLACE FUNCTION catalog.table_checksum(t int, OUT nrows bigint, OUT md5 text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    EXECUTE format(
        'SELECT count(*), md5(coalesce(string_agg(x::text, E''\n'' ORDER BY id), ''''))
         FROM catalog.%I x', catalog.item_table(t)) INTO nrows, md5;
END $$;

-- Tables, rows and one md5 over every item table (table checksums chained in name order).
CREATE OR REPLACE FUNCTION catalog.checksum(OUT tables int, OUT total_rows bigint, OUT md5 text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r record;
    n bigint;
    h text;
BEGIN
    tables := 0;
    total_rows := 0;
    md5 := '';
    FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
             WHERE s.nspname = 'catalog' AND c.relkind = 'r' AND c.relname LIKE 'item\_%'
             ORDER BY c.relname LOOP
        EXECUTE format(
            'SELECT count(*), md5(coalesce(string_agg(x::text, E''\n'' ORDER BY id), ''''))
             FROM catalog.%I x', r.relname) INTO n, h;
        tables := tables + 1;
        total_rows := total_rows + n;
        md5 := md5(md5 || h);
    END LOOP;
END $$;
