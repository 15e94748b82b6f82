-- imagekit.attach / detach / retry_fallbacks: arguments and privileges.
-- (The background worker of the test cluster drains database "postgres",
-- not this one, so queued jobs stay queued here.)
CREATE TABLE imgs (id int PRIMARY KEY, url text, label text);
INSERT INTO imgs VALUES (1, 'https://example.com/a.png', 'a'), (2, NULL, 'b'), (3, 'https://example.com/c.png', 'c');

-- refused: no single-column primary key, no source column, not a table, temporary
CREATE TABLE nokey (url text);
SELECT imagekit.attach('nokey');
CREATE TABLE twokeys (a int, b int, url text, PRIMARY KEY (a, b));
SELECT imagekit.attach('twokeys');
SELECT imagekit.attach('imgs', source_column => 'picture');
CREATE VIEW imgs_view AS SELECT * FROM imgs;
SELECT imagekit.attach('imgs_view');
CREATE TEMP TABLE tmp_imgs (id int PRIMARY KEY, url text);
SELECT imagekit.attach('tmp_imgs');
SELECT imagekit.attach('imgs', source_column => 'url', target_column => 'url');
-- the triggers run as the extension's owner: no key type a table owner controls
CREATE TYPE mood AS ENUM ('a', 'b');
CREATE TABLE enumkey (id mood PRIMARY KEY, url text);
SELECT imagekit.attach('enumkey');
CREATE TABLE intsource (id int PRIMARY KEY, url int);
SELECT imagekit.attach('intsource');
CREATE TABLE inttarget (id int PRIMARY KEY, url text, imagekit_url int);
SELECT imagekit.attach('inttarget');
DROP TABLE enumkey, intsource, inttarget;
DROP TYPE mood;
SELECT imagekit.detach('imgs');

-- attach with backfill queues the rows that have a source and no URL
SELECT imagekit.attach('imgs', backfill => true);
SELECT imagekit.attach('imgs');
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'imgs'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'imgs' ORDER BY 1;
SELECT tgname, tgtype, tgoldtable, tgnewtable FROM pg_trigger
WHERE tgrelid = 'imgs'::regclass AND NOT tgisinternal ORDER BY 1;
SELECT row_key, source_url, state, attempts FROM imagekit.jobs ORDER BY row_key;

-- the triggers: inserts with no URL are queued, with a URL are not; a
-- changed source is queued again; other updates are not
INSERT INTO imgs (id, url) VALUES (4, 'https://example.com/d.png'), (5, '');
INSERT INTO imgs (id, url, imagekit_url) VALUES (6, 'https://example.com/f.png', 'https://ik.imagekit.io/x/f.png');
UPDATE imgs SET label = 'relabelled' WHERE id = 1;
UPDATE imgs SET url = 'https://example.com/a2.png' WHERE id = 1;
UPDATE imgs SET url = 'https://example.com/f2.png' WHERE id = 6;
SELECT row_key, source_url, state, generation FROM imagekit.jobs ORDER BY row_key;
-- inserts wait in the inbox until a worker moves them into the queue
SELECT tbl::regclass, row_key, source_url FROM imagekit.inbox ORDER BY row_key;

-- a bulk insert is queued by one statement-level trigger call
INSERT INTO imgs (id, url) SELECT g, 'https://example.com/bulk' || g || '.png' FROM generate_series(100, 1099) g;
SELECT (SELECT count(*) FROM imagekit.jobs) AS jobs, (SELECT count(*) FROM imagekit.inbox) AS inbox;

-- a rolled-back insert queues nothing
BEGIN;
INSERT INTO imgs (id, url) VALUES (7, 'https://example.com/g.png');
ROLLBACK;
SELECT count(*) FROM imagekit.inbox WHERE row_key = '7';

-- what the status view shows
SELECT tbl, queued, in_flight, done, fallback, oldest_queued_age IS NOT NULL AS has_age, last_error FROM imagekit.status;
SELECT count(*) FROM imagekit.stats();

-- retry_fallbacks re-queues fallback jobs only
UPDATE imagekit.jobs SET state = 'fallback', last_error = 'test' WHERE row_key IN ('2', '3', '4');
SELECT imagekit.retry_fallbacks('imgs');
SELECT imagekit.retry_fallbacks();

-- only the table's owner (or a superuser) may attach, detach or retry, and
-- only when granted
CREATE ROLE imagekit_attach_user;
CREATE TABLE other (id int PRIMARY KEY, url text);
GRANT EXECUTE ON FUNCTION imagekit.attach(regclass, name, name, boolean, jsonb, jsonb, boolean, text), imagekit.detach(regclass) TO imagekit_attach_user;
GRANT USAGE ON SCHEMA imagekit TO imagekit_attach_user;
SET ROLE imagekit_attach_user;
SELECT imagekit.attach('other');
SELECT imagekit.detach('imgs');
SELECT imagekit.retry_fallbacks('imgs');
RESET ROLE;
ALTER TABLE other OWNER TO imagekit_attach_user;
SET ROLE imagekit_attach_user;
SELECT imagekit.attach('other');
SELECT imagekit.detach('other');
RESET ROLE;
DROP TABLE other;
REVOKE ALL ON SCHEMA imagekit FROM imagekit_attach_user;
REVOKE ALL ON FUNCTION imagekit.attach(regclass, name, name, boolean, jsonb, jsonb, boolean, text), imagekit.detach(regclass) FROM imagekit_attach_user;
DROP ROLE imagekit_attach_user;

-- detach removes the triggers and queued jobs, and keeps the data
SELECT imagekit.detach('imgs');
SELECT imagekit.detach('imgs');
INSERT INTO imgs (id, url) VALUES (8, 'https://example.com/h.png');
SELECT (SELECT count(*) FROM imagekit.jobs) AS jobs, (SELECT count(*) FROM imagekit.inbox) AS inbox;
SELECT count(*) FROM imgs WHERE imagekit_url IS NOT NULL;
DROP TABLE nokey, twokeys CASCADE;

-- dropping an attached table takes its jobs, attachment and trigger function along
SELECT imagekit.attach('imgs', backfill => true);
SELECT count(*) FROM imagekit.jobs;
DROP TABLE imgs CASCADE;
SELECT count(*) AS jobs, (SELECT count(*) FROM imagekit.inbox) AS inbox,
       (SELECT count(*) FROM imagekit.attachments) AS attachments,
       (SELECT count(*) FROM pg_proc WHERE proname ~ '^enqueue_[0-9]+$') AS functions
FROM imagekit.jobs;
