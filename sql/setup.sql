-- Installation: objects, schemas, privileges.
CREATE EXTENSION imagekit_ext;

-- imagekit_upload lives in the schema the extension was installed into
SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) AS args,
       pg_get_function_result(p.oid) AS result, p.prosecdef, p.proconfig
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.proname = 'imagekit_upload';

-- its own state lives in schema imagekit, kept by pg_dump
SELECT c.relname, c.relkind FROM pg_class c
WHERE c.relnamespace = 'imagekit'::regnamespace ORDER BY 1;
SELECT extconfig::regclass[] FROM pg_extension WHERE extname = 'imagekit_ext';

-- nothing of it is open to PUBLIC
SELECT has_function_privilege('public', 'imagekit_upload(bytea, text)', 'EXECUTE') AS public_execute,
       has_schema_privilege('public', 'imagekit', 'USAGE') AS public_usage,
       has_table_privilege('public', 'imagekit.assets', 'SELECT') AS public_select;

-- dropping and re-creating works
DROP EXTENSION imagekit_ext;
CREATE EXTENSION imagekit_ext;

-- the 1.0 -> 1.1 upgrade path gives the same objects
DROP EXTENSION imagekit_ext;
CREATE EXTENSION imagekit_ext VERSION '1.0';
ALTER EXTENSION imagekit_ext UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'imagekit_ext';
CREATE TEMP TABLE upgraded_members AS
  SELECT classid, pg_describe_object(classid, objid, objsubid) AS member
  FROM pg_depend
  WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'imagekit_ext') AND deptype = 'e';
DROP EXTENSION imagekit_ext;
CREATE EXTENSION imagekit_ext;
CREATE TEMP TABLE installed_members AS
  SELECT classid, pg_describe_object(classid, objid, objsubid) AS member
  FROM pg_depend
  WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'imagekit_ext') AND deptype = 'e';
-- none missing, none extra
(SELECT member FROM upgraded_members EXCEPT SELECT member FROM installed_members)
UNION ALL
(SELECT member FROM installed_members EXCEPT SELECT member FROM upgraded_members);
-- how many, types aside (PostgreSQL 17 on records the row and array types
-- of the extension's tables as members too)
SELECT count(*) AS objects FROM installed_members WHERE classid <> 'pg_type'::regclass;
DROP TABLE upgraded_members, installed_members;
