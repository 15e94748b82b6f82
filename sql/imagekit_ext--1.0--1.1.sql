/* imagekit_ext--1.0--1.1.sql: the pipeline */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION imagekit_ext UPDATE TO '1.1'" to load this file. \quit

-- Tables whose new rows are uploaded by the background worker.
CREATE TABLE imagekit.attachments (
    tbl regclass PRIMARY KEY,
    key_column name NOT NULL,
    key_type text NOT NULL,
    source_column name NOT NULL,
    target_column name NOT NULL,
    trigger_function text NOT NULL,
    attached_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON imagekit.attachments FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('imagekit.attachments', '');

-- The queue: one job per (table, row key).
CREATE TABLE imagekit.jobs (
    id bigserial PRIMARY KEY,
    tbl regclass NOT NULL,
    row_key text NOT NULL,
    source_url text NOT NULL,
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'in_flight', 'done', 'fallback')),
    generation integer NOT NULL DEFAULT 1,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    lease_expires_at timestamptz,
    worker integer,
    last_error text,
    last_http_status integer,
    content_hash text,
    result_url text,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (tbl, row_key)
);
CREATE INDEX jobs_queued_idx ON imagekit.jobs (next_attempt_at)
    WHERE state = 'queued';
CREATE INDEX jobs_leases_idx ON imagekit.jobs (lease_expires_at)
    WHERE state = 'in_flight';
CREATE INDEX jobs_state_idx ON imagekit.jobs (tbl, state);
REVOKE ALL ON imagekit.jobs FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('imagekit.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('imagekit.jobs_id_seq', '');

-- The inbox: what the INSERT trigger queues, as cheaply as a row can be
-- written (no index, no conflict check), so that inserting into an attached
-- table costs little more than into a plain one.  The workers move it into
-- imagekit.jobs before they claim.  It is WAL-logged like any table:
-- nothing queued is lost.
CREATE TABLE imagekit.inbox (
    tbl oid NOT NULL,
    row_key text NOT NULL,
    source_url text NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON imagekit.inbox FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('imagekit.inbox', '');

-- The INSERT trigger of attached tables (see src/ik_enqueue.c).
CREATE FUNCTION imagekit.enqueue_insert()
RETURNS trigger
AS 'MODULE_PATHNAME', 'imagekit_enqueue_insert'
LANGUAGE C;
REVOKE ALL ON FUNCTION imagekit.enqueue_insert() FROM PUBLIC;

-- Set the worker's latch when the current transaction commits.
CREATE FUNCTION imagekit.wake_worker_on_commit()
RETURNS void
AS 'MODULE_PATHNAME', 'imagekit_wake_worker_on_commit'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION imagekit.wake_worker_on_commit() FROM PUBLIC;

-- Whether this backend is a worker storing a result in table "tbl" (the
-- UPDATE trigger then knows the changed target is the worker's own doing).
CREATE FUNCTION imagekit.worker_is_storing(tbl oid)
RETURNS boolean
AS 'MODULE_PATHNAME', 'imagekit_worker_is_storing'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
REVOKE ALL ON FUNCTION imagekit.worker_is_storing(oid) FROM PUBLIC;

-- The role the caller acts as, seen from inside a SECURITY DEFINER function.
CREATE FUNCTION imagekit.check_table_owner(tbl regclass)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller name := CASE WHEN current_setting('role') = 'none'
                        THEN session_user ELSE current_setting('role') END;
    owner oid;
BEGIN
    SELECT relowner INTO owner FROM pg_class WHERE oid = tbl;
    IF NOT (pg_has_role(caller, owner, 'USAGE')
            OR (SELECT rolsuper FROM pg_roles WHERE rolname = caller)) THEN
        RAISE EXCEPTION 'must be owner of table %', tbl
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION imagekit.check_table_owner(regclass) FROM PUBLIC;

CREATE FUNCTION imagekit.attach(tbl regclass,
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
    fn text := format('imagekit.%I', 'enqueue_' || tbl::oid);
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
    idx := left('idx_' || rel.relname || '_' || target_column, 63);
    IF to_regclass(format('%I.%I', rel.nspname, idx)) IS NULL THEN
        EXECUTE format('CREATE INDEX %I ON %s (%I)', idx, tbl, target_column);
    END IF;

    -- The INSERT trigger is imagekit.enqueue_insert() (C, into the inbox);
    -- the UPDATE trigger gets a function of its own, with static SQL that is
    -- planned once per session.  Both are statement-level triggers with
    -- transition tables: a bulk statement is one call, not one per row.
    EXECUTE format($f$
        CREATE FUNCTION %1$s() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $body$
        BEGIN
            -- the worker storing its result in this table changes only the
            -- target: nothing to do
            IF imagekit.worker_is_storing(TG_RELID) THEN
                RETURN NULL;
            END IF;

            -- a URL stored by someone else (an RPC that uploaded itself) on
            -- a row whose source did not change wins over the pending job
            UPDATE imagekit.jobs j
               SET state = 'done', generation = j.generation + 1,
                   result_url = n.%4$I, last_error = NULL,
                   lease_expires_at = NULL, worker = NULL, updated_at = now()
              FROM imagekit_new_rows n JOIN imagekit_old_rows o ON o.%2$I = n.%2$I
             WHERE j.tbl = TG_RELID AND j.row_key = n.%2$I::text
               AND j.state IN ('queued', 'in_flight')
               AND n.%3$I IS NOT DISTINCT FROM o.%3$I
               AND n.%4$I IS NOT NULL AND n.%4$I IS DISTINCT FROM o.%4$I;
            IF FOUND OR EXISTS (SELECT FROM imagekit.inbox i WHERE i.tbl = TG_RELID) THEN
                DELETE FROM imagekit.inbox i
                 USING imagekit_new_rows n JOIN imagekit_old_rows o ON o.%2$I = n.%2$I
                 WHERE i.tbl = TG_RELID AND i.row_key = n.%2$I::text
                   AND n.%3$I IS NOT DISTINCT FROM o.%3$I
                   AND n.%4$I IS NOT NULL AND n.%4$I IS DISTINCT FROM o.%4$I;
            END IF;

            -- a changed source URL is queued again; a job in flight keeps
            -- its state, and its stale result will not be written
            INSERT INTO imagekit.jobs AS j (tbl, row_key, source_url)
            SELECT TG_RELID, n.%2$I::text, n.%3$I
              FROM imagekit_new_rows n JOIN imagekit_old_rows o ON o.%2$I = n.%2$I
             WHERE n.%3$I IS DISTINCT FROM o.%3$I
               AND n.%3$I IS NOT NULL AND n.%3$I <> ''
            ON CONFLICT (tbl, row_key) DO UPDATE
               SET source_url = EXCLUDED.source_url,
                   state = CASE WHEN j.state = 'in_flight' THEN 'in_flight' ELSE 'queued' END,
                   generation = j.generation + 1, attempts = 0,
                   next_attempt_at = now(), last_error = NULL,
                   last_http_status = NULL, updated_at = now();
            IF FOUND THEN
                PERFORM imagekit.wake_worker_on_commit();
            END IF;
            RETURN NULL;
        END
        $body$
    $f$, fn, key_col, source_column, target_column);
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fn);

    EXECUTE format('CREATE TRIGGER imagekit_enqueue_insert AFTER INSERT ON %s '
                   'REFERENCING NEW TABLE AS imagekit_new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION imagekit.enqueue_insert(%L, %L, %L)',
                   tbl, key_col, source_column, target_column);
    EXECUTE format('CREATE TRIGGER imagekit_enqueue_update AFTER UPDATE ON %s '
                   'REFERENCING OLD TABLE AS imagekit_old_rows NEW TABLE AS imagekit_new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION %s()', tbl, fn);

    INSERT INTO imagekit.attachments (tbl, key_column, key_type, source_column, target_column, trigger_function)
    VALUES (tbl, key_col, key_type, source_column, target_column, fn);

    IF backfill THEN
        EXECUTE format($q$
            INSERT INTO imagekit.jobs AS j (tbl, row_key, source_url)
            SELECT %1$L::regclass, t.%2$I::text, t.%3$I FROM %1$s t
             WHERE t.%4$I IS NULL AND t.%3$I IS NOT NULL AND t.%3$I <> ''
            ON CONFLICT (tbl, row_key) DO UPDATE
               SET source_url = EXCLUDED.source_url, state = 'queued',
                   generation = j.generation + 1, attempts = 0,
                   next_attempt_at = now(), updated_at = now()
               WHERE j.state <> 'in_flight'
        $q$, tbl, key_col, source_column, target_column);
        GET DIAGNOSTICS queued = ROW_COUNT;
        IF queued > 0 THEN
            PERFORM imagekit.wake_worker_on_commit();
        END IF;
    END IF;
    RETURN queued;
END
$attach$;
REVOKE ALL ON FUNCTION imagekit.attach(regclass, name, name, boolean) FROM PUBLIC;

CREATE FUNCTION imagekit.detach(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn text;
BEGIN
    PERFORM imagekit.check_table_owner(tbl);
    SELECT a.trigger_function INTO fn FROM imagekit.attachments a WHERE a.tbl = detach.tbl;
    IF fn IS NULL THEN
        RAISE EXCEPTION 'table "%" is not attached', tbl
            USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('DROP TRIGGER IF EXISTS imagekit_enqueue_insert ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS imagekit_enqueue_update ON %s', tbl);
    EXECUTE format('DROP FUNCTION IF EXISTS %s()', fn);
    DELETE FROM imagekit.attachments a WHERE a.tbl = detach.tbl;
    -- every job: results in flight become stale and are not written
    DELETE FROM imagekit.jobs j WHERE j.tbl = detach.tbl;
    DELETE FROM imagekit.inbox i WHERE i.tbl = detach.tbl;
END
$$;
REVOKE ALL ON FUNCTION imagekit.detach(regclass) FROM PUBLIC;

CREATE FUNCTION imagekit.retry_fallbacks(tbl regclass DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    t regclass;
BEGIN
    IF tbl IS NOT NULL THEN
        PERFORM imagekit.check_table_owner(tbl);
    ELSE
        FOR t IN SELECT DISTINCT j.tbl FROM imagekit.jobs j WHERE j.state = 'fallback' LOOP
            PERFORM imagekit.check_table_owner(t);
        END LOOP;
    END IF;
    UPDATE imagekit.jobs j
       SET state = 'queued', attempts = 0, next_attempt_at = now(),
           generation = j.generation + 1, updated_at = now()
     WHERE j.state = 'fallback' AND (retry_fallbacks.tbl IS NULL OR j.tbl = retry_fallbacks.tbl);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM imagekit.wake_worker_on_commit();
    END IF;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION imagekit.retry_fallbacks(regclass) FROM PUBLIC;

-- What the pipeline is doing, per attached table.
CREATE VIEW imagekit.status AS
SELECT a.tbl,
       count(*) FILTER (WHERE j.state = 'queued')
         + (SELECT count(*) FROM imagekit.inbox i WHERE i.tbl = a.tbl) AS queued,
       count(*) FILTER (WHERE j.state = 'in_flight') AS in_flight,
       count(*) FILTER (WHERE j.state = 'done') AS done,
       count(*) FILTER (WHERE j.state = 'fallback') AS fallback,
       now() - least(min(j.created_at) FILTER (WHERE j.state = 'queued'),
                     (SELECT min(i.queued_at) FROM imagekit.inbox i WHERE i.tbl = a.tbl))
         AS oldest_queued_age,
       (SELECT j2.last_error FROM imagekit.jobs j2
         WHERE j2.tbl = a.tbl AND j2.last_error IS NOT NULL
         ORDER BY j2.updated_at DESC LIMIT 1) AS last_error
  FROM imagekit.attachments a
  LEFT JOIN imagekit.jobs j ON j.tbl = a.tbl
 GROUP BY a.tbl;
REVOKE ALL ON imagekit.status FROM PUBLIC;

-- Counters since server start, from shared memory.
CREATE FUNCTION imagekit.stats(
    OUT uploads bigint,
    OUT upload_bytes bigint,
    OUT dedup_hits bigint,
    OUT retries bigint,
    OUT fallbacks bigint,
    OUT downloads bigint,
    OUT download_bytes bigint,
    OUT in_flight integer)
RETURNS record
AS 'MODULE_PATHNAME', 'imagekit_stats'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
REVOKE ALL ON FUNCTION imagekit.stats() FROM PUBLIC;

-- A table dropped without detach takes its jobs, attachment and trigger
-- function along, so that nothing is left behind for the workers.
CREATE FUNCTION imagekit.on_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dropped record;
    fn text;
BEGIN
    IF to_regclass('imagekit.attachments') IS NULL THEN
        RETURN;                 -- the extension itself is being dropped
    END IF;
    FOR dropped IN SELECT objid FROM pg_event_trigger_dropped_objects()
                    WHERE classid = 'pg_class'::regclass AND objsubid = 0
                      AND object_type = 'table'
    LOOP
        DELETE FROM imagekit.attachments a WHERE a.tbl = dropped.objid
            RETURNING a.trigger_function INTO fn;
        IF fn IS NOT NULL THEN
            DELETE FROM imagekit.jobs j WHERE j.tbl = dropped.objid;
            DELETE FROM imagekit.inbox i WHERE i.tbl = dropped.objid;
            EXECUTE format('DROP FUNCTION IF EXISTS %s()', fn);
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION imagekit.on_sql_drop() FROM PUBLIC;
CREATE EVENT TRIGGER imagekit_sql_drop ON sql_drop
    EXECUTE FUNCTION imagekit.on_sql_drop();
