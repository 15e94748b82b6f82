# DDL on an attached table never breaks the application: renames of the
# table, its schema and its attached columns are followed (with jobs queued
# and in flight at the time); dropping an attached column or changing its
# type is refused at DDL time, with a hint.
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

sub drained
{
	return $node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT FROM imagekit.inbox)
		    AND NOT EXISTS (SELECT FROM imagekit.jobs WHERE state IN ('queued', 'in_flight'))");
}

sub set_enabled
{
	my ($on) = @_;
	my $v = $on ? 'on' : 'off';
	sq("ALTER SYSTEM SET imagekit.enabled = $v");
	$node->reload;
	$node->poll_query_until('postgres', "SELECT current_setting('imagekit.enabled') = '$v'");
	sleep(1);
}

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
set_enabled(1);
ok(drained(), 'drained after the renames');
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
ok(drained(), 'drained');
like(sq("SELECT image_url FROM media.pictures WHERE photo_id = 16"), qr{^https://ik\.imagekit\.io/demo/},
	'the job in flight during the renames stored its URL');

# what would break every INSERT is refused, with jobs queued meanwhile
set_enabled(0);
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
set_enabled(1);
ok(drained(), 'drained after the refusals');
is(sq("SELECT count(*) FROM media.pictures WHERE image_url IS NULL"), '0', 'and every row has its URL');

# after detach, the same DDL is the table owner's business
sq("SELECT imagekit.detach('media.pictures')");
is(ddl_fails("ALTER TABLE media.pictures DROP COLUMN source"), 'succeeded', 'a detached table can drop the column');

$node->stop;
done_testing();
