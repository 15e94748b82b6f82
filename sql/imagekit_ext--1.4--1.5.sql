/* imagekit_ext 1.4 -> 1.5: the queue's statements planned once, results recorded in batches */
\echo Use "ALTER EXTENSION imagekit_ext UPDATE TO '1.5'" to load this file. \quit

/*
 * The worker's statements run thousands of times a minute, so none may be
 * planned again on each run.  A LANGUAGE sql function that cannot be
 * inlined (a SET clause, a sub-select in its body) has its body planned
 * anew in every statement that calls it, and plpgsql re-plans a statement
 * whenever a custom plan looks cheaper than the generic one; 1.4's claim
 * did both, and spent more time planning than claiming.  1.5 keeps the
 * plans: is_served() becomes plpgsql (its plans live as long as the
 * session), the claim does its look-ups itself and keeps one generic plan.
 */

-- Whether the workers serve table "tbl": it is attached and its INSERT
-- trigger is there (a table restored by pg_restore before its triggers,
-- say, is not served yet).
CREATE OR REPLACE FUNCTION imagekit.is_served(tbl regclass)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM imagekit.attachments a WHERE a.tbl = is_served.tbl)
       AND EXISTS (SELECT FROM pg_trigger t
                    WHERE t.tgrelid = is_served.tbl AND t.tgname = 'imagekit_enqueue_insert');
END
$$;

-- The claim of 1.4, with the served tables, the columns' numbers and the
-- result columns looked up in the statement itself, planned once: its one
-- generic plan walks indexes only (the queued jobs in order, then the
-- claimed ones and the catalogs by key), whatever the LIMIT and the size
-- of the queue, since a generic plan cannot know how few rows LIMIT keeps.
CREATE OR REPLACE FUNCTION imagekit.claim(worker integer, token bigint, lim integer, lease interval)
RETURNS TABLE (id bigint, generation integer, attempts integer, tbl regclass,
               nspname name, relname name, key_type text,
               key_attnum smallint, source_attnum smallint, target_attnum smallint,
               row_key text, source_url text, pending_state text,
               result_url text, last_error text, last_http_status integer,
               options jsonb, result_columns smallint[], notify_channel text,
               content_hash text, option_columns smallint[])
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_sort = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH c AS (
        SELECT q.id, q.tbl FROM imagekit.jobs q
         WHERE q.state = 'queued' AND q.next_attempt_at <= now()
           AND q.tbl = ANY (ARRAY(SELECT a.tbl FROM imagekit.attachments a
                                   WHERE EXISTS (SELECT FROM pg_trigger t
                                                  WHERE t.tgrelid = a.tbl
                                                    AND t.tgname = 'imagekit_enqueue_insert')))
         ORDER BY q.next_attempt_at
         LIMIT lim
         FOR UPDATE OF q SKIP LOCKED),
    -- what the claimed jobs' tables are attached with, once per table
    cfg AS MATERIALIZED (
        SELECT a.tbl,
               (SELECT n.nspname FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
                 WHERE r.oid = a.tbl) AS nspname,
               (SELECT r.relname FROM pg_class r WHERE r.oid = a.tbl) AS relname,
               a.key_type, a.options, a.notify_channel,
               (SELECT t.attnum FROM pg_attribute t WHERE t.attrelid = a.tbl AND t.attname = a.key_column) AS key_attnum,
               (SELECT t.attnum FROM pg_attribute t WHERE t.attrelid = a.tbl AND t.attname = a.source_column) AS source_attnum,
               (SELECT t.attnum FROM pg_attribute t WHERE t.attrelid = a.tbl AND t.attname = a.target_column) AS target_attnum,
               -- (in the order of IkResultColumn, src/ik_queue.h)
               ARRAY(SELECT coalesce(t.attnum, 0::smallint)
                       FROM unnest(ARRAY['width', 'height', 'size', 'file_id', 'file_path',
                                         'name', 'content_hash']) WITH ORDINALITY o(role, i)
                       LEFT JOIN imagekit.attached_columns x ON x.tbl = a.tbl AND x.role = o.role
                       LEFT JOIN pg_attribute t ON t.attrelid = a.tbl AND t.attname = x.column_name
                                               AND NOT t.attisdropped
                      ORDER BY o.i) AS result_columns,
               ARRAY(SELECT coalesce(t.attnum, 0::smallint)
                       FROM unnest(ARRAY['tags', 'custom_metadata']) WITH ORDINALITY o(role, i)
                       LEFT JOIN imagekit.attached_columns x ON x.tbl = a.tbl AND x.role = o.role
                       LEFT JOIN pg_attribute t ON t.attrelid = a.tbl AND t.attname = x.column_name
                                               AND NOT t.attisdropped
                      ORDER BY o.i) AS option_columns
          FROM imagekit.attachments a
         WHERE a.tbl = ANY (ARRAY(SELECT c.tbl FROM c)))
    UPDATE imagekit.jobs j
       SET state = 'in_flight', worker = claim.worker, lease_token = claim.token,
           attempts = j.attempts + 1, lease_expires_at = now() + lease,
           updated_at = now()
      FROM cfg
     WHERE j.id = ANY (ARRAY(SELECT c.id FROM c)) AND cfg.tbl = j.tbl
    RETURNING j.id, j.generation, j.attempts - 1, j.tbl, cfg.nspname,
              cfg.relname, cfg.key_type, cfg.key_attnum, cfg.source_attnum, cfg.target_attnum,
              j.row_key, j.source_url, j.pending_state,
              j.result_url, j.last_error, j.last_http_status,
              cfg.options, cfg.result_columns, cfg.notify_channel, j.content_hash,
              cfg.option_columns;
END
$$;

/*
 * The worker records the jobs it finished together, in one transaction:
 * each job's row is stored and its job row locked (SELECT ... FOR UPDATE:
 * it is still this worker's, at this generation) in a subtransaction of
 * its own, and then this one statement records them all, so that the
 * statement's work (the count trigger) is done once per batch instead of
 * once per job.  The arrays are parallel, one element per job, with the
 * arguments of imagekit.record(); returns the jobs recorded.  (The jobs
 * are found through the primary key whatever the generic plan thinks of
 * the arrays' length: id = ANY.)
 */
CREATE FUNCTION imagekit.record_batch(token bigint, jobs bigint[], gens integer[],
                                      new_states text[], attempts_deltas integer[],
                                      delays_ms bigint[], errors text[],
                                      http_statuses integer[], hashes text[],
                                      urls text[], pendings text[])
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    UPDATE imagekit.jobs j
       SET state = r.new_state, attempts = j.attempts + r.attempts_delta,
           next_attempt_at = now() + CASE
               WHEN r.pending IS NULL OR j.pending_state IS NULL
                   THEN r.delay_ms * interval '1 millisecond'
               ELSE greatest(r.delay_ms * interval '1 millisecond',
                             least(interval '1 minute', (now() - j.pending_since) / 2))
           END,
           lease_expires_at = NULL,
           worker = NULL, lease_token = NULL, last_error = r.error,
           last_http_status = r.http_status,
           content_hash = coalesce(r.hash, j.content_hash), result_url = r.url,
           pending_state = r.pending,
           pending_since = CASE
               WHEN r.pending IS NULL THEN NULL
               WHEN j.pending_state IS NULL THEN now()
               ELSE j.pending_since
           END,
           updated_at = now()
      FROM unnest(jobs, gens, new_states, attempts_deltas, delays_ms, errors,
                  http_statuses, hashes, urls, pendings)
           AS r(id, gen, new_state, attempts_delta, delay_ms, error, http_status,
                hash, url, pending)
     WHERE j.id = ANY (record_batch.jobs) AND j.id = r.id AND j.generation = r.gen
       AND j.state = 'in_flight' AND j.lease_token = record_batch.token
    RETURNING j.id;
END
$$;
REVOKE ALL ON FUNCTION imagekit.record_batch(bigint, bigint[], integer[], text[], integer[],
    bigint[], text[], integer[], text[], text[], text[]) FROM PUBLIC;

-- Every claim and every record updates its job row, and so every index of
-- imagekit.jobs whose rows it matches: (tbl, state) served only
-- imagekit.retry_fallbacks(), which an index of the fallbacks alone serves
-- as well, at no cost to the jobs that do not fall back.
DROP INDEX imagekit.jobs_state_idx;
CREATE INDEX jobs_fallback_idx ON imagekit.jobs (tbl) WHERE state = 'fallback';

-- The queue's tables fill and empty again and again.  When autovacuum
-- truncates the empty pages at the end of one, it holds an ACCESS
-- EXCLUSIVE lock on it, which the attached tables' triggers (the inbox),
-- the workers and imagekit.status then wait for (a wait of 27 ms logged
-- in a drain of 400 000 rows; single readings of the view of 98-115 ms in
-- the benchmark's drains of a million).  Their pages stay for the next
-- rows instead; VACUUM (TRUNCATE) gives them back when wanted.
ALTER TABLE imagekit.inbox SET (vacuum_truncate = false);
ALTER TABLE imagekit.jobs SET (vacuum_truncate = false);
ALTER TABLE imagekit.job_counts SET (vacuum_truncate = false);
