/* imagekit_ext 1.2 -> 1.3: one pipeline for every database */
\echo Use "ALTER EXTENSION imagekit_ext UPDATE TO '1.3'" to load this file. \quit

-- The workers of every database are started by a launcher (a library of
-- 1.3 or later needs these objects before its workers drain a queue).

-- A worker that stops (for database DDL, or because the launcher gives
-- its slot to another database) gives back the jobs it holds with lease
-- "token"; the attempt the claim counted does not count.  A job row that
-- someone holds locked is skipped, not waited for (the DDL waits for the
-- worker): it goes back when its lease is found lost.
CREATE FUNCTION imagekit.release_jobs(token bigint)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE imagekit.jobs j
       SET state = 'queued', attempts = greatest(j.attempts - 1, 0),
           next_attempt_at = now(), lease_expires_at = NULL,
           worker = NULL, lease_token = NULL, updated_at = now()
     WHERE j.id IN (SELECT h.id FROM imagekit.jobs h
                     WHERE h.state = 'in_flight' AND h.lease_token = release_jobs.token
                       FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION imagekit.release_jobs(bigint) FROM PUBLIC;

-- The launcher and the workers of every database of the cluster.
CREATE FUNCTION imagekit.worker_slots(OUT kind text, OUT pid integer, OUT datid oid,
                                      OUT state text, OUT jobs_in_flight integer)
RETURNS SETOF record
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'imagekit_worker_slots';
REVOKE ALL ON FUNCTION imagekit.worker_slots() FROM PUBLIC;

CREATE VIEW imagekit.workers AS
    SELECT w.kind, w.pid, w.datid, d.datname, w.state, w.jobs_in_flight
      FROM imagekit.worker_slots() w
      LEFT JOIN pg_catalog.pg_database d ON d.oid = w.datid;
REVOKE ALL ON imagekit.workers FROM PUBLIC;

-- Warn when no worker will drain the queue of this database.  The library
-- preloaded defines imagekit.max_workers; imagekit.workers here is this
-- database's (ALTER DATABASE ... SET), as the launcher reads it.
CREATE FUNCTION imagekit.warn_if_unserved(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    why text;
BEGIN
    IF coalesce(current_setting('imagekit.max_workers', true), '0') = '0' THEN
        why := 'imagekit_ext is not in shared_preload_libraries, or imagekit.max_workers is 0.';
    ELSIF current_setting('imagekit.database') NOT IN ('', current_database()) THEN
        why := format('imagekit.database is "%s".', current_setting('imagekit.database'));
    ELSIF current_setting('imagekit.workers') = '0' THEN
        why := 'imagekit.workers is 0 for this database.';
    ELSIF (SELECT datistemplate OR NOT datallowconn FROM pg_database
            WHERE datname = current_database()) THEN
        why := 'The workers serve no template database, nor one that does not allow connections.';
    END IF;
    IF why IS NOT NULL THEN
        RAISE WARNING 'no imagekit worker serves database "%"', current_database()
            USING DETAIL = format('Rows of "%s" are queued, but nothing uploads them until a worker serves this database.  %s', tbl, why),
                  HINT = 'Load imagekit_ext with shared_preload_libraries, and leave imagekit.database empty (or name this database) and imagekit.workers above 0.';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION imagekit.warn_if_unserved(regclass) FROM PUBLIC;

CREATE OR REPLACE FUNCTION imagekit.attach(tbl regclass,
                                           source_column name DEFAULT 'url',
                                           target_column name DEFAULT 'imagekit_url',
                                           backfill boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $attach$
DECLARE
    rel record;
    key_col name;
    key_type text;
    fn text;
    idx name;
    queued bigint := 0;
BEGIN
    SELECT c.relkind, c.relpersistence, c.relname, n.nspname
      INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tbl;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Only ordinary tables can be attached.';
    END IF;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'cannot attach temporary table "%"', tbl
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'The background worker cannot see another session''s temporary tables.';
    END IF;
    PERFORM imagekit.check_table_owner(tbl);
    IF EXISTS (SELECT 1 FROM imagekit.attachments a WHERE a.tbl = attach.tbl) THEN
        RAISE EXCEPTION 'table "%" is already attached', tbl
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Call imagekit.detach() first to change the columns.';
    END IF;

    -- a single-column primary key identifies the row
    SELECT a.attname, format_type(a.atttypid, a.atttypmod)
      INTO key_col, key_type
      FROM pg_index i
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = tbl AND i.indisprimary AND i.indnkeyatts = 1;
    IF key_col IS NULL THEN
        RAISE EXCEPTION 'table "%" has no single-column primary key', tbl
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'Add a primary key of one column, such as "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY".';
    END IF;
    -- the triggers run as the extension's owner: only built-in types, whose
    -- casts and operators no table owner can redefine
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                   WHERE a.attrelid = tbl AND a.attname = key_col
                     AND t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype = 'b') THEN
        RAISE EXCEPTION 'the primary key of table "%" is not of a built-in type', tbl
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'Use a key such as bigint, integer, text or uuid.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = tbl AND attname = target_column
                 AND NOT attisdropped AND attnum > 0
                 AND atttypid NOT IN ('text'::regtype, 'varchar'::regtype)) THEN
        RAISE EXCEPTION 'column "%" of table "%" is not of type text', target_column, tbl
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'The target column must be text or varchar.';
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = tbl AND attname = source_column
                     AND NOT attisdropped AND attnum > 0) THEN
        RAISE EXCEPTION 'column "%" of table "%" does not exist', source_column, tbl
            USING ERRCODE = 'undefined_column',
                  HINT = 'Pass the column that holds the source URL as source_column.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = tbl AND attname = source_column
                     AND atttypid IN ('text'::regtype, 'varchar'::regtype)) THEN
        RAISE EXCEPTION 'column "%" of table "%" is not of type text', source_column, tbl
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'The source URL column must be text or varchar.';
    END IF;
    IF source_column = target_column OR key_col IN (source_column, target_column) THEN
        RAISE EXCEPTION 'the key, source and target columns must be distinct'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = tbl AND attname = target_column
                     AND NOT attisdropped AND attnum > 0) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I text', tbl, target_column);
    END IF;
    -- An index on the target, built here only for a small table: on a large
    -- one it would block writes for as long as it takes to build.
    idx := left('idx_' || rel.relname || '_' || target_column, 63);
    IF to_regclass(format('%I.%I', rel.nspname, idx)) IS NULL THEN
        IF pg_relation_size(tbl) <= 8 * 1024 * 1024 THEN
            EXECUTE format('CREATE INDEX %I ON %s (%I)', idx, tbl, target_column);
        ELSE
            RAISE NOTICE 'no index was built on column "%" of table "%"', target_column, tbl
                USING DETAIL = 'Building it now would block writes to the table for as long as it takes.',
                      HINT = format('Build it without blocking writes: CREATE INDEX CONCURRENTLY %I ON %s (%I);',
                                    idx, tbl, target_column);
        END IF;
    END IF;

    -- The UPDATE trigger's function is named after the table's OID; a
    -- restored dump may hold one of that name for another table already.
    fn := format('imagekit.%I', 'enqueue_' || tbl::oid);
    WHILE to_regproc(fn) IS NOT NULL LOOP
        fn := format('imagekit.%I', 'enqueue_' || tbl::oid || '_' || nextval('imagekit.row_seq'));
    END LOOP;

    INSERT INTO imagekit.attachments (tbl, key_column, key_type, source_column, target_column,
                                      trigger_function, key_attnum, source_attnum, target_attnum)
    SELECT tbl, key_col, key_type, source_column, target_column, fn,
           (SELECT attnum FROM pg_attribute WHERE attrelid = tbl AND attname = key_col),
           (SELECT attnum FROM pg_attribute WHERE attrelid = tbl AND attname = source_column),
           (SELECT attnum FROM pg_attribute WHERE attrelid = tbl AND attname = target_column);
    PERFORM imagekit.install_triggers(tbl);

    -- Rows queued in a database that no worker serves would wait for ever.
    PERFORM imagekit.warn_if_unserved(tbl);
    PERFORM imagekit.wake_worker_on_commit();

    -- The existing rows: a first batch now, the rest (of a larger table) by
    -- the workers, in batches that lock nothing an application waits for.
    IF backfill THEN
        UPDATE imagekit.attachments a SET backfill_pending = true WHERE a.tbl = attach.tbl;
        queued := greatest(imagekit.backfill_step(1000, tbl), 0);
        IF (SELECT a.backfill_pending FROM imagekit.attachments a WHERE a.tbl = attach.tbl) THEN
            PERFORM imagekit.wake_worker_on_commit();
            RAISE NOTICE 'the background workers queue the other existing rows of "%"', tbl
                USING DETAIL = format('%s rows were queued now.', queued),
                      HINT = 'imagekit.status shows the progress (backfilling, backfill_queued).';
        END IF;
    END IF;
    RETURN queued;
END
$attach$;


-- CREATE EXTENSION or the update: the launcher starts this database's
-- workers when the transaction commits.
SELECT imagekit.wake_worker_on_commit();
