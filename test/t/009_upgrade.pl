# ALTER EXTENSION imagekit_ext UPDATE from 1.1 with tables attached and
# rows waiting in the inbox and in the queue: the queue moves to 1.3 (its
# counts, the new triggers of the attached tables) and drains; the tables'
# trigger functions stay outside the extension, so DROP EXTENSION still
# needs CASCADE only for what it needed before.  Until the update, inserts
# into attached tables keep working (the 1.1 inbox), and the worker waits.
# From 1.2, the jobs in flight survive the update; from 1.3, imagekit_upload()
# works until the update, and the attached tables keep their behaviour and
# grants after it.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use ImageKitStandIn;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ik = ImageKitStandIn->new;
my $base = $ik->base_url;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'imagekit_ext'\n"
	  . $ik->conf
	  . "imagekit.allow_private_sources = on\n"
	  . "log_min_messages = warning\n");
$node->start;

sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(qq{
	CREATE EXTENSION imagekit_ext VERSION '1.1';
	CREATE TABLE pics (id int PRIMARY KEY, url text);
	SELECT imagekit.attach('pics');
	CREATE TABLE more_pics (id text PRIMARY KEY, src varchar(500));
	SELECT imagekit.attach('more_pics', 'src', 'cdn');
});
# with the 1.3 library and the 1.1 scripts, the worker does not drain
sq("INSERT INTO pics SELECT g, '$base/source/img-' || g || '-2000.png' FROM generate_series(1, 5) g");
sq("INSERT INTO more_pics SELECT 'k' || g, '$base/source/img-' || (100 + g) || '-2000.png' FROM generate_series(1, 5) g");
ok($node->wait_for_log(qr/extension imagekit_ext needs an update before the worker can drain its queue/),
	'the worker asks for the update');
is(sq("SELECT count(*) FROM imagekit.inbox"), '10', 'inserts into attached tables still queue under 1.1');
# a source changed after the insert: the 1.1 UPDATE trigger queues a job,
# newer than the row's inbox row
sq("UPDATE pics SET url = '$base/source/img-6-2000.png' WHERE id = 5");
is(sq("SELECT count(*) FROM imagekit.jobs"), '1', 'and one job in the queue');

sq("ALTER EXTENSION imagekit_ext UPDATE");
is(sq("SELECT extversion = default_version FROM pg_extension, pg_available_extensions WHERE extname = 'imagekit_ext' AND name = extname"), 't', 'updated to the current version');
is(sq("SELECT count(*) FROM pg_trigger WHERE tgname = 'imagekit_truncate'"), '2', 'the attached tables got the new triggers');
is(sq("SELECT count(*) FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
       WHERE d.deptype = 'e' AND p.proname ~ '^enqueue_[0-9]+'"), '0',
	'their trigger functions stay outside the extension');
is(sq("SELECT key_attnum || ',' || source_attnum || ',' || target_attnum FROM imagekit.attachments WHERE tbl = 'more_pics'::regclass"),
	'1,2,3', 'the attached columns are known by number');

ok($node->poll_query_until('postgres',
	"SELECT (SELECT count(*) FROM pics WHERE imagekit_url IS NULL) + (SELECT count(*) FROM more_pics WHERE cdn IS NULL) = 0"),
	'the queue of 1.1 drains after the update (the update wakes the worker)');
is(sq("SELECT j.source_url LIKE '%img-6-%' AND p.imagekit_url LIKE '%/' || j.content_hash || '.png'
       FROM pics p JOIN imagekit.jobs j ON j.row_key = '5' AND j.tbl = 'pics'::regclass WHERE p.id = 5"),
	't', 'the source changed under 1.1 is the one uploaded, not the older inbox row');
is(sq("SELECT string_agg(tbl || '=' || queued || '/' || done, ',' ORDER BY tbl::text) FROM imagekit.status"),
	'more_pics=0/5,pics=0/5', 'imagekit.status counts what 1.1 queued');
sq("UPDATE more_pics SET src = '$base/source/img-200-2000.png' WHERE id = 'k1'");
ok($node->poll_query_until('postgres', "SELECT cdn LIKE '%/' || (SELECT content_hash FROM imagekit.jobs WHERE row_key = 'k1') || '.png' FROM more_pics WHERE id = 'k1'"),
	'the regenerated UPDATE trigger queues a changed source');

sq("DROP TABLE pics");
sq("SET client_min_messages = warning; DROP EXTENSION imagekit_ext CASCADE");
is(sq("SELECT count(*) FROM more_pics WHERE cdn IS NOT NULL") . '/' . sq("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'more_pics'::regclass"),
	'5/0', 'DROP EXTENSION CASCADE takes the triggers and leaves the data');

# a running 1.2 configuration (imagekit.workers = 1, the default
# imagekit.database of 1.2 set explicitly) in a database with rows in
# flight: the 1.3 library asks for the update, which keeps the queue and
# starts the database's worker again
$node->safe_psql('postgres', "ALTER SYSTEM SET imagekit.workers = 1");
$node->safe_psql('postgres', "ALTER SYSTEM SET imagekit.database = 'v12'");
$node->reload;
$node->safe_psql('postgres', 'CREATE DATABASE v12');
$node->safe_psql('v12', q{
	CREATE EXTENSION imagekit_ext VERSION '1.2';
	CREATE TABLE pics (id int PRIMARY KEY, url text);
	SELECT imagekit.attach('pics');
});
$node->safe_psql('v12', "INSERT INTO pics SELECT g, '$base/source/img-' || (300 + g) || '-2000.png' FROM generate_series(1, 8) g");
# jobs a 1.2 worker held when it was replaced: in flight under a dead lease
$node->safe_psql('v12', q{
	SELECT imagekit.absorb_inbox(100);
	UPDATE imagekit.jobs SET state = 'in_flight', lease_token = 42, attempts = 1,
	       lease_expires_at = now() + interval '1 hour' WHERE row_key IN ('1', '2');
});
is($node->safe_psql('v12', "SELECT count(*) FROM pics WHERE imagekit_url IS NOT NULL"), '0', 'under 1.2, nothing drains');
$node->safe_psql('v12', 'ALTER EXTENSION imagekit_ext UPDATE');
is($node->safe_psql('v12', "SELECT extversion = default_version FROM pg_extension, pg_available_extensions WHERE extname = 'imagekit_ext' AND name = extname"), 't', '1.2 updated to the current version');
ok($node->poll_query_until('v12', "SELECT count(*) = 8 FROM pics WHERE imagekit_url LIKE 'https://ik.imagekit.io/%'"),
	'the update starts the worker, which drains the 1.2 queue, the jobs in flight included');
ok($node->poll_query_until('v12', "SELECT count(*) = 1 FROM imagekit.workers WHERE datname = 'v12' AND state = 'serving'"),
	'imagekit.database still names the only database served')
  or diag($node->safe_psql('v12', 'TABLE imagekit.workers'));

# 1.3 to 1.4 with a table attached, rows waiting and an asset of
# imagekit_upload(): until the update imagekit_upload() keeps working (the
# RPCs of applications call it); the update keeps the grants on attach(),
# and the attached table uploads as it did (no options: <sha256>.png, the
# asset found again, no notification, no result column)
$node->safe_psql('postgres', "ALTER SYSTEM SET imagekit.database = 'v13'");
$node->reload;
$node->safe_psql('postgres', 'CREATE DATABASE v13');
$node->safe_psql('v13', q{
	CREATE EXTENSION imagekit_ext VERSION '1.3';
	CREATE ROLE v13_attacher;
	CREATE ROLE "V13 Attacher";
	GRANT USAGE ON SCHEMA imagekit TO v13_attacher;
	GRANT EXECUTE ON FUNCTION imagekit.attach(regclass, name, name, boolean) TO v13_attacher, "V13 Attacher";
	CREATE TABLE pics (id int PRIMARY KEY, url text, width integer);
	SELECT imagekit.attach('pics');
});
# a 1x1 PNG
my $png = "decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64')";
is($node->safe_psql('v13', "SELECT deduplicated FROM imagekit_upload($png, 'one.png')"), 'f',
	'under 1.3, imagekit_upload() works with this library');
$ik->reset;
$node->safe_psql('v13', "INSERT INTO pics SELECT g, '$base/source/img-' || (400 + g) || '-2000.png' FROM generate_series(0, 3) g");
$node->safe_psql('v13', 'ALTER EXTENSION imagekit_ext UPDATE');
is($node->safe_psql('v13', q{SELECT has_function_privilege('v13_attacher', 'imagekit.attach(regclass, name, name, boolean, jsonb, jsonb, boolean, text)', 'EXECUTE')
	AND has_function_privilege('V13 Attacher', 'imagekit.attach(regclass, name, name, boolean, jsonb, jsonb, boolean, text)', 'EXECUTE')
	AND has_function_privilege('v13_attacher', 'imagekit.configure(regclass, jsonb, jsonb, boolean, text)', 'EXECUTE')}),
	't', 'roles granted attach() under 1.3 may still call it, and configure() too');
my $v13_dump = $node->basedir . '/v13.sql';
$node->command_ok([ 'pg_dump', '-s', '-f', $v13_dump, '-d', $node->connstr('v13') ], 'pg_dump of the updated database');
like(PostgreSQL::Test::Utils::slurp_file($v13_dump),
	qr/GRANT ALL ON FUNCTION imagekit\.attach\(tbl regclass, source_column name, target_column name, backfill boolean, options jsonb, columns jsonb, notify boolean, notify_channel text\) TO "V13 Attacher";/,
	'and pg_dump keeps those grants (they are the DBA\'s, not the extension\'s)');
is($node->safe_psql('v13', "SELECT has_function_privilege('public', 'imagekit.attach(regclass, name, name, boolean, jsonb, jsonb, boolean, text)', 'EXECUTE')"),
	'f', 'attach() is still closed to PUBLIC');
is($node->safe_psql('v13', "SELECT options::text || coalesce(notify_channel, '-') || coalesce(columns::text, '-') FROM imagekit.attached"),
	'{}--', 'the attached table has no options, notification or result column');
ok($node->poll_query_until('v13', "SELECT count(*) = 4 FROM pics WHERE imagekit_url ~ '/coffee-images/[0-9a-f]{64}\.png\$'"),
	'its rows drain as before: <sha256>.png in imagekit.folder');
is($node->safe_psql('v13', "SELECT count(*) FROM pics WHERE width IS NOT NULL"), '0', 'no column is written but the URL');
my %field_sets = map { (join('+', sort keys %{ $_->{fields} }) . ' ' . ($_->{fields}{transformation} // '') => 1) } @{ $ik->stats->{files} };
is(join(',', keys %field_sets), 'fileName+folder+transformation+useUniqueFileName {"pre":"w-800,h-800,c-maintain_ratio"}',
	'and the uploads carry the fields they did (imagekit.transformation included)');
is($node->safe_psql('v13', "SELECT count(*) FROM imagekit.assets WHERE options_digest = ''"), '5',
	'the assets of 1.3 are assets without options');
is($node->safe_psql('v13', "SELECT deduplicated FROM imagekit_upload($png, 'one.png')"), 't',
	'imagekit_upload() finds what it uploaded under 1.3');

$node->stop;
done_testing();
