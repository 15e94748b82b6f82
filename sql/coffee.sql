-- The coffee-catalogue migration (migrations/coffee_images.sql): table,
-- attachment, and the RPC rpc_upsert_coffee_image().
-- (The background workers of the test cluster drain database "postgres"
-- only (imagekit.database), not this one: jobs queued here stay queued
-- and the rows keep what the RPC stored.)
CREATE EXTENSION IF NOT EXISTS imagekit_ext;

-- Without the extension the migration stops at its first check and creates
-- nothing.  This runs in a database of its own, so as not to drop the
-- extension here.  The migration's text is not echoed (\set ECHO none),
-- only its errors: the check's, then one per statement of the aborted
-- transaction.  psql prefixes them with line numbers of the migration:
-- regenerate this test's expected output when the migration changes.
\set regress_db :DBNAME
CREATE DATABASE regress_coffee_noext;
\c regress_coffee_noext
\set ECHO none
\set SHOW_CONTEXT never
\i migrations/coffee_images.sql
\set SHOW_CONTEXT errors
\set ECHO all
SELECT to_regclass('public.coffee_images') IS NULL AS no_table,
       to_regproc('public.rpc_upsert_coffee_image') IS NULL AS no_function;
\c :regress_db
DROP DATABASE regress_coffee_noext;

-- The migration, applied twice: the second run finds everything in place
-- and changes nothing (its NOTICEs, "already exists, skipping", are not
-- shown; a WARNING or an ERROR would be).
SET client_min_messages = warning;
\set ECHO none
\i migrations/coffee_images.sql
\i migrations/coffee_images.sql
\set ECHO all
RESET client_min_messages;

-- the table as the migration and attach() left it: columns, indexes
-- (idx_coffee_images_imagekit_url from attach()), statement-level triggers
-- with transition tables
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull, attidentity,
       pg_get_expr(d.adbin, d.adrelid) AS default
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = 'public.coffee_images'::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = 'public' AND tablename = 'coffee_images' ORDER BY 1;
SELECT tgname, tgtype, tgenabled, tgoldtable, tgnewtable FROM pg_trigger
WHERE tgrelid = 'public.coffee_images'::regclass AND NOT tgisinternal ORDER BY 1;

-- attach() registered it, once
SELECT tbl, key_column, key_type, source_column, target_column
FROM imagekit.attachments WHERE tbl = 'public.coffee_images'::regclass;
-- with the result columns the worker fills (width, height, content_hash)
SELECT columns, options, notify_channel
FROM imagekit.attached WHERE tbl = 'public.coffee_images'::regclass;

-- the RPC: signature, SECURITY INVOKER, fixed search_path
SELECT pg_get_function_arguments(p.oid) AS args, pg_get_function_result(p.oid) AS result,
       p.prosecdef, p.proconfig, p.provolatile
FROM pg_proc p WHERE p.oid = 'public.rpc_upsert_coffee_image'::regproc;

-- uploads below get the file name derived from the URL, without a random
-- suffix, so that their CDN URLs are deterministic
SET imagekit.use_unique_file_name = off;

-- a 1x1 PNG; each test uploads its own bytes (png || a tag), so that none is
-- answered from imagekit.assets by the upload test's earlier upload
CREATE TEMP TABLE img AS
SELECT decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64') AS png;

-- What is queued: jobs, and inserts still in the inbox (no worker moves
-- them here: the test cluster's worker drains database "postgres").
CREATE TEMP VIEW queue AS
SELECT tbl::oid AS tbl, row_key, source_url, state, generation FROM imagekit.jobs
UNION ALL
SELECT tbl, row_key, source_url, 'queued', 1 FROM imagekit.inbox;

-- 1. A given CDN URL is stored as is, and nothing is queued.
SELECT coffee_id, url, alt, width, height, sort_order, source, content_hash, imagekit_url
FROM rpc_upsert_coffee_image(1, 'https://example.com/beans/ethiopia.jpg', p_alt => 'Ethiopia Yirgacheffe',
                             p_width => 800, p_height => 600, p_source => 'roaster',
                             p_imagekit_url => 'https://ik.imagekit.io/demo/coffee-images/ethiopia.jpg');
SELECT count(*) AS jobs FROM queue WHERE tbl = 'public.coffee_images'::regclass;

-- 2. Neither URL nor content: imagekit_url stays NULL and the insert
-- trigger queues one job for the row, with the source URL.
SELECT coffee_id, url, alt, width, height, sort_order, source, content_hash, imagekit_url
FROM rpc_upsert_coffee_image(2, 'https://example.com/beans/colombia.jpg', p_sort_order => 1);
SELECT j.source_url, j.state, j.generation, j.row_key = i.id::text AS row_key_is_id
FROM queue j JOIN coffee_images i ON j.row_key = i.id::text
WHERE j.tbl = 'public.coffee_images'::regclass;

-- 3. Content: uploaded at once.  The file name is the URL's last path
-- segment without query and fragment, other characters replaced by "_".
SELECT coffee_id, url, alt, width, height, sort_order, content_hash = encode(sha256(png || '\x03'::bytea), 'hex') AS hash_is_sha256,
       imagekit_url
FROM img, rpc_upsert_coffee_image(3, 'https://example.com/beans/Kenya%20AA (1).png?size=large#top',
                                  p_alt => 'Kenya AA', p_content => png || '\x03'::bytea);
SELECT id AS kenya_id FROM coffee_images WHERE coffee_id = 3 \gset
-- really uploaded (not a dedup hit), and not queued
SELECT name, file_path, width, height FROM imagekit.assets
WHERE content_hash = (SELECT content_hash FROM coffee_images WHERE id = :kenya_id);
SELECT count(*) AS jobs FROM queue WHERE tbl = 'public.coffee_images'::regclass;

-- ... and a URL with no path segment gives the name "image"
SELECT url, width, height, imagekit_url
FROM img, rpc_upsert_coffee_image(4, 'https://example.com/?id=4', p_content => png || '\x04'::bytea);

-- 4. Upserting the same image again is idempotent: same row, same
-- imagekit_url, nothing new uploaded or queued.
SELECT id = :kenya_id AS same_id, coffee_id, url, alt, width, height, sort_order, imagekit_url
FROM img, rpc_upsert_coffee_image(3, 'https://example.com/beans/Kenya%20AA (1).png?size=large#top',
                                  p_alt => 'Kenya AA', p_content => png || '\x03'::bytea);
-- the queued image too: still NULL, still the one job, not re-queued
SELECT imagekit_url FROM rpc_upsert_coffee_image(2, 'https://example.com/beans/colombia.jpg', p_sort_order => 1);
SELECT source_url, state, generation FROM queue WHERE tbl = 'public.coffee_images'::regclass;
-- an update without a URL keeps the stored one; alt and source are replaced
SELECT alt, width, height, source, imagekit_url
FROM rpc_upsert_coffee_image(1, 'https://example.com/beans/ethiopia.jpg', p_alt => 'Ethiopia');
SELECT count(*) AS rows FROM coffee_images;

-- 5. A failed upload: a WARNING, and the source URL as imagekit_url,
-- not queued (imagekit.max_file_size, a superuser setting, refuses the
-- content before any request).
SET imagekit.max_file_size = 10;
SELECT coffee_id, url, width, height, content_hash, imagekit_url
FROM img, rpc_upsert_coffee_image(5, 'https://example.com/beans/brazil.png', p_content => png || '\x05'::bytea);
-- a failed upload does not replace a CDN URL the row already has
SELECT id = :kenya_id AS same_id, imagekit_url
FROM img, rpc_upsert_coffee_image(3, 'https://example.com/beans/Kenya%20AA (1).png?size=large#top',
                                  p_alt => 'Kenya AA', p_content => png || '\x03ff'::bytea);
RESET imagekit.max_file_size;
SELECT count(*) AS jobs FROM queue WHERE tbl = 'public.coffee_images'::regclass;

-- 6. As an application role (SECURITY INVOKER): it needs rights on the
-- table, and EXECUTE on imagekit_upload() to upload; without the latter the
-- upload falls back.  Queueing needs no rights on schema imagekit.
CREATE ROLE regress_coffee_app;
GRANT SELECT, INSERT, UPDATE ON coffee_images TO regress_coffee_app;
GRANT SELECT ON img TO regress_coffee_app;
SET ROLE regress_coffee_app;
SELECT url, imagekit_url
FROM img, rpc_upsert_coffee_image(6, 'https://example.com/beans/peru.png', p_content => png || '\x06'::bytea);
SELECT url, imagekit_url FROM rpc_upsert_coffee_image(6, 'https://example.com/beans/sumatra.png');
RESET ROLE;
GRANT EXECUTE ON FUNCTION imagekit_upload(bytea, text) TO regress_coffee_app;
SET ROLE regress_coffee_app;
SELECT url, width, height, imagekit_url
FROM img, rpc_upsert_coffee_image(6, 'https://example.com/beans/peru.png', p_content => png || '\x06'::bytea);
RESET ROLE;
SELECT source_url, state FROM queue
WHERE tbl = 'public.coffee_images'::regclass ORDER BY source_url;
REVOKE EXECUTE ON FUNCTION imagekit_upload(bytea, text) FROM regress_coffee_app;
REVOKE ALL ON coffee_images, img FROM regress_coffee_app;
DROP ROLE regress_coffee_app;

-- bad arguments
SELECT rpc_upsert_coffee_image(7, NULL);
SELECT rpc_upsert_coffee_image(NULL, 'https://example.com/beans/x.png');

-- what the table holds now
SELECT coffee_id, url, alt, width, height, sort_order, source, content_hash IS NOT NULL AS has_hash, imagekit_url
FROM coffee_images ORDER BY coffee_id, url;

RESET imagekit.use_unique_file_name;
SELECT imagekit.detach('public.coffee_images');
DROP FUNCTION rpc_upsert_coffee_image(bigint, text, text, integer, integer, integer, text, bytea, text);
DROP TABLE coffee_images, img;
