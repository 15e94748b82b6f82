# pg_upgrade from a PostgreSQL 15 cluster with the extension and a queue
# (jobs done, jobs queued, rows in the inbox) to this major: the queue comes
# across whole and drains, the pipeline goes on, and no worker runs in the
# servers pg_upgrade starts (they would change the queue while it is dumped
# or restored).  The old server is $IK_OLD_PG_BIN (test/run-tests.sh sets it
# in the chroots of the newer majors, with the extension built for it).
use strict;
use warnings;

use File::Basename;
use FindBin;
use lib "$FindBin::RealBin/../perl";

use ImageKitNode;
use ImageKitStandIn;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $old_bin = $ENV{IK_OLD_PG_BIN} // '';
plan skip_all => 'no older PostgreSQL here (IK_OLD_PG_BIN; test/run-tests.sh sets it for the newer majors)'
  unless $old_bin ne '' && -x "$old_bin/pg_ctl";

my $ik = ImageKitStandIn->new;
my $conf =
	"shared_preload_libraries = 'imagekit_ext'\n"
  . $ik->conf
  . "imagekit.allow_private_sources = on\n"
  . "log_min_messages = warning\n";

my $old = PostgreSQL::Test::Cluster->new('old', install_path => dirname($old_bin));
$old->init;
# (its LLVM is not in the chroot)
$old->append_conf('postgresql.conf', $conf . "jit = off\n");
$old->start;
my $old_major = $old->pg_version->major;

sub osq { return $old->safe_psql('postgres', $_[0]); }

# the step of README.md, "Supported versions", word for word
my $strip_attver = q{UPDATE pg_catalog.pg_attribute
   SET attoptions = (SELECT array_agg(o) FROM unnest(attoptions) o WHERE o NOT LIKE 'pg_attver=%')
 WHERE attrelid >= 16384 AND attoptions::text LIKE '%pg_attver=%'};
sub src { return $ik->source_url($_[0]); }

osq("CREATE EXTENSION imagekit_ext;
     CREATE TABLE pics (id int PRIMARY KEY, url text, imagekit_url text);
     SELECT imagekit.attach('pics');
     INSERT INTO pics SELECT g, '" . $ik->base_url . "/source/img-' || g || '-2000.png' FROM generate_series(1, 3) g");
ok(ik_drained($old), "PostgreSQL $old_major drains the first rows");
ik_set_enabled($old, 0);
osq("INSERT INTO pics SELECT g, '" . $ik->base_url . "/source/img-' || g || '-2000.png' FROM generate_series(4, 6) g;
     SELECT imagekit.absorb_inbox(1000);
     INSERT INTO pics SELECT g, '" . $ik->base_url . "/source/img-' || g || '-2000.png' FROM generate_series(7, 8) g");
is(osq("SELECT (SELECT count(*) FROM imagekit.jobs WHERE state = 'done') || '/' ||
               (SELECT count(*) FROM imagekit.jobs WHERE state = 'queued') || '/' ||
               (SELECT count(*) FROM imagekit.inbox)"),
	'3/3/2', 'before: 3 jobs done, 3 queued, 2 rows in the inbox');
my $status_before = osq("SELECT queued || '/' || done FROM imagekit.status");
# Debian 12's 15.20 gives every column a "pg_attver" option that the newer
# majors' pg_dump copies and their servers refuse, so that pg_upgrade fails
# on any table, with or without this extension; README.md ("Supported
# versions") gives this step to DBAs
if (osq("SELECT count(*) FROM pg_attribute WHERE attoptions::text LIKE '%pg_attver=%' AND attrelid >= 16384") > 0)
{
	note "PostgreSQL " . $old->pg_version . " has pg_attver column options: removed before pg_upgrade";
	osq($strip_attver);
	is(osq("SELECT count(*) FROM pg_attribute WHERE attoptions::text LIKE '%pg_attver=%' AND attrelid >= 16384"), '0',
		'the pg_attver options are gone');
}
$old->stop;

my $new = PostgreSQL::Test::Cluster->new('new');
# PostgreSQL 18 turns data checksums on by default; 15 had them off
$new->init($new->pg_version >= 18 ? (extra => ['--no-data-checksums']) : ());
$new->append_conf('postgresql.conf', $conf);

my $uploads_before = $ik->stats->{uploads};
command_ok(
	[
		'pg_upgrade', '--no-sync',
		'-d', $old->data_dir, '-D', $new->data_dir,
		'-b', $old_bin, '-B', $new->config_data('--bindir'),
		'-s', $new->host, '-p', $old->port, '-P', $new->port
	],
	"pg_upgrade from $old_major to " . $new->pg_version->major);
is($ik->stats->{uploads}, $uploads_before, 'no upload happened while pg_upgrade ran its servers');
my $upgrade_logs = join('', map { slurp_file($_) } grep { -f } glob($new->data_dir . '/pg_upgrade_output.d/*/log/*.log'));
unlike($upgrade_logs, qr/imagekit worker/, 'and no imagekit worker started in them');

$new->start;
sub nsq { return $new->safe_psql('postgres', $_[0]); }
is(nsq("SELECT extversion = default_version FROM pg_extension, pg_available_extensions WHERE extname = 'imagekit_ext' AND name = extname"), 't', 'the extension came across at the current version');
ok(ik_drained($new), 'the queue that came across drains');
is(nsq("SELECT count(*) FROM pics WHERE imagekit_url LIKE 'https://ik.imagekit.io/demo/%'"), '8',
	'every row has its CDN URL');
is($ik->stats->{uploads}, 8, 'each image uploaded once');
nsq("INSERT INTO pics VALUES (9, '" . src(9) . "')");
ok(ik_drained($new), 'a row inserted after the upgrade drains');
is(nsq("SELECT imagekit_url LIKE 'https://ik.imagekit.io/demo/%' FROM pics WHERE id = 9"), 't', 'with its CDN URL');
is(nsq("SELECT queued || '/' || done FROM imagekit.status"), '0/9', "imagekit.status counts it all (it said $status_before before)");
nsq("SELECT imagekit.recount()");
is(nsq("SELECT queued || '/' || done FROM imagekit.status"), '0/9', 'as a recount does');
nsq("ALTER TABLE pics RENAME COLUMN url TO source_url");
is(nsq("SELECT source_column FROM imagekit.attachments"), 'source_url', 'the DDL event trigger works');

$new->stop;
unlike(slurp_file($new->logfile), qr/\Q${\ $ik->key }\E/, 'the key is not in the server log');
done_testing();
