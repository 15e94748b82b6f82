-- Settings: defaults, validation, who may set what.
SELECT name, setting, unit, context, vartype, min_val, max_val
FROM pg_settings WHERE name LIKE 'imagekit.%'
  AND name NOT IN ('imagekit.upload_endpoint', 'imagekit.private_key')
ORDER BY name;

-- the user-level settings accept good values ...
SET imagekit.folder = '/products/2024/';
SET imagekit.transformation = 'w-400,h-300,c-at_max';
SET imagekit.transformation = '';
SET imagekit.max_retries = 0;
SET imagekit.retry_base_delay = '2s';
SHOW imagekit.retry_base_delay;
RESET ALL;

-- ... and refuse bad ones with a reason
SET imagekit.folder = 'no-leading-slash';
SET imagekit.folder = '/a/../b/';
SET imagekit.folder = '/sp ace/';
SET imagekit.transformation = 'w-800"}';
-- (PostgreSQL words range errors differently from one major to the next,
-- so those show their SQLSTATE only: 22023, invalid_parameter_value)
\set VERBOSITY sqlstate
SET imagekit.max_retries = 11;
SET imagekit.max_retries = -1;
SET imagekit.timeout = 0;
SET imagekit.retry_base_delay = '-5ms';
\set VERBOSITY default
SET imagekit.retry_max_delay = 99999999999;
SET imagekit.timeout = 'ten seconds';
SET imagekit.max_file_size = '100TB';
SET imagekit.folder = E'/tab\there/';
SELECT set_config('imagekit.folder', '/' || repeat('a', 260) || '/', false);
SET imagekit.transformation = E'w-400\n';
SET imagekit.allow_private_sources = maybe;

-- allow_private_sources is off, loopback (this host only) or on
SET imagekit.allow_private_sources = loopback;
SHOW imagekit.allow_private_sources;
SET imagekit.allow_private_sources = true;
SHOW imagekit.allow_private_sources;
RESET imagekit.allow_private_sources;

-- a typo in the reserved prefix is reported
SET imagekit.privat_key = 'x';

-- server-wide settings cannot be changed per session
SET imagekit.upload_endpoint = 'https://example.com/upload';
SET imagekit.private_key = 'x';

-- and their values are checked when they are set
ALTER SYSTEM SET imagekit.upload_endpoint = 'http://example.com/api/v1/files/upload';
ALTER SYSTEM SET imagekit.upload_endpoint = 'ftp://127.0.0.1/upload';
ALTER SYSTEM SET imagekit.upload_endpoint = 'https://user:pw@upload.imagekit.io/api/v1/files/upload';
ALTER SYSTEM SET imagekit.upload_endpoint = 'not a url';
ALTER SYSTEM SET imagekit.url_endpoint = 'http://ik.imagekit.io/demo';
ALTER SYSTEM SET imagekit.public_key = 'public key with spaces';

-- the private key is hidden from non-superusers
CREATE ROLE imagekit_regress_user;
SET ROLE imagekit_regress_user;
\set VERBOSITY sqlstate
SHOW imagekit.private_key;
SELECT current_setting('imagekit.private_key');
\set VERBOSITY default
SELECT count(*) FROM pg_settings WHERE name = 'imagekit.private_key';
-- and max_file_size is a superuser setting
SET imagekit.max_file_size = '1GB';
RESET ROLE;
SELECT current_setting('imagekit.private_key') <> '' AS superuser_sees_key;
DROP ROLE imagekit_regress_user;
