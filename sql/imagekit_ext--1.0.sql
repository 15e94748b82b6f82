/* imagekit_ext--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION imagekit_ext" to load this file. \quit

-- The extension's own state and helpers live in schema imagekit; the
-- user-facing imagekit_upload() lives in the schema the extension is
-- installed into.
CREATE SCHEMA imagekit;
REVOKE ALL ON SCHEMA imagekit FROM PUBLIC;

-- One row per uploaded content (dedup): what ImageKit answered for it.
CREATE TABLE imagekit.assets (
    content_hash text PRIMARY KEY
        CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    url text NOT NULL,
    file_id text,
    file_path text,
    name text,
    size bigint,
    width integer,
    height integer,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON imagekit.assets FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('imagekit.assets', '');

-- Upload bytes under a file name; returns the asset.  It spends the
-- account's credentials, so only those granted EXECUTE may call it; it runs
-- as the extension's owner to read and write imagekit.assets.
CREATE FUNCTION @extschema@.imagekit_upload(
    content bytea,
    file_name text,
    OUT url text,
    OUT file_id text,
    OUT file_path text,
    OUT name text,
    OUT size bigint,
    OUT width integer,
    OUT height integer,
    OUT content_hash text,
    OUT deduplicated boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'imagekit_upload'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION @extschema@.imagekit_upload(bytea, text) FROM PUBLIC;
