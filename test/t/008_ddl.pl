# DDL on an attached table never breaks the application: renames of the
# table, its schema and its attached columns are followed (with jobs queued
# and in flight at the time); dropping an attached column or changing its
# type is refused at DDL time, with a hint.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use ImageKitNode;
use ImageKitStandIn;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ik = ImageKitStandIn->new;
my $base = $ik->base_url;

my $node = PostgreSQL::Test::Cluster->new('ddl');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'imagekit_ext'\n"
	  . $ik->conf
	  . "imagekit.allow_private_sources = on\n"
	  . "imagekit.enabled = off\n"
	  . "log_min_messages = warning\n");
$node->start;

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub insert_rows
{
	my ($tbl, $cols, $from, $to) = @_;
	sq("INSERT INTO $tbl ($cols) SELECT g, '$base/source/img-' || g || '-2000.png' FROM generate_series($from, $to) g");
}

# DDL that fails: its SQLSTATE, message and hint
sub ddl_fails
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return $rc == 0 ? 'succeeded' : $err;
}

sq(q{
	CREATE EXTENSION imagekit_ext;
	CREATE TABLE pics (id bigint PRIMARY KEY, url text, note text);
	SELECT imagekit.attach('pics');
});

# jobs queued (in the queue and in the inbox) across renames of the table,
# its schema and every attached column
insert_rows('pics', 'id, url', 1, 5);
sq("SELECT imagekit.absorb_inbox(100)");
insert_rows('pics', 'id, url', 6, 10);
sq(q{
	ALTER TABLE pics RENAME TO photos;
	ALTER TABLE photos RENAME COLUMN url TO source;
	ALTER TABLE photos RENAME COLUMN imagekit_url TO cdn_url;
	ALTER TABLE photos RENAME COLUMN id TO photo_id;
	CREATE SCHEMA media;
	ALTER TABLE photos SET SCHEMA media;
});
is(sq("SELECT tbl, key_column, source_column, target_column FROM imagekit.attachments"),
	'media.photos|photo_id|source|cdn_url', 'the attachment follows the renames');
insert_rows('media.photos', 'photo_id, source', 11, 15);
sq("UPDATE media.photos SET source = '$base/source/img-105-2000.png' WHERE photo_id = 5");
ik_set_enabled($node, 1);
ok(ik_drained($node), 'drained after the renames');
is(sq("SELECT count(*) FROM media.photos WHERE cdn_url LIKE 'https://ik.imagekit.io/demo/%'"), '15',
	'every row, queued before or after the renames, got its URL');
is(sq("SELECT count(*) FROM imagekit.jobs WHERE state = 'done'"), '15', 'and every job is done');

# a rename while a job is in flight: the result is stored under the new name
$ik->config(latency_ms => 2000);
insert_rows('media.photos', 'photo_id, source', 16, 16);
ok($node->poll_query_until('postgres', "SELECT state = 'in_flight' FROM imagekit.jobs WHERE row_key = '16'"),
	'a job in flight');
sq("ALTER TABLE media.photos RENAME COLUMN cdn_url TO image_url");
sq("ALTER TABLE media.photos RENAME TO pictures");
$ik->config(latency_ms => 0);
ok(ik_drained($node), 'drained');
like(sq("SELECT image_url FROM media.pictures WHERE photo_id = 16"), qr{^https://ik\.imagekit\.io/demo/},
	'the job in flight during the renames stored its URL');

# what would break every INSERT is refused, with jobs queued meanwhile
ik_set_enabled($node, 0);
insert_rows('media.pictures', 'photo_id, source', 17, 18);
like(ddl_fails("ALTER TABLE media.pictures DROP COLUMN source"),
	qr/ERROR:  2BP01: cannot drop column "source" of table "media.pictures"\nDETAIL:  It is the source URL column of a table attached to imagekit.\nHINT:  Detach the table with imagekit.detach\(\) first./,
	'dropping the source column is refused');
like(ddl_fails("ALTER TABLE media.pictures DROP COLUMN image_url"),
	qr/ERROR:  2BP01: cannot drop column "image_url" of table "media.pictures"\nDETAIL:  It is the target column/,
	'dropping the target column is refused');
like(ddl_fails("ALTER TABLE media.pictures DROP COLUMN photo_id"),
	qr/ERROR:  2BP01: cannot drop column "photo_id" of table "media.pictures"\nDETAIL:  It is the key column/,
	'dropping the key column is refused');
like(ddl_fails("ALTER TABLE media.pictures ALTER COLUMN photo_id TYPE text"),
	qr/ERROR:  0A000: cannot change the type of column "photo_id" of table "media.pictures" to text\nDETAIL:  It is the key column of a table attached to imagekit.\nHINT:  Detach the table with imagekit.detach\(\) first, and attach it again after the change./,
	'changing the key type is refused');
like(ddl_fails("ALTER TABLE media.pictures ALTER COLUMN source TYPE integer USING 0"),
	qr/ERROR:  0A000: cannot change the type of column "source" of table "media.pictures" to integer/,
	'changing the source column to a non-text type is refused');
like(ddl_fails("ALTER TABLE media.pictures ALTER COLUMN image_url TYPE jsonb USING to_jsonb(image_url)"),
	qr/ERROR:  0A000: cannot change the type of column "image_url"/,
	'changing the target column to a non-text type is refused');
is(ddl_fails("ALTER TABLE media.pictures ALTER COLUMN source TYPE varchar(2000)"), 'succeeded',
	'a text type the triggers take (varchar) is accepted');
is(ddl_fails("ALTER TABLE media.pictures DROP COLUMN note"), 'succeeded', 'other columns can be dropped');
insert_rows('media.pictures', 'photo_id, source', 19, 20);
ik_set_enabled($node, 1);
ok(ik_drained($node), 'drained after the refusals');
is(sq("SELECT count(*) FROM media.pictures WHERE image_url IS NULL"), '0', 'and every row has its URL');

# a table dropped while its job is in flight: the worker goes on
$ik->config(latency_ms => 1500);
insert_rows('media.pictures', 'photo_id, source', 30, 30);
ok($node->poll_query_until('postgres', "SELECT state = 'in_flight' FROM imagekit.jobs WHERE row_key = '30'"),
	'a job in flight');
my $pid = sq("SELECT pid FROM pg_stat_activity WHERE backend_type = 'imagekit worker'");
sq("CREATE TABLE media.keep AS SELECT * FROM media.pictures");
sq("DROP TABLE media.pictures");
$ik->config(latency_ms => 0);
ok($node->poll_query_until('postgres', "SELECT NOT EXISTS (SELECT FROM imagekit.jobs)"), 'its jobs went with it');
sq("CREATE TABLE media.pictures (photo_id bigint PRIMARY KEY, source text); SELECT imagekit.attach('media.pictures', 'source', 'image_url')");
insert_rows('media.pictures', 'photo_id, source', 31, 31);
ok(ik_drained($node), 'drained');
is(sq("SELECT pid FROM pg_stat_activity WHERE backend_type = 'imagekit worker'"), $pid,
	'the worker that had the job in flight is still the same process');

# a hostile table owner: column names cannot end the generated trigger
# function's body (the rename is followed with the name as it is), and
# nothing of the owner's runs as a superuser while the worker or attach()
# read the table (constraint exclusion would fold an inheritance child's
# CHECK constraint, and run its functions, while planning)
# (promote() also leaves a file behind when it runs as a superuser, which
# stays even where the transaction that ran it is rolled back)
my $escalated = $node->basedir . '/escalated';
sq(q{
	CREATE ROLE mallory LOGIN;
	GRANT CREATE ON SCHEMA public TO mallory;
	SET ROLE mallory;
	CREATE FUNCTION public.promote(path text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
	BEGIN
	    EXECUTE format('COPY (SELECT current_user) TO %L', path);
	    EXECUTE 'ALTER ROLE mallory SUPERUSER';
	    RETURN true;
	EXCEPTION WHEN insufficient_privilege THEN
	    RETURN true;
	END $$;
	CREATE FUNCTION public.skip() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
	    RETURN NULL;
	END $$;
	CREATE TABLE public.parent (id int PRIMARY KEY, url text);
	CREATE TRIGGER skip BEFORE UPDATE ON public.parent FOR EACH ROW EXECUTE FUNCTION public.skip();
	RESET ROLE;
});
sq("SET ROLE mallory;
    CREATE FUNCTION public.innocent() RETURNS boolean LANGUAGE sql IMMUTABLE
        AS 'SELECT public.promote(''$escalated'')';
    CREATE TABLE public.child (CHECK (public.innocent())) INHERITS (public.parent);");
insert_rows('public.parent', 'id, url', 40, 41);
sq("SELECT imagekit.attach('public.parent', backfill => true)");
ok(ik_drained($node), 'drained (the owner\'s trigger skips every update: each row is looked up)');
is(sq("SELECT count(*) FROM imagekit.jobs WHERE tbl = 'public.parent'::regclass AND state = 'fallback'"), '2',
	'the rows the owner\'s trigger skipped fell back');
my ($rc, $out, $err) = $node->psql('postgres',
	"SET ROLE mallory; SET check_function_bodies = off; "
	  . 'ALTER TABLE public.parent RENAME COLUMN url TO "x$body$;ALTER ROLE mallory SUPERUSER;SELECT $body$"');
is($rc, 0, 'the owner renames the source column to a name holding $body$');
is(sq("SELECT source_column FROM imagekit.attachments WHERE tbl = 'public.parent'::regclass"),
	'x$body$;ALTER ROLE mallory SUPERUSER;SELECT $body$', 'the rename is followed as it is');
sq("DROP TRIGGER skip ON public.parent");
sq('INSERT INTO public.parent (id, "x$body$;ALTER ROLE mallory SUPERUSER;SELECT $body$") VALUES (42, '
	. "'$base/source/img-42-2000.png')");
# (as the owner: a superuser's own UPDATE would plan the child's CHECK)
sq('SET ROLE mallory; UPDATE public.parent SET "x$body$;ALTER ROLE mallory SUPERUSER;SELECT $body$" = '
	. "'$base/source/img-43-2000.png' WHERE id = 40");
ok(ik_drained($node), 'drained');
# (ONLY: this test's own superuser query must not plan the child either)
is(sq("SELECT count(*) FROM ONLY public.parent WHERE id IN (40, 42) AND imagekit_url LIKE 'https://ik.imagekit.io/demo/%'"), '2',
	'the table works under its new column name');
is(sq("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"), 'f', 'and the owner is no superuser');
ok(!-e $escalated, 'none of the owner\'s code ran as a superuser');

# after detach, the same DDL is the table owner's business
sq("SELECT imagekit.detach('media.pictures')");
is(ddl_fails("ALTER TABLE media.pictures DROP COLUMN source"), 'succeeded', 'a detached table can drop the column');

$node->stop;
done_testing();
