/* imagekit_ext 1.3 -> 1.4: delivery URLs and signing in SQL */
\echo Use "ALTER EXTENSION imagekit_ext UPDATE TO '1.4'" to load this file. \quit

-- The delivery URL of "src" (a path, or an absolute URL such as a stored
-- imagekit_url), with a transformation in the query (the SDKs' default) or
-- the path, signed when "signed" or "expires_in" > 0 asks for it, as the
-- official SDKs build it.  Signing uses imagekit.private_key, which never
-- leaves the server: EXECUTE is for the roles it is granted to.
CREATE FUNCTION imagekit.url(src text,
                             transformation text DEFAULT NULL,
                             signed boolean DEFAULT false,
                             expires_in integer DEFAULT NULL,
                             transformation_position text DEFAULT 'query',
                             url_endpoint text DEFAULT NULL)
RETURNS text
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'imagekit_url';
REVOKE ALL ON FUNCTION imagekit.url(text, text, boolean, integer, text, text) FROM PUBLIC;

/*
 * Per-table upload options, the columns that take what ImageKit said about
 * an image, and completion notifications.
 *
 * attachments.options: the fixed upload options of the table, as
 * imagekit.check_options() left them (they override imagekit.folder and
 * imagekit.transformation); '{}' for a table attached before 1.4, which
 * therefore uploads as it did.  notify_channel: where the worker tells
 * listeners that a row is ready, in the transaction that stores its result
 * (NULL: no notification).
 */
ALTER TABLE imagekit.attachments
    ADD COLUMN options jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN notify_channel text
        CHECK (notify_channel <> '' AND octet_length(notify_channel) < 64);

/*
 * The other columns of an attached table that the pipeline reads or writes,
 * by role: "tags" (text[]) and "custom_metadata" (jsonb) are read from the
 * row and sent with its upload; "width", "height", "size", "file_id",
 * "file_path", "name" and "content_hash" are written with its URL.  Names
 * and numbers, as for the key, source and target columns of
 * imagekit.attachments (imagekit.on_alter_table_columns() follows renames).
 */
CREATE TABLE imagekit.attached_columns (
    tbl regclass NOT NULL,
    role text NOT NULL,
    column_name name NOT NULL,
    attnum smallint NOT NULL,
    PRIMARY KEY (tbl, role)
);
REVOKE ALL ON imagekit.attached_columns FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('imagekit.attached_columns', '');

/*
 * An asset is a content uploaded with given options: the same bytes uploaded
 * by two tables whose options differ (a folder, tags, private or not) are
 * two files.  options_digest: the SHA-256 of the options the upload was sent
 * with, '' for none (imagekit_upload(), and tables without options).
 */
ALTER TABLE imagekit.assets
    ADD COLUMN options_digest text NOT NULL DEFAULT ''
        CHECK (options_digest ~ '^([0-9a-f]{64})?$');
ALTER TABLE imagekit.assets DROP CONSTRAINT assets_pkey;
ALTER TABLE imagekit.assets ADD PRIMARY KEY (content_hash, options_digest);

-- The types a column of each role may have.
CREATE FUNCTION imagekit.column_role_types(role text)
RETURNS regtype[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE role
        WHEN 'tags' THEN ARRAY['text[]', 'varchar[]']::regtype[]
        WHEN 'custom_metadata' THEN ARRAY['jsonb', 'json']::regtype[]
        WHEN 'width' THEN ARRAY['integer', 'bigint', 'numeric']::regtype[]
        WHEN 'height' THEN ARRAY['integer', 'bigint', 'numeric']::regtype[]
        WHEN 'size' THEN ARRAY['bigint', 'numeric']::regtype[]
        WHEN 'file_id' THEN ARRAY['text', 'varchar']::regtype[]
        WHEN 'file_path' THEN ARRAY['text', 'varchar']::regtype[]
        WHEN 'name' THEN ARRAY['text', 'varchar']::regtype[]
        WHEN 'content_hash' THEN ARRAY['text', 'varchar']::regtype[]
    END
$$;

-- ImageKit's rules for tags (an array of text), in one place: the first
-- tag that is empty or holds "%" (ImageKit refuses it) or "," (the tags
-- travel comma-joined), and how many characters they have in all (ImageKit
-- takes at most 500).
CREATE FUNCTION imagekit.tag_problems(tags jsonb, OUT bad_tag text, OUT total integer)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (SELECT t.t FROM jsonb_array_elements_text(tags) WITH ORDINALITY t(t, o)
             WHERE btrim(t.t) = '' OR t.t ~ '[%,]' ORDER BY t.o LIMIT 1),
           (SELECT coalesce(sum(length(t.t)), 0)::integer FROM jsonb_array_elements_text(tags) t(t))
$$;

/*
 * Check upload options and return them as stored: an object with any of
 * folder (text), transformation ({"pre": text, "post": [...]}, as
 * ImageKit's upload API takes it), tags (array of text), custom_metadata
 * (object), is_private_file (boolean) and extensions (array of objects with
 * a "name"), under ImageKit's limits.  "what" names them in messages.
 */
CREATE FUNCTION imagekit.check_options(opts jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text;
    item jsonb;
    tags record;
    allowed CONSTANT text[] := ARRAY['folder', 'transformation', 'tags', 'custom_metadata',
                                     'is_private_file', 'extensions'];
BEGIN
    IF opts IS NULL THEN
        RETURN '{}';
    END IF;
    IF jsonb_typeof(opts) <> 'object' THEN
        RAISE EXCEPTION 'invalid upload options: not a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k IN SELECT jsonb_object_keys(opts) LOOP
        IF NOT k = ANY (allowed) THEN
            RAISE EXCEPTION 'invalid upload options: unknown option "%"', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'The options are ' || array_to_string(allowed, ', ')
                             || ', tags_column and custom_metadata_column.';
        END IF;
        IF opts -> k = 'null' THEN
            RAISE EXCEPTION 'invalid upload options: option "%" is null', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Leave the option out instead.';
        END IF;
    END LOOP;

    -- (the rules of imagekit.folder)
    IF opts ? 'folder' AND (jsonb_typeof(opts -> 'folder') <> 'string'
                            OR opts ->> 'folder' !~ '^[A-Za-z0-9/_.-]{0,255}$'
                            OR opts ->> 'folder' ~ '//'
                            OR string_to_array(opts ->> 'folder', '/') && ARRAY['.', '..']) THEN
        RAISE EXCEPTION 'invalid upload options: "folder" must be a path of letters, digits, "/", "_", "-" and "."'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'At most 255 characters, and no empty, "." or ".." segment.';
    END IF;

    IF opts ? 'transformation' THEN
        item := opts -> 'transformation';
        IF jsonb_typeof(item) <> 'object' OR EXISTS (SELECT FROM jsonb_object_keys(item) x WHERE x NOT IN ('pre', 'post'))
           OR (item ? 'pre' AND jsonb_typeof(item -> 'pre') <> 'string')
           OR (item ? 'post' AND jsonb_typeof(item -> 'post') <> 'array') THEN
            RAISE EXCEPTION 'invalid upload options: "transformation" must be an object with "pre" (text) and/or "post" (an array)'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example {"pre": "w-800,h-800", "post": [{"type": "thumbnail", "value": "w-150,h-150"}]}.';
        END IF;
        FOR item IN SELECT jsonb_array_elements(coalesce(opts -> 'transformation' -> 'post', '[]')) LOOP
            IF jsonb_typeof(item) <> 'object'
               OR EXISTS (SELECT FROM jsonb_each(item) e WHERE jsonb_typeof(e.value) <> 'string')
               OR NOT (CASE item ->> 'type'
                   WHEN 'transformation' THEN item ? 'value' AND item - 'type' - 'value' = '{}'
                   WHEN 'gif-to-video' THEN item - 'type' - 'value' = '{}'
                   WHEN 'thumbnail' THEN item - 'type' - 'value' = '{}'
                   WHEN 'abs' THEN item ? 'value' AND item ->> 'protocol' IN ('hls', 'dash')
                                   AND item - 'type' - 'value' - 'protocol' = '{}'
                   ELSE false END) THEN
                RAISE EXCEPTION 'invalid upload options: post-transformation % is not one ImageKit takes', item
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Each is {"type": "transformation", "value": ...}, {"type": "gif-to-video"}, {"type": "thumbnail"} or {"type": "abs", "value": ..., "protocol": "hls" or "dash"}.';
            END IF;
        END LOOP;
    END IF;

    IF opts ? 'tags' THEN
        IF jsonb_typeof(opts -> 'tags') <> 'array' THEN
            RAISE EXCEPTION 'invalid upload options: "tags" must be an array of text'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOR item IN SELECT jsonb_array_elements(opts -> 'tags') LOOP
            IF jsonb_typeof(item) <> 'string' THEN
                RAISE EXCEPTION 'invalid upload options: tag % is not text', item
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
        SELECT * INTO tags FROM imagekit.tag_problems(opts -> 'tags');
        IF tags.bad_tag IS NOT NULL THEN
            RAISE EXCEPTION 'invalid upload options: tag "%" is empty or holds "%%" or ","', tags.bad_tag
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'ImageKit takes no "%" in a tag, and tags travel comma-separated.';
        END IF;
        IF tags.total > 500 THEN
            RAISE EXCEPTION 'invalid upload options: the tags have % characters in all', tags.total
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'ImageKit takes at most 500.';
        END IF;
    END IF;

    IF opts ? 'custom_metadata' AND jsonb_typeof(opts -> 'custom_metadata') <> 'object' THEN
        RAISE EXCEPTION 'invalid upload options: "custom_metadata" must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF opts ? 'is_private_file' AND jsonb_typeof(opts -> 'is_private_file') <> 'boolean' THEN
        RAISE EXCEPTION 'invalid upload options: "is_private_file" must be true or false'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF opts ? 'extensions' AND (jsonb_typeof(opts -> 'extensions') <> 'array'
        OR EXISTS (SELECT FROM jsonb_array_elements(opts -> 'extensions') e
                    WHERE jsonb_typeof(e) <> 'object' OR jsonb_typeof(e -> 'name') IS DISTINCT FROM 'string')) THEN
        RAISE EXCEPTION 'invalid upload options: "extensions" must be an array of objects with a "name"'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example [{"name": "google-auto-tagging", "maxTags": 5, "minConfidence": 95}].';
    END IF;
    RETURN opts;
END
$$;


/*
 * The options one job's upload is sent with: the table's, with the tags and
 * the custom metadata read from its row (by the worker, as the table's
 * owner) added: tags after the table's, without repeats; the row's metadata
 * keys win.  A row whose values ImageKit would refuse gets {"error": "..."},
 * and its job falls back without an upload.
 */
CREATE FUNCTION imagekit.job_options(tbl regclass, row_tags text[], row_meta jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    opts jsonb;
    all_tags jsonb;
    tags record;
BEGIN
    SELECT a.options INTO opts FROM imagekit.attachments a WHERE a.tbl = job_options.tbl;
    IF row_tags IS NOT NULL THEN
        SELECT jsonb_agg(to_jsonb(w.t) ORDER BY w.o) INTO all_tags
          FROM (SELECT z.t, min(z.o) AS o
                  FROM (SELECT x.t, x.o FROM jsonb_array_elements_text(coalesce(opts -> 'tags', '[]')) WITH ORDINALITY x(t, o)
                        UNION ALL
                        SELECT y.t, 1000000 + y.o FROM unnest(row_tags) WITH ORDINALITY y(t, o)
                         WHERE y.t IS NOT NULL) z
                 GROUP BY z.t) w;
        SELECT * INTO tags FROM imagekit.tag_problems(all_tags);
        IF tags.bad_tag IS NOT NULL THEN
            RETURN jsonb_build_object('error', 'a tag of the row is empty or holds "%" or ","');
        END IF;
        IF tags.total > 500 THEN
            RETURN jsonb_build_object('error', 'the tags of the row have more than 500 characters in all');
        END IF;
        IF all_tags IS NOT NULL THEN
            opts := jsonb_set(opts, '{tags}', all_tags);
        END IF;
    END IF;
    IF row_meta IS NOT NULL AND row_meta <> 'null' THEN
        IF jsonb_typeof(row_meta) <> 'object' THEN
            RETURN jsonb_build_object('error', 'the custom metadata of the row is not a JSON object');
        END IF;
        opts := jsonb_set(opts, '{custom_metadata}', coalesce(opts -> 'custom_metadata', '{}') || row_meta);
    END IF;
    RETURN opts;
END
$$;
REVOKE ALL ON FUNCTION imagekit.job_options(regclass, text[], jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION imagekit.tag_problems(jsonb), imagekit.check_options(jsonb) FROM PUBLIC;

/*
 * Set what attach() or configure() was given for table "tbl"; a NULL
 * argument leaves that part as it is.  "options" replaces the table's
 * options (with tags_column and custom_metadata_column, the columns the
 * row's own tags and metadata are read from); "columns" replaces the
 * mapping of result columns ({"width": "width", ...}); "notify" turns the
 * notifications on or off, "notify_channel" sets the channel (and turns
 * them on unless "notify" is false); on without a channel, a table keeps
 * its channel, or gets imagekit_<table>.
 */
CREATE FUNCTION imagekit.set_table_config(tbl regclass, options jsonb, columns jsonb,
                                          notify boolean, notify_channel text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    att record;
    k text;
    col text;
    typ regtype;
    input_roles CONSTANT text[] := ARRAY['tags', 'custom_metadata'];
    output_roles CONSTANT text[] := ARRAY['width', 'height', 'size', 'file_id', 'file_path',
                                          'name', 'content_hash'];
    wanted jsonb := '{}';
    channel text;
BEGIN
    SELECT * INTO att FROM imagekit.attachments a WHERE a.tbl = set_table_config.tbl;

    IF options IS NOT NULL THEN
        IF jsonb_typeof(options) = 'object' THEN
            FOR k IN SELECT unnest(input_roles) LOOP
                IF options ? (k || '_column') THEN
                    IF jsonb_typeof(options -> (k || '_column')) <> 'string' THEN
                        RAISE EXCEPTION 'invalid upload options: "%" must be the name of a column', k || '_column'
                            USING ERRCODE = 'invalid_parameter_value';
                    END IF;
                    wanted := wanted || jsonb_build_object(k, options -> (k || '_column'));
                END IF;
            END LOOP;
        END IF;
        options := imagekit.check_options(options - 'tags_column' - 'custom_metadata_column');
        UPDATE imagekit.attachments a SET options = set_table_config.options WHERE a.tbl = set_table_config.tbl;
        DELETE FROM imagekit.attached_columns c WHERE c.tbl = set_table_config.tbl AND c.role = ANY (input_roles);
    END IF;
    IF columns IS NOT NULL THEN
        IF jsonb_typeof(columns) <> 'object' THEN
            RAISE EXCEPTION 'invalid columns: not a JSON object'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example {"width": "width", "height": "height", "file_id": "imagekit_file_id"}.';
        END IF;
        FOR k IN SELECT jsonb_object_keys(columns) LOOP
            IF NOT k = ANY (output_roles) THEN
                RAISE EXCEPTION 'invalid columns: unknown field "%"', k
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'The fields are ' || array_to_string(output_roles, ', ') || '.';
            END IF;
            IF jsonb_typeof(columns -> k) <> 'string' THEN
                RAISE EXCEPTION 'invalid columns: field "%" must name a column', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
        wanted := wanted || columns;
        DELETE FROM imagekit.attached_columns c WHERE c.tbl = set_table_config.tbl AND c.role = ANY (output_roles);
    END IF;

    FOR k, col IN SELECT e.key, e.value FROM jsonb_each_text(wanted) e LOOP
        SELECT t.atttypid INTO typ FROM pg_attribute t
         WHERE t.attrelid = tbl AND t.attname = col AND t.attnum > 0 AND NOT t.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of table "%" does not exist', col, tbl
                USING ERRCODE = 'undefined_column',
                      DETAIL = format('It was given for "%s".', k);
        END IF;
        IF col IN (att.key_column, att.source_column, att.target_column) THEN
            RAISE EXCEPTION 'column "%" of table "%" is the key, source or target column', col, tbl
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('It was given for "%s".', k);
        END IF;
        IF k NOT IN ('tags', 'custom_metadata')
           AND EXISTS (SELECT FROM pg_attribute t
                        WHERE t.attrelid = tbl AND t.attname = col
                          AND (t.attgenerated <> '' OR t.attidentity = 'a')) THEN
            RAISE EXCEPTION 'column "%" of table "%" is generated, and cannot take "%"', col, tbl, k
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NOT typ = ANY (imagekit.column_role_types(k)) THEN
            RAISE EXCEPTION 'column "%" of table "%" is of type %, not one "%" can go in', col, tbl, typ, k
                USING ERRCODE = 'datatype_mismatch',
                      HINT = format('Use a column of type %s.', array_to_string(imagekit.column_role_types(k), ' or '));
        END IF;
        IF EXISTS (SELECT FROM imagekit.attached_columns c
                    WHERE c.tbl = set_table_config.tbl AND c.column_name = col) THEN
            RAISE EXCEPTION 'column "%" of table "%" is given twice', col, tbl
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO imagekit.attached_columns (tbl, role, column_name, attnum)
        SELECT set_table_config.tbl, k, col, t.attnum FROM pg_attribute t
         WHERE t.attrelid = set_table_config.tbl AND t.attname = col;
    END LOOP;

    IF notify IS NOT NULL OR notify_channel IS NOT NULL THEN
        IF notify IS NOT false THEN
            -- (turned on again: the channel it had, or the default)
            channel := coalesce(notify_channel, att.notify_channel,
                                'imagekit_' || (SELECT c.relname FROM pg_class c WHERE c.oid = tbl));
            IF notify_channel IS NULL THEN
                WHILE octet_length(channel) > 63 LOOP
                    channel := left(channel, -1);
                END LOOP;
            END IF;
            IF channel = '' OR octet_length(channel) > 63 THEN
                RAISE EXCEPTION 'invalid notification channel "%"', channel
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = 'A channel name has 1 to 63 bytes.';
            END IF;
        END IF;
        UPDATE imagekit.attachments a SET notify_channel = channel WHERE a.tbl = set_table_config.tbl;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION imagekit.set_table_config(regclass, jsonb, jsonb, boolean, text) FROM PUBLIC;

/*
 * attach() takes the table's upload options, result columns and
 * notifications too; a call of 1.3 (four arguments or fewer) does what it
 * did.
 */
-- (the grants of the old one go to the new one)
SELECT pg_catalog.set_config('imagekit_ext_upgrade.attach_acl',
                             coalesce(p.proacl::text, ''), true)
  FROM pg_catalog.pg_proc p
 WHERE p.oid = 'imagekit.attach(regclass, name, name, boolean)'::pg_catalog.regprocedure;
DROP FUNCTION imagekit.attach(regclass, name, name, boolean);
CREATE FUNCTION imagekit.attach(tbl regclass,
                                source_column name DEFAULT 'url',
                                target_column name DEFAULT 'imagekit_url',
                                backfill boolean DEFAULT false,
                                options jsonb DEFAULT NULL,
                                columns jsonb DEFAULT NULL,
                                notify boolean DEFAULT NULL,
                                notify_channel text DEFAULT NULL)
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
                  HINT = 'Call imagekit.configure() to change its options, or imagekit.detach() first to change its columns.';
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
    PERFORM imagekit.set_table_config(tbl, options, columns, notify, notify_channel);
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

-- Change the upload options, result columns or notifications of an
-- attached table; NULL leaves that part as it is.  Rows queued already are
-- uploaded with the new options; rows done already are not uploaded again.
CREATE FUNCTION imagekit.configure(tbl regclass,
                                   options jsonb DEFAULT NULL,
                                   columns jsonb DEFAULT NULL,
                                   notify boolean DEFAULT NULL,
                                   notify_channel text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM imagekit.check_table_owner(tbl);
    IF NOT EXISTS (SELECT FROM imagekit.attachments a WHERE a.tbl = configure.tbl) THEN
        RAISE EXCEPTION 'table "%" is not attached', tbl
            USING ERRCODE = 'undefined_object',
                  HINT = 'Attach it with imagekit.attach() first.';
    END IF;
    -- one change at a time per table
    PERFORM FROM imagekit.attachments a WHERE a.tbl = configure.tbl FOR UPDATE;
    PERFORM imagekit.set_table_config(tbl, options, columns, notify, notify_channel);
END
$$;

-- What each attached table is configured with.
CREATE VIEW imagekit.attached AS
SELECT a.tbl, a.key_column, a.source_column, a.target_column, a.options,
       (SELECT c.column_name FROM imagekit.attached_columns c
         WHERE c.tbl = a.tbl AND c.role = 'tags') AS tags_column,
       (SELECT c.column_name FROM imagekit.attached_columns c
         WHERE c.tbl = a.tbl AND c.role = 'custom_metadata') AS custom_metadata_column,
       (SELECT jsonb_object_agg(c.role, c.column_name ORDER BY c.role) FROM imagekit.attached_columns c
         WHERE c.tbl = a.tbl AND c.role NOT IN ('tags', 'custom_metadata')) AS columns,
       a.notify_channel, a.attached_at
  FROM imagekit.attachments a;
REVOKE ALL ON FUNCTION imagekit.attach(regclass, name, name, boolean, jsonb, jsonb, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION imagekit.configure(regclass, jsonb, jsonb, boolean, text) FROM PUBLIC;
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT a.grantee, a.is_grantable
               FROM aclexplode(nullif(current_setting('imagekit_ext_upgrade.attach_acl'), '')::aclitem[]) a
              WHERE a.privilege_type = 'EXECUTE'
                AND a.grantee <> (SELECT p.proowner FROM pg_proc p
                                   WHERE p.oid = 'imagekit.attach(regclass, name, name, boolean, jsonb, jsonb, boolean, text)'::regprocedure)
    LOOP
        -- (who may attach a table may configure it)
        EXECUTE format('GRANT EXECUTE ON FUNCTION imagekit.attach(regclass, name, name, boolean, jsonb, jsonb, boolean, text), '
                       'imagekit.configure(regclass, jsonb, jsonb, boolean, text) TO %s%s',
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    -- A GRANT in an extension script counts as the extension's own initial
    -- privilege, which pg_dump leaves out: these were the DBA's, so the
    -- initial privileges are those of a new installation (the owner's).
    UPDATE pg_catalog.pg_init_privs i
       SET initprivs = (SELECT ARRAY[makeaclitem(p.proowner, p.proowner, 'EXECUTE', false)]
                          FROM pg_proc p WHERE p.oid = i.objoid)
     WHERE i.classoid = 'pg_proc'::regclass AND i.objsubid = 0
       AND i.objoid IN ('imagekit.attach(regclass, name, name, boolean, jsonb, jsonb, boolean, text)'::regprocedure,
                        'imagekit.configure(regclass, jsonb, jsonb, boolean, text)'::regprocedure);
END
$$;
REVOKE ALL ON imagekit.attached FROM PUBLIC;

/*
 * The claim returns, besides the job, what its upload and its store need:
 * the table's options (and the numbers of the columns the row adds some
 * from: the worker reads them, as the table's owner, and merges them with
 * imagekit.job_options()), the result columns by number, the notification
 * channel, and the content hash of a result kept while its row was locked.
 */
-- The numbers of the columns of table "tbl" that have the given roles (0
-- for a role without a column), in the order of "roles".
CREATE FUNCTION imagekit.column_numbers(tbl regclass, roles text[])
RETURNS smallint[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(coalesce(t.attnum, 0::smallint) ORDER BY r.o)
      FROM unnest(roles) WITH ORDINALITY r(role, o)
      LEFT JOIN imagekit.attached_columns x ON x.tbl = column_numbers.tbl AND x.role = r.role
      LEFT JOIN pg_attribute t ON t.attrelid = column_numbers.tbl AND t.attname = x.column_name
                              AND NOT t.attisdropped
$$;
REVOKE ALL ON FUNCTION imagekit.column_numbers(regclass, text[]) FROM PUBLIC;

DROP FUNCTION imagekit.claim(integer, bigint, integer, interval);
CREATE FUNCTION imagekit.claim(worker integer, token bigint, lim integer, lease interval)
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
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH c AS (
        SELECT q.id, q.tbl FROM imagekit.jobs q
         WHERE q.state = 'queued' AND q.next_attempt_at <= now()
           AND q.tbl = ANY (ARRAY(SELECT a.tbl FROM imagekit.attachments a
                                   WHERE imagekit.is_served(a.tbl)))
         ORDER BY q.next_attempt_at
         LIMIT lim
         FOR UPDATE OF q SKIP LOCKED),
    -- what the claimed jobs' tables are attached with, once per table
    cfg AS MATERIALIZED (
        SELECT a.tbl, n.nspname, r.relname, a.key_type, a.options, a.notify_channel,
               (SELECT t.attnum FROM pg_attribute t WHERE t.attrelid = a.tbl AND t.attname = a.key_column) AS key_attnum,
               (SELECT t.attnum FROM pg_attribute t WHERE t.attrelid = a.tbl AND t.attname = a.source_column) AS source_attnum,
               (SELECT t.attnum FROM pg_attribute t WHERE t.attrelid = a.tbl AND t.attname = a.target_column) AS target_attnum,
               -- (in the order of IkResultColumn, src/ik_queue.h)
               imagekit.column_numbers(a.tbl, ARRAY['width', 'height', 'size', 'file_id', 'file_path',
                                                    'name', 'content_hash']) AS result_columns,
               imagekit.column_numbers(a.tbl, ARRAY['tags', 'custom_metadata']) AS option_columns
          FROM imagekit.attachments a
          JOIN pg_class r ON r.oid = a.tbl
          JOIN pg_namespace n ON n.oid = r.relnamespace
         WHERE a.tbl IN (SELECT c.tbl FROM c))
    UPDATE imagekit.jobs j
       SET state = 'in_flight', worker = claim.worker, lease_token = claim.token,
           attempts = j.attempts + 1, lease_expires_at = now() + lease,
           updated_at = now()
      FROM c, cfg
     WHERE j.id = c.id AND cfg.tbl = j.tbl
    RETURNING j.id, j.generation, j.attempts - 1, j.tbl, cfg.nspname,
              cfg.relname, cfg.key_type, cfg.key_attnum, cfg.source_attnum, cfg.target_attnum,
              j.row_key, j.source_url, j.pending_state,
              j.result_url, j.last_error, j.last_http_status,
              cfg.options, cfg.result_columns, cfg.notify_channel, j.content_hash,
              cfg.option_columns;
END
$$;
REVOKE ALL ON FUNCTION imagekit.claim(integer, bigint, integer, interval) FROM PUBLIC;

-- detach() and a dropped table forget the table's columns too.
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
    DELETE FROM imagekit.attached_columns c WHERE c.tbl = detach.tbl;
    -- every job: results in flight become stale and are not written
    DELETE FROM imagekit.jobs j WHERE j.tbl = detach.tbl;
    DELETE FROM imagekit.inbox i WHERE i.tbl = detach.tbl;
END
$$;

CREATE OR REPLACE FUNCTION imagekit.on_sql_drop()
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
        DELETE FROM imagekit.attached_columns c WHERE c.tbl = dropped.objid;
        IF fn IS NOT NULL THEN
            DELETE FROM imagekit.jobs j WHERE j.tbl = dropped.objid;
            DELETE FROM imagekit.inbox i WHERE i.tbl = dropped.objid;
            EXECUTE format('DROP FUNCTION IF EXISTS %s()', fn);
        END IF;
    END LOOP;
END
$$;

/*
 * DDL on an attached table, for the columns of imagekit.attached_columns
 * (imagekit.on_alter_table() sees to the key, source and target): a rename
 * is followed, a column numbered anew (a restored dump) is found again by
 * its name, and dropping such a column or changing its type to one its role
 * cannot take is refused.
 */
CREATE FUNCTION imagekit.on_alter_table_columns()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col record;
BEGIN
    IF to_regclass('imagekit.attached_columns') IS NULL THEN
        RETURN;                 -- the extension itself is being changed
    END IF;
    FOR col IN WITH RECURSIVE touched(relid) AS (
                   SELECT c.objid FROM pg_event_trigger_ddl_commands() c
                    WHERE c.classid = 'pg_class'::regclass
                   UNION
                   SELECT i.inhrelid FROM pg_inherits i JOIN touched t ON i.inhparent = t.relid)
               SELECT x.tbl, x.role, x.column_name, x.attnum,
                      (SELECT t.attnum FROM pg_attribute t
                        WHERE t.attrelid = x.tbl AND t.attname = x.column_name
                          AND NOT t.attisdropped) AS attnum_of_name,
                      (SELECT t.attname FROM pg_attribute t
                        WHERE t.attrelid = x.tbl AND t.attnum = x.attnum
                          AND NOT t.attisdropped) AS name_of_attnum
                 FROM imagekit.attached_columns x
                WHERE x.tbl IN (SELECT relid FROM touched)
    LOOP
        IF col.attnum_of_name IS NOT NULL AND col.attnum_of_name <> col.attnum THEN
            UPDATE imagekit.attached_columns x SET attnum = col.attnum_of_name
             WHERE x.tbl = col.tbl AND x.role = col.role;
        ELSIF col.attnum_of_name IS NULL AND col.name_of_attnum IS NOT NULL THEN
            UPDATE imagekit.attached_columns x SET column_name = col.name_of_attnum
             WHERE x.tbl = col.tbl AND x.role = col.role;
        ELSIF col.attnum_of_name IS NULL THEN
            RAISE EXCEPTION 'cannot drop column "%" of table "%"', col.column_name, col.tbl
                USING ERRCODE = 'dependent_objects_still_exist',
                      DETAIL = format('It is the "%s" column of a table attached to imagekit.', col.role),
                      HINT = 'Take it out of the table''s configuration with imagekit.configure() first.';
        END IF;
    END LOOP;
    FOR col IN WITH RECURSIVE touched(relid) AS (
                   SELECT c.objid FROM pg_event_trigger_ddl_commands() c
                    WHERE c.classid = 'pg_class'::regclass
                   UNION
                   SELECT i.inhrelid FROM pg_inherits i JOIN touched t ON i.inhparent = t.relid)
               SELECT x.tbl, x.role, t.attname, t.atttypid::regtype AS typ
                 FROM imagekit.attached_columns x
                 JOIN pg_attribute t ON t.attrelid = x.tbl AND t.attname = x.column_name
                WHERE x.tbl IN (SELECT relid FROM touched)
                  AND (NOT t.atttypid::regtype = ANY (imagekit.column_role_types(x.role))
                       OR (x.role NOT IN ('tags', 'custom_metadata')
                           AND (t.attgenerated <> '' OR t.attidentity = 'a')))
    LOOP
        RAISE EXCEPTION 'cannot change the type of column "%" of table "%" to %', col.attname, col.tbl, col.typ
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = format('It is the "%s" column of a table attached to imagekit.', col.role),
                  HINT = 'Take it out of the table''s configuration with imagekit.configure() first.';
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION imagekit.on_alter_table_columns() FROM PUBLIC;
CREATE EVENT TRIGGER imagekit_alter_table_columns ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION imagekit.on_alter_table_columns();

-- the workers look at the queue again when this commits
SELECT imagekit.wake_worker_on_commit();
