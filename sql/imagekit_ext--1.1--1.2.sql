/* imagekit_ext--1.1--1.2.sql: a queue that survives dumps, deaths, locks and DDL */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION imagekit_ext UPDATE TO '1.2'" to load this file. \quit

-- Orders what queued a row (the INSERT trigger's inbox row, the UPDATE
-- trigger's job) without timestamps: a later queuing of the same row
-- always has a larger number, whenever its transaction began.
CREATE SEQUENCE imagekit.row_seq;
REVOKE ALL ON SEQUENCE imagekit.row_seq FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('imagekit.row_seq', '');

-- The inbox names its table as the queue does (a regclass, dumped as a
-- name), so that a dump restored elsewhere still points at it.
DROP VIEW imagekit.status;
ALTER TABLE imagekit.inbox ALTER COLUMN tbl TYPE regclass;
ALTER TABLE imagekit.inbox ADD COLUMN seq bigint NOT NULL DEFAULT 0;
-- (1.1 let an inbox row replace a job updated before it was queued; the
-- queue of 1.1 keeps that order: jobs count as seq 0)
UPDATE imagekit.inbox i
   SET seq = CASE WHEN EXISTS (SELECT FROM imagekit.jobs j
                                WHERE j.tbl = i.tbl AND j.row_key = i.row_key
                                  AND j.updated_at >= i.queued_at)
                  THEN -1 ELSE nextval('imagekit.row_seq') END;

-- seq: of the queuing the job stands for.  lease_token: the worker
-- process that holds an in_flight job (its start time; a token no live
-- worker has is a lost lease).  pending_state: a result that could not be
-- stored yet (the row was locked), to store without downloading again;
-- pending_since: since when (imagekit.record() reads and sets it only
-- while pending_state is set).
ALTER TABLE imagekit.jobs
    ADD COLUMN seq bigint NOT NULL DEFAULT 0,
    ADD COLUMN lease_token bigint,
    ADD COLUMN pending_state text CHECK (pending_state IN ('done', 'fallback')),
    ADD COLUMN pending_since timestamptz;

-- The attached columns by number too, to tell a rename from a drop
-- (imagekit.on_alter_table()).  The names stay the truth: a restored dump
-- numbers columns anew (dropped ones are gone), and the numbers are then
-- found again from the names.
ALTER TABLE imagekit.attachments
    ADD COLUMN key_attnum smallint,
    ADD COLUMN source_attnum smallint,
    ADD COLUMN target_attnum smallint;
-- (0: a column renamed under 1.1, which broke the table's triggers; renaming
-- it back finds it again)
UPDATE imagekit.attachments a
   SET key_attnum = coalesce((SELECT attnum FROM pg_attribute WHERE attrelid = a.tbl AND attname = a.key_column), 0),
       source_attnum = coalesce((SELECT attnum FROM pg_attribute WHERE attrelid = a.tbl AND attname = a.source_column), 0),
       target_attnum = coalesce((SELECT attnum FROM pg_attribute WHERE attrelid = a.tbl AND attname = a.target_column), 0);
ALTER TABLE imagekit.attachments
    ALTER COLUMN key_attnum SET NOT NULL,
    ALTER COLUMN source_attnum SET NOT NULL,
    ALTER COLUMN target_attnum SET NOT NULL;

-- A backfill that attach() left to the workers: the key after which rows
-- are still to be queued, and how many were queued so far.
ALTER TABLE imagekit.attachments
    ADD COLUMN backfill_pending boolean NOT NULL DEFAULT false,
    ADD COLUMN backfill_after text,
    ADD COLUMN backfill_queued bigint NOT NULL DEFAULT 0;

/*
 * Job counts for imagekit.status, kept as deltas so that it answers in
 * milliseconds whatever the size of the queue: every statement that
 * changes imagekit.jobs or imagekit.inbox appends one row per table and
 * state it changed (state 'inbox' for the inbox), and the workers fold
 * them together every few seconds (imagekit.compact_counts()).  Appending
 * never waits on anyone, so the counts cost applications no lock.  The
 * table is not dumped: restoring the queue's tables fires the same
 * triggers and counts them again.
 */
CREATE TABLE imagekit.job_counts (
    tbl regclass NOT NULL,
    state text NOT NULL,
    n bigint NOT NULL
);
REVOKE ALL ON imagekit.job_counts FROM PUBLIC;
INSERT INTO imagekit.job_counts (tbl, state, n)
SELECT tbl, state, count(*) FROM imagekit.jobs GROUP BY 1, 2
UNION ALL
SELECT tbl, 'inbox', count(*) FROM imagekit.inbox GROUP BY 1;

CREATE FUNCTION imagekit.count_jobs()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO imagekit.job_counts (tbl, state, n)
        SELECT tbl, state, count(*) FROM counted_new GROUP BY 1, 2;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO imagekit.job_counts (tbl, state, n)
        SELECT tbl, state, -count(*) FROM counted_old GROUP BY 1, 2;
    ELSE
        INSERT INTO imagekit.job_counts (tbl, state, n)
        SELECT tbl, state, sum(n)
          FROM (SELECT tbl, state, 1 AS n FROM counted_new
                UNION ALL
                SELECT tbl, state, -1 FROM counted_old) d
         GROUP BY 1, 2 HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION imagekit.count_inbox()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- (the INSERT trigger of attached tables counts what it queues itself)
    IF TG_OP = 'INSERT' THEN
        INSERT INTO imagekit.job_counts (tbl, state, n)
        SELECT tbl, 'inbox', count(*) FROM counted_new GROUP BY 1;
    ELSE
        INSERT INTO imagekit.job_counts (tbl, state, n)
        SELECT tbl, 'inbox', -count(*) FROM counted_old GROUP BY 1;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION imagekit.count_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'inbox' THEN
        DELETE FROM imagekit.job_counts WHERE state = 'inbox';
    ELSE
        DELETE FROM imagekit.job_counts WHERE state <> 'inbox';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION imagekit.count_jobs(), imagekit.count_inbox(),
    imagekit.count_truncate() FROM PUBLIC;
CREATE TRIGGER count_insert AFTER INSERT ON imagekit.jobs
    REFERENCING NEW TABLE AS counted_new
    FOR EACH STATEMENT EXECUTE FUNCTION imagekit.count_jobs();
CREATE TRIGGER count_update AFTER UPDATE ON imagekit.jobs
    REFERENCING OLD TABLE AS counted_old NEW TABLE AS counted_new
    FOR EACH STATEMENT EXECUTE FUNCTION imagekit.count_jobs();
CREATE TRIGGER count_delete AFTER DELETE ON imagekit.jobs
    REFERENCING OLD TABLE AS counted_old
    FOR EACH STATEMENT EXECUTE FUNCTION imagekit.count_jobs();
CREATE TRIGGER count_truncate AFTER TRUNCATE ON imagekit.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION imagekit.count_truncate();
CREATE TRIGGER count_insert AFTER INSERT ON imagekit.inbox
    REFERENCING NEW TABLE AS counted_new
    FOR EACH STATEMENT EXECUTE FUNCTION imagekit.count_inbox();
CREATE TRIGGER count_delete AFTER DELETE ON imagekit.inbox
    REFERENCING OLD TABLE AS counted_old
    FOR EACH STATEMENT EXECUTE FUNCTION imagekit.count_inbox();
CREATE TRIGGER count_truncate AFTER TRUNCATE ON imagekit.inbox
    FOR EACH STATEMENT EXECUTE FUNCTION imagekit.count_truncate();

-- Fold the deltas together (one worker at a time).
CREATE FUNCTION imagekit.compact_counts()
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_try_advisory_xact_lock(pg_catalog.hashtext('imagekit.compact_counts')) THEN
        WITH d AS (DELETE FROM imagekit.job_counts RETURNING tbl, state, n)
        INSERT INTO imagekit.job_counts (tbl, state, n)
        SELECT tbl, state, sum(n) FROM d GROUP BY 1, 2 HAVING sum(n) <> 0;
    END IF;
END
$$;

-- Count the queue anew (after it was changed with triggers disabled, say:
-- session_replication_role = replica, pg_restore --disable-triggers).
CREATE FUNCTION imagekit.recount()
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOCK TABLE imagekit.jobs, imagekit.inbox IN SHARE MODE;
    DELETE FROM imagekit.job_counts;
    INSERT INTO imagekit.job_counts (tbl, state, n)
    SELECT tbl, state, count(*) FROM imagekit.jobs GROUP BY 1, 2
    UNION ALL
    SELECT tbl, 'inbox', count(*) FROM imagekit.inbox GROUP BY 1;
END
$$;
REVOKE ALL ON FUNCTION imagekit.recount() FROM PUBLIC;

-- for imagekit.status: the oldest queued job and the last error of a table
CREATE INDEX jobs_oldest_idx ON imagekit.jobs (tbl, created_at) WHERE state = 'queued';
CREATE INDEX jobs_errors_idx ON imagekit.jobs (tbl, updated_at) WHERE last_error IS NOT NULL;
-- for the retention of finished jobs
CREATE INDEX jobs_finished_idx ON imagekit.jobs (updated_at) WHERE state IN ('done', 'fallback');

-- What the pipeline is doing, per attached table, in milliseconds whatever
-- the size of the queue.  "queued" includes the rows waiting in the inbox.
CREATE VIEW imagekit.status AS
SELECT a.tbl,
       coalesce(c.queued, 0) + coalesce(c.inbox, 0) AS queued,
       coalesce(c.in_flight, 0) AS in_flight,
       coalesce(c.done, 0) AS done,
       coalesce(c.fallback, 0) AS fallback,
       now() - least((SELECT min(j.created_at) FROM imagekit.jobs j
                       WHERE j.state = 'queued' AND j.tbl = a.tbl),
                     (SELECT min(i.queued_at) FROM imagekit.inbox i WHERE i.tbl = a.tbl))
         AS oldest_queued_age,
       (SELECT j.last_error FROM imagekit.jobs j
         WHERE j.tbl = a.tbl AND j.last_error IS NOT NULL
         ORDER BY j.updated_at DESC LIMIT 1) AS last_error,
       a.backfill_pending AS backfilling,
       a.backfill_queued
  FROM imagekit.attachments a
  LEFT JOIN (SELECT k.tbl,
                    sum(k.n) FILTER (WHERE k.state = 'queued') AS queued,
                    sum(k.n) FILTER (WHERE k.state = 'inbox') AS inbox,
                    sum(k.n) FILTER (WHERE k.state = 'in_flight') AS in_flight,
                    sum(k.n) FILTER (WHERE k.state = 'done') AS done,
                    sum(k.n) FILTER (WHERE k.state = 'fallback') AS fallback
               FROM imagekit.job_counts k GROUP BY k.tbl) c ON c.tbl = a.tbl;
REVOKE ALL ON imagekit.status FROM PUBLIC;

-- Finished jobs (done, fallback) not updated for "retention" go, at most
-- "lim" at a time; returns how many.
CREATE FUNCTION imagekit.remove_finished(retention interval, lim integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_sort = off
AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM imagekit.jobs
     WHERE id IN (SELECT j.id FROM imagekit.jobs j
                   WHERE j.state IN ('done', 'fallback')
                     AND j.updated_at < now() - retention
                   ORDER BY j.updated_at LIMIT lim
                   FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Does the worker serve table "tbl": attached, and its INSERT trigger in
-- place?  pg_restore fills the queue's tables before it creates the
-- triggers of the attached tables (and commits each step): until then the
-- workers leave that table's queue alone, so that nothing they write
-- collides with what is still to be restored.
CREATE FUNCTION imagekit.is_served(tbl regclass)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT FROM imagekit.attachments a WHERE a.tbl = $1)
       AND EXISTS (SELECT FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid = $1 AND t.tgname = 'imagekit_enqueue_insert');
$$;
REVOKE ALL ON FUNCTION imagekit.is_served(regclass) FROM PUBLIC;

-- Queue the next "lim" existing rows of one table whose backfill is
-- pending, in key order, without waiting on another worker doing the same;
-- returns how many rows were queued (NULL: no backfill pending; -1: the
-- table was locked, and is left for a later step).  Rows
-- that have a job already keep it, unless it is finished and the row has
-- no URL.
-- It reads the table as the extension's owner, so nothing of the table's
-- owner may run: constraint exclusion (which could evaluate a CHECK
-- constraint of an inheritance child) is off, and the key is of a built-in
-- type.  A table locked by someone else is left for the next step.
CREATE FUNCTION imagekit.backfill_step(lim integer, only_tbl regclass DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET constraint_exclusion = off
SET lock_timeout = '50ms'
AS $$
DECLARE
    a record;
    last_key text;
    scanned bigint;
    queued bigint;
BEGIN
    SELECT x.tbl, x.backfill_after, x.key_type,
           k.attname AS key_col, s.attname AS src_col, t.attname AS tgt_col
      INTO a
      FROM imagekit.attachments x
      JOIN pg_attribute k ON k.attrelid = x.tbl AND k.attnum = x.key_attnum
      JOIN pg_attribute s ON s.attrelid = x.tbl AND s.attnum = x.source_attnum
      JOIN pg_attribute t ON t.attrelid = x.tbl AND t.attnum = x.target_attnum
     WHERE x.backfill_pending AND (only_tbl IS NULL OR x.tbl = only_tbl)
       AND imagekit.is_served(x.tbl)
     LIMIT 1
       FOR UPDATE OF x SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    BEGIN
    EXECUTE format($q$
        WITH batch AS (
            SELECT t.%2$I AS k, t.%3$I AS src, t.%4$I AS tgt FROM %1$s t
             WHERE $1 IS NULL OR t.%2$I > $1::%5$s
             ORDER BY t.%2$I LIMIT $2),
        queued AS (
            INSERT INTO imagekit.jobs AS j (tbl, row_key, source_url, seq)
            SELECT %1$L::regclass, b.k::text, b.src, nextval('imagekit.row_seq')
              FROM batch b
             WHERE b.tgt IS NULL AND b.src IS NOT NULL AND b.src <> ''
            ON CONFLICT (tbl, row_key) DO UPDATE
               SET source_url = EXCLUDED.source_url, seq = EXCLUDED.seq, state = 'queued',
                   generation = j.generation + 1, attempts = 0, result_url = NULL,
                   pending_state = NULL, next_attempt_at = now(), updated_at = now()
             WHERE j.state IN ('done', 'fallback')
            RETURNING 1)
        SELECT (SELECT b.k::text FROM batch b ORDER BY b.k DESC LIMIT 1),
               (SELECT count(*) FROM batch), (SELECT count(*) FROM queued)
    $q$, a.tbl, a.key_col, a.src_col, a.tgt_col, a.key_type)
    INTO last_key, scanned, queued
    USING a.backfill_after, lim;
    EXCEPTION WHEN lock_not_available THEN
        RETURN -1;              -- locked: a later step tries again
    END;
    UPDATE imagekit.attachments x
       SET backfill_after = coalesce(last_key, x.backfill_after),
           backfill_queued = x.backfill_queued + queued,
           backfill_pending = (scanned = lim)
     WHERE x.tbl = a.tbl;
    IF queued > 0 THEN
        PERFORM imagekit.wake_worker_on_commit();
    END IF;
    RETURN queued;
END
$$;
REVOKE ALL ON FUNCTION imagekit.compact_counts(), imagekit.remove_finished(interval, integer),
    imagekit.backfill_step(integer, regclass) FROM PUBLIC;

/*
 * The queue's statements, which the worker runs through SPI and the
 * isolation specs run as they are.  None is for PUBLIC.
 */

-- Move up to "lim" inbox rows into the queue; returns how many were taken
-- from the inbox.  An inbox row replaces a job only if it was queued later
-- (a row deleted and inserted again).  Only rows of tables the workers
-- serve are taken (imagekit.is_served()).
CREATE FUNCTION imagekit.absorb_inbox(lim integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    WITH moved AS (
        DELETE FROM imagekit.inbox WHERE ctid = ANY (ARRAY(
            SELECT i.ctid FROM imagekit.inbox i
             WHERE i.tbl = ANY (ARRAY(SELECT a.tbl FROM imagekit.attachments a
                                       WHERE imagekit.is_served(a.tbl)))
             LIMIT lim FOR UPDATE SKIP LOCKED))
        RETURNING tbl, row_key, source_url, seq),
    queued AS (
        INSERT INTO imagekit.jobs AS j (tbl, row_key, source_url, seq)
        SELECT DISTINCT ON (m.tbl, m.row_key) m.tbl, m.row_key, m.source_url, m.seq
          FROM moved m
         ORDER BY m.tbl, m.row_key, m.seq DESC
        ON CONFLICT (tbl, row_key) DO UPDATE
           SET source_url = EXCLUDED.source_url, seq = EXCLUDED.seq,
               state = CASE WHEN j.state = 'in_flight' THEN 'in_flight' ELSE 'queued' END,
               generation = j.generation + 1, attempts = 0,
               next_attempt_at = now(), last_error = NULL,
               last_http_status = NULL, result_url = NULL, pending_state = NULL,
               updated_at = now()
         WHERE j.seq < EXCLUDED.seq)
    SELECT count(*) INTO n FROM moved;
    RETURN n;
END
$$;

-- Claim up to "lim" due jobs for worker slot "worker" with lease token
-- "token", oldest due first, through the partial index on queued jobs.
-- The claim counts the attempt, so that a job whose processing kills its
-- worker uses up its retries like any failure; "attempts" is the count
-- before this one.
-- The claim must cost the same whatever the backlog, with or without
-- statistics on imagekit.jobs: without them (a table not analyzed yet) the
-- planner would rather sort the whole backlog (0.6 s at a million jobs)
-- than walk the index in order (under a millisecond).  Sorting is
-- therefore made the last resort for this function's plans.
CREATE FUNCTION imagekit.claim(worker integer, token bigint, lim integer, lease interval)
RETURNS TABLE (id bigint, generation integer, attempts integer, tbl regclass,
               nspname name, relname name, key_type text,
               key_attnum smallint, source_attnum smallint, target_attnum smallint,
               row_key text, source_url text, pending_state text,
               result_url text, last_error text, last_http_status integer)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_sort = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH c AS (
        SELECT q.id FROM imagekit.jobs q
         WHERE q.state = 'queued' AND q.next_attempt_at <= now()
           AND q.tbl = ANY (ARRAY(SELECT a.tbl FROM imagekit.attachments a
                                   WHERE imagekit.is_served(a.tbl)))
         ORDER BY q.next_attempt_at
         LIMIT lim
         FOR UPDATE OF q SKIP LOCKED)
    UPDATE imagekit.jobs j
       SET state = 'in_flight', worker = claim.worker, lease_token = claim.token,
           attempts = j.attempts + 1, lease_expires_at = now() + lease,
           updated_at = now()
      FROM c, imagekit.attachments a, pg_class r, pg_namespace n
     WHERE j.id = c.id AND a.tbl = j.tbl AND r.oid = j.tbl AND n.oid = r.relnamespace
    RETURNING j.id, j.generation, j.attempts - 1, j.tbl, n.nspname,
              r.relname, a.key_type,
              (SELECT t.attnum FROM pg_attribute t WHERE t.attrelid = j.tbl AND t.attname = a.key_column),
              (SELECT t.attnum FROM pg_attribute t WHERE t.attrelid = j.tbl AND t.attname = a.source_column),
              (SELECT t.attnum FROM pg_attribute t WHERE t.attrelid = j.tbl AND t.attname = a.target_column),
              j.row_key, j.source_url, j.pending_state,
              j.result_url, j.last_error, j.last_http_status;
END
$$;

-- Put back in the queue the in_flight jobs whose lease expired or whose
-- token is not one of "live" (the tokens of the running workers): their
-- worker died, the server restarted, or the rows came from a dump.
CREATE FUNCTION imagekit.requeue_lost(live bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE imagekit.jobs
       SET state = 'queued', next_attempt_at = now(), lease_expires_at = NULL,
           worker = NULL, lease_token = NULL, updated_at = now()
     WHERE id IN (SELECT j.id FROM imagekit.jobs j
                   WHERE j.state = 'in_flight'
                     AND (j.lease_expires_at < now() OR j.lease_token IS NULL
                          OR j.lease_token <> ALL (live))
                     FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Record the outcome of job "job" if the worker with lease "token" still
-- holds it at generation "gen" (not re-pointed, not re-claimed); returns
-- whether it did.  "attempts_delta" corrects the count the claim made
-- (-1: this attempt does not count); "pending" keeps a result to store
-- later with the job queued, after "delay" or, once it has waited longer,
-- half the time it has waited so far (at most a minute): a row locked for
-- long is tried less and less often.
CREATE FUNCTION imagekit.record(job bigint, gen integer, token bigint,
                                new_state text, attempts_delta integer,
                                delay interval, error text, http_status integer,
                                hash text, url text, pending text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE imagekit.jobs j
       SET state = new_state, attempts = j.attempts + attempts_delta,
           next_attempt_at = now() + CASE
               WHEN pending IS NULL OR j.pending_state IS NULL THEN delay
               ELSE greatest(delay, least(interval '1 minute', (now() - j.pending_since) / 2))
           END,
           lease_expires_at = NULL,
           worker = NULL, lease_token = NULL, last_error = error,
           last_http_status = http_status,
           content_hash = coalesce(hash, j.content_hash), result_url = url,
           pending_state = pending,
           pending_since = CASE
               WHEN pending IS NULL THEN NULL
               WHEN j.pending_state IS NULL THEN now()
               ELSE j.pending_since
           END,
           updated_at = now()
     WHERE j.id = job AND j.generation = gen AND j.state = 'in_flight'
       AND j.lease_token = token;
    RETURN FOUND;
END
$$;

-- A stale result: put the job back in the queue if "token" still holds it.
CREATE FUNCTION imagekit.requeue_if_held(job bigint, token bigint)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE imagekit.jobs
       SET state = 'queued', next_attempt_at = now(), lease_expires_at = NULL,
           worker = NULL, lease_token = NULL, updated_at = now()
     WHERE id = job AND state = 'in_flight' AND lease_token = token;
$$;

-- The job's row is gone (looked up, not guessed): the job ends, if "token"
-- still holds it at generation "gen" (the key may have been queued again
-- since the look-up); returns whether it did.
CREATE FUNCTION imagekit.forget_job(job bigint, gen integer, token bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM imagekit.jobs j
     WHERE j.id = job AND j.generation = gen AND j.state = 'in_flight'
       AND j.lease_token = token;
    RETURN FOUND;
END
$$;

-- The job's row now has source "src" though the job still holds
-- generation "gen" (the UPDATE trigger did not see the change: triggers
-- disabled, say): the job takes that source and goes back to the queue, or
-- ends when there is no source.  Returns whether it did.
CREATE FUNCTION imagekit.repoint_job(job bigint, gen integer, token bigint, src text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF src IS NULL OR src = '' THEN
        RETURN imagekit.forget_job(job, gen, token);
    END IF;
    UPDATE imagekit.jobs j
       SET source_url = src, seq = nextval('imagekit.row_seq'), state = 'queued',
           generation = j.generation + 1, attempts = 0, next_attempt_at = now(),
           lease_expires_at = NULL, worker = NULL, lease_token = NULL,
           last_error = NULL, last_http_status = NULL, result_url = NULL,
           pending_state = NULL, updated_at = now()
     WHERE j.id = job AND j.generation = gen AND j.state = 'in_flight'
       AND j.lease_token = token;
    RETURN FOUND;
END
$$;

-- Milliseconds until the next queued job of an attached table is due;
-- NULL when none is queued.  Like the claim, it walks the index in order.
CREATE FUNCTION imagekit.next_due_ms()
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_sort = off
AS $$
    SELECT ceil(extract(epoch FROM (
        (SELECT j.next_attempt_at FROM imagekit.jobs j
          WHERE j.state = 'queued'
            AND j.tbl = ANY (ARRAY(SELECT a.tbl FROM imagekit.attachments a
                                    WHERE imagekit.is_served(a.tbl)))
          ORDER BY j.next_attempt_at LIMIT 1)
        - clock_timestamp())) * 1000)::bigint;
$$;

REVOKE ALL ON FUNCTION imagekit.absorb_inbox(integer),
    imagekit.claim(integer, bigint, integer, interval),
    imagekit.requeue_lost(bigint[]),
    imagekit.record(bigint, integer, bigint, text, integer, interval, text, integer, text, text, text),
    imagekit.requeue_if_held(bigint, bigint),
    imagekit.forget_job(bigint, integer, bigint),
    imagekit.repoint_job(bigint, integer, bigint, text),
    imagekit.next_due_ms()
    FROM PUBLIC;

-- TRUNCATE of an attached table drops its pending jobs.
CREATE FUNCTION imagekit.on_truncate()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM imagekit.jobs j WHERE j.tbl = TG_RELID;
    DELETE FROM imagekit.inbox i WHERE i.tbl = TG_RELID;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION imagekit.on_truncate() FROM PUBLIC;

-- (Re)create the triggers of an attached table and its UPDATE trigger
-- function, from its row in imagekit.attachments.
CREATE FUNCTION imagekit.install_triggers(tbl regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $install$
DECLARE
    a imagekit.attachments;
    body text;
BEGIN
    SELECT * INTO STRICT a FROM imagekit.attachments x WHERE x.tbl = install_triggers.tbl;

    -- The UPDATE trigger's function, with static SQL that is planned once
    -- per session.  Rows are matched by key between the transition tables:
    -- a row whose key changed is a row that left (its jobs go) and a row
    -- that arrived (queued like an inserted row).  The column names are
    -- quoted into the body, and the body into CREATE FUNCTION as a literal:
    -- a name cannot end the body early, whatever it holds.
    body := format($body$
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
                   result_url = n.%4$I, last_error = NULL, pending_state = NULL,
                   lease_expires_at = NULL, worker = NULL, lease_token = NULL,
                   updated_at = now()
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

            -- a changed source URL is queued again, and so is a row new
            -- under its key (its key changed) that has no URL yet; a job in
            -- flight keeps its state, and its stale result is not written
            INSERT INTO imagekit.jobs AS j (tbl, row_key, source_url, seq)
            SELECT TG_RELID, n.%2$I::text, n.%3$I, nextval('imagekit.row_seq')
              FROM imagekit_new_rows n LEFT JOIN imagekit_old_rows o ON o.%2$I = n.%2$I
             WHERE n.%3$I IS NOT NULL AND n.%3$I <> ''
               AND ((o.%2$I IS NULL AND n.%4$I IS NULL)
                    OR (o.%2$I IS NOT NULL AND n.%3$I IS DISTINCT FROM o.%3$I))
            ON CONFLICT (tbl, row_key) DO UPDATE
               SET source_url = EXCLUDED.source_url, seq = EXCLUDED.seq,
                   state = CASE WHEN j.state = 'in_flight' THEN 'in_flight' ELSE 'queued' END,
                   generation = j.generation + 1, attempts = 0,
                   next_attempt_at = now(), last_error = NULL,
                   last_http_status = NULL, result_url = NULL,
                   pending_state = NULL, updated_at = now();
            IF FOUND THEN
                PERFORM imagekit.wake_worker_on_commit();
            END IF;

            -- a source set to NULL or '' leaves nothing to fetch: its pending
            -- job goes (a result in flight is then not written)
            DELETE FROM imagekit.jobs j
             USING imagekit_new_rows n JOIN imagekit_old_rows o ON o.%2$I = n.%2$I
             WHERE j.tbl = TG_RELID AND j.row_key = n.%2$I::text
               AND j.state IN ('queued', 'in_flight')
               AND n.%3$I IS DISTINCT FROM o.%3$I
               AND (n.%3$I IS NULL OR n.%3$I = '');

            -- a key that is gone takes its job (and inbox rows) along
            DELETE FROM imagekit.jobs j
             USING imagekit_old_rows o
             WHERE j.tbl = TG_RELID AND j.row_key = o.%2$I::text
               AND NOT EXISTS (SELECT FROM imagekit_new_rows n WHERE n.%2$I = o.%2$I);
            IF EXISTS (SELECT FROM imagekit.inbox i WHERE i.tbl = TG_RELID) THEN
                DELETE FROM imagekit.inbox i
                 USING imagekit_old_rows o
                 WHERE i.tbl = TG_RELID AND i.row_key = o.%2$I::text
                   AND NOT EXISTS (SELECT FROM imagekit_new_rows n WHERE n.%2$I = o.%2$I);
            END IF;
            RETURN NULL;
        END
    $body$, NULL, a.key_column, a.source_column, a.target_column);
    EXECUTE format('CREATE OR REPLACE FUNCTION %s() RETURNS trigger '
                   'LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp '
                   'AS %L', a.trigger_function, body);
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', a.trigger_function);

    EXECUTE format('CREATE OR REPLACE TRIGGER imagekit_enqueue_insert AFTER INSERT ON %s '
                   'REFERENCING NEW TABLE AS imagekit_new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION imagekit.enqueue_insert(%L, %L, %L)',
                   a.tbl, a.key_column, a.source_column, a.target_column);
    EXECUTE format('CREATE OR REPLACE TRIGGER imagekit_enqueue_update AFTER UPDATE ON %s '
                   'REFERENCING OLD TABLE AS imagekit_old_rows NEW TABLE AS imagekit_new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION %s()', a.tbl, a.trigger_function);
    EXECUTE format('CREATE OR REPLACE TRIGGER imagekit_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION imagekit.on_truncate()', a.tbl);
END
$install$;
REVOKE ALL ON FUNCTION imagekit.install_triggers(regclass) FROM PUBLIC;

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
    IF coalesce(current_setting('imagekit.database', true), '') <> current_database()
       OR coalesce(current_setting('imagekit.workers', true), '0') = '0'
       OR NOT ('imagekit_ext' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))) THEN
        RAISE WARNING 'no imagekit worker serves database "%"', current_database()
            USING DETAIL = format('Rows of "%s" are queued, but nothing uploads them until a worker serves this database.', tbl),
                  HINT = 'Load imagekit_ext with shared_preload_libraries, set imagekit.workers above 0 and imagekit.database to this database.';
    END IF;

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

CREATE OR REPLACE FUNCTION imagekit.detach(tbl regclass)
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
    EXECUTE format('DROP TRIGGER IF EXISTS imagekit_truncate ON %s', tbl);
    EXECUTE format('DROP FUNCTION IF EXISTS %s()', fn);
    DELETE FROM imagekit.attachments a WHERE a.tbl = detach.tbl;
    -- every job: results in flight become stale and are not written
    DELETE FROM imagekit.jobs j WHERE j.tbl = detach.tbl;
    DELETE FROM imagekit.inbox i WHERE i.tbl = detach.tbl;
END
$$;

CREATE OR REPLACE FUNCTION imagekit.retry_fallbacks(tbl regclass DEFAULT NULL)
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
           result_url = NULL, pending_state = NULL,
           generation = j.generation + 1, updated_at = now()
     WHERE j.state = 'fallback' AND (retry_fallbacks.tbl IS NULL OR j.tbl = retry_fallbacks.tbl);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM imagekit.wake_worker_on_commit();
    END IF;
    RETURN n;
END
$$;

-- DDL on an attached table: a rename of the table or of an attached column
-- is followed (the triggers are made again with the new names; the worker
-- finds columns by name at claim and by number while a job is in flight);
-- dropping an attached column, or changing its type to one the triggers
-- cannot take, is refused, since every INSERT would fail afterwards.  Only
-- the tables the command changed are looked at, with their inheritance
-- children (a rename on a parent renames theirs).  A column number that no
-- longer matches its name while the name is still there comes from a
-- restored dump (columns are numbered anew): the number is found again.
CREATE FUNCTION imagekit.on_alter_table()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    col record;
    renamed boolean;
BEGIN
    IF to_regclass('imagekit.attachments') IS NULL THEN
        RETURN;                 -- the extension itself is being changed
    END IF;
    FOR a IN WITH RECURSIVE touched(relid) AS (
                 SELECT c.objid FROM pg_event_trigger_ddl_commands() c
                  WHERE c.classid = 'pg_class'::regclass
                 UNION
                 SELECT i.inhrelid FROM pg_inherits i JOIN touched t ON i.inhparent = t.relid)
             SELECT x.* FROM imagekit.attachments x
              WHERE x.tbl IN (SELECT relid FROM touched)
    LOOP
        renamed := false;
        FOR col IN SELECT c.role, c.attnum, c.old_name,
                          (SELECT t.attnum FROM pg_attribute t
                            WHERE t.attrelid = a.tbl AND t.attname = c.old_name
                              AND NOT t.attisdropped) AS attnum_of_name,
                          (SELECT t.attname FROM pg_attribute t
                            WHERE t.attrelid = a.tbl AND t.attnum = c.attnum
                              AND NOT t.attisdropped) AS name_of_attnum
                     FROM (VALUES ('key', a.key_attnum, a.key_column),
                                  ('source URL', a.source_attnum, a.source_column),
                                  ('target', a.target_attnum, a.target_column))
                          AS c(role, attnum, old_name)
        LOOP
            IF col.attnum_of_name IS NOT NULL AND col.attnum_of_name <> col.attnum THEN
                -- numbered anew (a restored dump): follow the name
                UPDATE imagekit.attachments x
                   SET key_attnum = CASE WHEN col.role = 'key' THEN col.attnum_of_name ELSE x.key_attnum END,
                       source_attnum = CASE WHEN col.role = 'source URL' THEN col.attnum_of_name ELSE x.source_attnum END,
                       target_attnum = CASE WHEN col.role = 'target' THEN col.attnum_of_name ELSE x.target_attnum END
                 WHERE x.tbl = a.tbl;
            ELSIF col.attnum_of_name IS NULL AND col.name_of_attnum IS NOT NULL THEN
                -- renamed: follow the number
                UPDATE imagekit.attachments x
                   SET key_column = CASE WHEN col.role = 'key' THEN col.name_of_attnum ELSE x.key_column END,
                       source_column = CASE WHEN col.role = 'source URL' THEN col.name_of_attnum ELSE x.source_column END,
                       target_column = CASE WHEN col.role = 'target' THEN col.name_of_attnum ELSE x.target_column END
                 WHERE x.tbl = a.tbl;
                renamed := true;
            ELSIF col.attnum_of_name IS NULL THEN
                RAISE EXCEPTION 'cannot drop column "%" of table "%"', col.old_name, a.tbl
                    USING ERRCODE = 'dependent_objects_still_exist',
                          DETAIL = format('It is the %s column of a table attached to imagekit.', col.role),
                          HINT = 'Detach the table with imagekit.detach() first.';
            END IF;
        END LOOP;

        FOR col IN SELECT c.role, t.attname, t.atttypid, format_type(t.atttypid, t.atttypmod) AS type_name
                     FROM imagekit.attachments x
                    CROSS JOIN LATERAL (VALUES ('key', x.key_column), ('source URL', x.source_column),
                                               ('target', x.target_column)) AS c(role, name)
                     JOIN pg_attribute t ON t.attrelid = x.tbl AND t.attname = c.name
                    WHERE x.tbl = a.tbl
        LOOP
            IF (col.role = 'key' AND col.type_name <> a.key_type)
               OR (col.role <> 'key' AND col.atttypid NOT IN ('text'::regtype, 'varchar'::regtype)) THEN
                RAISE EXCEPTION 'cannot change the type of column "%" of table "%" to %',
                                col.attname, a.tbl, col.type_name
                    USING ERRCODE = 'feature_not_supported',
                          DETAIL = format('It is the %s column of a table attached to imagekit.', col.role),
                          HINT = 'Detach the table with imagekit.detach() first, and attach it again after the change.';
            END IF;
        END LOOP;

        IF renamed THEN
            PERFORM imagekit.install_triggers(a.tbl);
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION imagekit.on_alter_table() FROM PUBLIC;
CREATE EVENT TRIGGER imagekit_alter_table ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION imagekit.on_alter_table();

-- The tables attached before this version get the new triggers.  Their
-- UPDATE trigger functions are not members of the extension (attach()
-- made them), and an extension script may not replace such an object: drop
-- each, create it again, and leave the new one outside the extension too.
DO $$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT x.tbl, x.trigger_function FROM imagekit.attachments x LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS %s() CASCADE', a.trigger_function);
        PERFORM imagekit.install_triggers(a.tbl);
        EXECUTE format('ALTER EXTENSION imagekit_ext DROP FUNCTION %s()', a.trigger_function);
    END LOOP;
END
$$;

-- the workers look at the queue again when this commits
SELECT imagekit.wake_worker_on_commit();
