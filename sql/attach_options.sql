-- imagekit.attach(options, columns, notify) and imagekit.configure():
-- what they take, what they refuse, and what DDL may do afterwards.
-- (Nothing is uploaded here: the workers of the test cluster drain database
-- "postgres" only.  test/t/016_options.pl checks what reaches the stand-in.)
\set SHOW_CONTEXT never
CREATE TABLE pics (id bigint PRIMARY KEY, url text, labels text[], extra jsonb,
                   w integer, h integer, bytes bigint, fid text, hash varchar(64),
                   small smallint, note text);

-- options: each refused with its reason
SELECT imagekit.attach('pics', options => '[]');
SELECT imagekit.attach('pics', options => '{"folders": "a"}');
SELECT imagekit.attach('pics', options => '{"folder": null}');
SELECT imagekit.attach('pics', options => '{"folder": "a b"}');
SELECT imagekit.attach('pics', options => '{"folder": 7}');
SELECT imagekit.attach('pics', options => '{"folder": "/a//b"}');
SELECT imagekit.attach('pics', options => '{"folder": "/a/../b"}');
SELECT imagekit.attach('pics', options => '{"transformation": "w-100"}');
SELECT imagekit.attach('pics', options => '{"transformation": {"pre": "w-1", "mid": "x"}}');
SELECT imagekit.attach('pics', options => '{"transformation": {"post": [{"type": "resize"}]}}');
SELECT imagekit.attach('pics', options => '{"transformation": {"post": [{"type": "transformation"}]}}');
SELECT imagekit.attach('pics', options => '{"transformation": {"post": [{"type": "abs", "value": "a", "protocol": "rtmp"}]}}');
SELECT imagekit.attach('pics', options => '{"tags": "a,b"}');
SELECT imagekit.attach('pics', options => '{"tags": ["a", 1]}');
SELECT imagekit.attach('pics', options => '{"tags": ["50%"]}');
SELECT imagekit.attach('pics', options => '{"tags": ["a,b"]}');
SELECT imagekit.attach('pics', options => '{"tags": [" "]}');
SELECT imagekit.attach('pics', options => jsonb_build_object('tags', jsonb_build_array(repeat('x', 300), repeat('y', 201))));
SELECT imagekit.attach('pics', options => '{"custom_metadata": ["a"]}');
SELECT imagekit.attach('pics', options => '{"is_private_file": "true"}');
SELECT imagekit.attach('pics', options => '{"extensions": {"name": "remove-bg"}}');
SELECT imagekit.attach('pics', options => '{"extensions": [{"options": {}}]}');
SELECT imagekit.attach('pics', options => '{"tags_column": 1}');
-- columns: unknown fields, missing columns, wrong types, reused columns
SELECT imagekit.attach('pics', columns => '["w"]');
SELECT imagekit.attach('pics', columns => '{"depth": "w"}');
SELECT imagekit.attach('pics', columns => '{"width": 1}');
SELECT imagekit.attach('pics', columns => '{"width": "nope"}');
SELECT imagekit.attach('pics', columns => '{"width": "small"}');
SELECT imagekit.attach('pics', columns => '{"size": "w"}');
SELECT imagekit.attach('pics', columns => '{"file_id": "bytes"}');
SELECT imagekit.attach('pics', columns => '{"width": "url"}');
SELECT imagekit.attach('pics', columns => '{"width": "w", "height": "w"}');
ALTER TABLE pics ADD COLUMN gen integer GENERATED ALWAYS AS (id * 2) STORED;
SELECT imagekit.attach('pics', columns => '{"width": "gen"}');
ALTER TABLE pics DROP COLUMN gen;
SELECT imagekit.attach('pics', options => '{"tags_column": "extra"}');
SELECT imagekit.attach('pics', options => '{"custom_metadata_column": "labels"}');
SELECT imagekit.attach('pics', options => '{"tags_column": "labels"}', columns => '{"file_id": "labels"}');
-- notifications: a channel name PostgreSQL takes
SELECT imagekit.attach('pics', notify => true, notify_channel => '');
SELECT imagekit.attach('pics', notify => true, notify_channel => repeat('c', 64));
-- nothing of the refused calls stayed
SELECT count(*) FROM imagekit.attachments WHERE tbl = 'pics'::regclass;
SELECT count(*) FROM imagekit.attached_columns WHERE tbl = 'pics'::regclass;

-- all of it at once
SELECT imagekit.attach('pics', options => '{
    "folder": "coffee/pics",
    "transformation": {"pre": "w-800,h-800", "post": [{"type": "thumbnail", "value": "w-150"},
                                                      {"type": "abs", "value": "sr-240_360", "protocol": "hls"}]},
    "tags": ["coffee", "pics"],
    "custom_metadata": {"roaster": "north"},
    "is_private_file": false,
    "extensions": [{"name": "google-auto-tagging", "maxTags": 5, "minConfidence": 95}],
    "tags_column": "labels",
    "custom_metadata_column": "extra"}',
    columns => '{"width": "w", "height": "h", "size": "bytes", "file_id": "fid", "content_hash": "hash"}',
    notify => true);
SELECT tbl, options, tags_column, custom_metadata_column, columns, notify_channel
FROM imagekit.attached WHERE tbl = 'pics'::regclass;

-- what a job of a row is uploaded with: the table's options and the row's
INSERT INTO pics (id, url, labels, extra) VALUES
    (1, 'https://example.com/1.png', '{light,coffee}', '{"origin": "kenya", "roaster": "south"}'),
    (2, 'https://example.com/2.png', NULL, NULL),
    (3, 'https://example.com/3.png', '{"50%"}', NULL),
    (4, 'https://example.com/4.png', NULL, '"text"'),
    (5, 'https://example.com/5.png', ARRAY['coffee', NULL, repeat('t', 490)], NULL),
    (6, 'https://example.com/6.png', ARRAY[repeat('t', 491)], NULL);
SELECT id, left(o ->> 'tags', 40) AS tags, o -> 'custom_metadata' AS custom_metadata, o -> 'error' AS error
FROM pics, imagekit.job_options('pics', labels, extra) AS o ORDER BY id;

-- DDL: a rename is followed; a drop or an unfit type is refused
ALTER TABLE pics RENAME COLUMN w TO width_px;
ALTER TABLE pics RENAME COLUMN labels TO tag_list;
SELECT role, column_name FROM imagekit.attached_columns WHERE tbl = 'pics'::regclass ORDER BY role;
ALTER TABLE pics DROP COLUMN width_px;
ALTER TABLE pics DROP COLUMN tag_list;
ALTER TABLE pics ALTER COLUMN h TYPE text;
ALTER TABLE pics ALTER COLUMN h TYPE bigint;
ALTER TABLE pics DROP COLUMN note;

-- configure(): replaces what it is given, leaves the rest
SELECT imagekit.configure('pics', options => '{"folder": "other"}');
SELECT options, tags_column, custom_metadata_column, columns, notify_channel
FROM imagekit.attached WHERE tbl = 'pics'::regclass;
SELECT imagekit.configure('pics', columns => '{}', notify => false);
SELECT options, columns, notify_channel FROM imagekit.attached WHERE tbl = 'pics'::regclass;
SELECT imagekit.configure('pics', notify_channel => 'pics_ready');
SELECT notify_channel FROM imagekit.attached WHERE tbl = 'pics'::regclass;
-- turned on again, a table keeps its channel
SELECT imagekit.configure('pics', notify => true);
SELECT notify_channel FROM imagekit.attached WHERE tbl = 'pics'::regclass;
SELECT imagekit.configure('pics', options => '{"tags": ["x%"]}');
SELECT options FROM imagekit.attached WHERE tbl = 'pics'::regclass;
CREATE TABLE unattached (id int PRIMARY KEY, url text);
SELECT imagekit.configure('unattached', options => '{}');
-- only the table's owner (or a superuser) configures it
CREATE ROLE imagekit_config_user;
GRANT USAGE ON SCHEMA imagekit TO imagekit_config_user;
GRANT EXECUTE ON FUNCTION imagekit.configure(regclass, jsonb, jsonb, boolean, text) TO imagekit_config_user;
SET ROLE imagekit_config_user;
SELECT imagekit.configure('pics', options => '{}');
RESET ROLE;
REVOKE ALL ON FUNCTION imagekit.configure(regclass, jsonb, jsonb, boolean, text) FROM imagekit_config_user;
REVOKE ALL ON SCHEMA imagekit FROM imagekit_config_user;
DROP ROLE imagekit_config_user;

-- detach and DROP TABLE forget the columns
SELECT imagekit.configure('pics', columns => '{"width": "width_px"}');
SELECT imagekit.detach('pics');
SELECT count(*) FROM imagekit.attached_columns WHERE tbl = 'pics'::regclass;
SELECT imagekit.attach('pics', columns => '{"width": "width_px"}');
DROP TABLE pics;
SELECT count(*) FROM imagekit.attached_columns;
DROP TABLE unattached;
