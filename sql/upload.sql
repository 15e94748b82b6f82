-- imagekit_upload(): arguments, privileges, a real upload to the stand-in.
SET imagekit.use_unique_file_name = off;
SET imagekit.retry_base_delay = 10;

-- a 1x1 PNG
CREATE TEMP TABLE img AS
SELECT decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64') AS png;

-- NULL in, NULL out
SELECT imagekit_upload(NULL, 'a.png') IS NULL AS null_content,
       imagekit_upload(png, NULL) IS NULL AS null_name FROM img;

-- refused before any request
SELECT imagekit_upload(''::bytea, 'a.png');
SELECT imagekit_upload(png, '') FROM img;
SELECT imagekit_upload(png, 'dir/a.png') FROM img;
SELECT imagekit_upload(png, '..\a.png') FROM img;
SELECT imagekit_upload(png, E'a\nb.png') FROM img;
SELECT imagekit_upload(png, '..') FROM img;
SELECT imagekit_upload(png, repeat('x', 256) || '.png') FROM img;
SET imagekit.max_file_size = 10;
SELECT imagekit_upload(png, 'a.png') FROM img;
RESET imagekit.max_file_size;

-- a successful upload: what came back
SELECT url, file_path, name, size, width, height, content_hash, deduplicated,
       length(file_id) AS file_id_length
FROM img, imagekit_upload(png, 'cup.png');
SELECT content_hash = encode(sha256(png), 'hex') AS hash_is_sha256 FROM img, imagekit_upload(png, 'cup.png');

-- the same bytes again are answered from imagekit.assets
SELECT (imagekit_upload(png, 'other-name.png')).deduplicated FROM img;
SELECT url, file_path, name, size, width, height FROM imagekit.assets;

-- folder and non-ASCII names
SET imagekit.folder = '/regress/';
SELECT (imagekit_upload(png || '\x00'::bytea, 'café au lait.png')).name FROM img;
SELECT (imagekit_upload(png || '\x01'::bytea, 'b.png')).url FROM img;
RESET imagekit.folder;

-- not callable without a grant
CREATE ROLE imagekit_regress_user;
GRANT SELECT ON img TO imagekit_regress_user;
SET ROLE imagekit_regress_user;
SELECT imagekit_upload(png, 'x.png') FROM img;
RESET ROLE;
GRANT EXECUTE ON FUNCTION imagekit_upload(bytea, text) TO imagekit_regress_user;
SET ROLE imagekit_regress_user;
SELECT (imagekit_upload(png, 'x.png')).deduplicated FROM img;
-- but still no direct access to the extension's tables
SELECT count(*) FROM imagekit.assets;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION imagekit_upload(bytea, text) FROM imagekit_regress_user;
DROP OWNED BY imagekit_regress_user;
DROP ROLE imagekit_regress_user;

-- each class of error has its own SQLSTATE
\set VERBOSITY sqlstate
SELECT imagekit_upload(''::bytea, 'a.png');
SELECT imagekit_upload('\x01'::bytea, 'a/b.png');
SET imagekit.max_file_size = 1;
SELECT imagekit_upload('\x0102'::bytea, 'a.png');
RESET imagekit.max_file_size;
\set VERBOSITY default

-- several uploads in one statement each keep their own answer
SELECT n, r.name, r.url, r.deduplicated
FROM generate_series(1, 4) AS n, img,
     LATERAL imagekit_upload(png || int4send(n), 'multi-' || n || '.png') AS r
ORDER BY n;
