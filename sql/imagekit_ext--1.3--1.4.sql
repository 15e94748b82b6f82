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
