# One pipeline for every database of the cluster: a launcher starts the
# workers of each database with the extension (none for one without), a
# new database gets its workers within a second of CREATE EXTENSION, and
# database DDL (RENAME, SET TABLESPACE, CREATE DATABASE ... TEMPLATE, DROP)
# goes through at once while the workers drain, without FORCE and without
# an error in the log; every row of the surviving databases ends done.
# Then: a killed worker, a killed launcher, imagekit.max_workers smaller
# than the demand, a database that allows no connections.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use ImageKitNode;
use ImageKitStandIn;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $ik = ImageKitStandIn->new;
my $base = $ik->base_url;

my $node = PostgreSQL::Test::Cluster->new('databases');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'imagekit_ext'\n"
	  . $ik->conf
	  . "imagekit.allow_private_sources = on\n"
	  . "imagekit.max_workers = 6\n"
	  . "imagekit.max_concurrent_uploads = 4\n"
	  . "max_worker_processes = 16\n");
$node->start;

sub sq { my ($db, $sql) = @_; return $node->safe_psql($db, $sql); }

# rows $from..$to of table pics in $db, each its own image
sub insert_rows
{
	my ($db, $from, $to) = @_;
	sq($db, "INSERT INTO pics SELECT g, '$base/source/img-' || g || '-2000.png' FROM generate_series($from, $to) g");
}

sub all_done
{
	my ($db, $n) = @_;
	return $node->poll_query_until($db,
		"SELECT count(*) = $n FROM pics WHERE imagekit_url LIKE 'https://ik.imagekit.io/demo/%'");
}

# the workers of $db, as the cluster-wide view shows them
sub serving
{
	my ($db) = @_;
	return sq('postgres', "SELECT count(*) FROM imagekit.workers WHERE datname = '$db' AND state = 'serving'");
}

my $log_offset = 0;

# no ERROR, FATAL or PANIC in the log since the last call
sub log_quiet
{
	my ($what) = @_;
	my $log = slurp_file($node->logfile, $log_offset);
	$log_offset = -s $node->logfile;
	my @bad = grep { /\b(ERROR|FATAL|PANIC):/ } split /\n/, $log;
	ok(!@bad, "$what: nothing in the log") or diag(join("\n", @bad));
}

sq('postgres', 'CREATE EXTENSION imagekit_ext');
for my $db (qw(app_a app_b plain))
{
	sq('postgres', "CREATE DATABASE $db");
}
for my $db (qw(app_a app_b))
{
	sq($db, q{
		CREATE EXTENSION imagekit_ext;
		CREATE TABLE pics (id int PRIMARY KEY, url text NOT NULL, imagekit_url text);
		SELECT imagekit.attach('pics');
	});
}
sq('plain', 'CREATE TABLE pics (id int PRIMARY KEY, url text NOT NULL)');

# 1. three databases, two with the extension, drain at once
insert_rows('app_a', 1, 40);
insert_rows('app_b', 101, 140);
ok(all_done('app_a', 40), 'app_a drains');
ok(all_done('app_b', 40), 'app_b drains at the same time');
is(sq('app_a', "SELECT count(*) FROM pics WHERE imagekit_url ~ ('/' || (SELECT content_hash FROM imagekit.jobs j WHERE j.row_key = pics.id::text) || '\\.png\$')"),
	'40', "app_a's rows have their own images' URLs");
is(sq('app_b', "SELECT uploads FROM imagekit.stats()"), '40', 'imagekit.stats() counts per database');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM imagekit.workers WHERE datname = 'postgres' AND state = 'serving'"),
	'postgres, with the extension and nothing attached, is served too');
is(serving('plain'), '0', 'the database without the extension has no worker');
is(sq('postgres', "SELECT count(*) FROM imagekit.workers WHERE kind = 'launcher' AND datid IS NULL"), '1', 'the view shows the launcher');
is(sq('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'imagekit launcher' AND datname IS NULL"),
	'1', 'pg_stat_activity shows the launcher, connected to no database');
is(sq('postgres', "SELECT string_agg(DISTINCT datname, ',' ORDER BY datname) FROM pg_stat_activity WHERE backend_type = 'imagekit worker'"),
	'app_a,app_b,postgres', 'and a worker in each database with the extension');
log_quiet('three databases');

# 2. CREATE EXTENSION in a fourth database: its worker within a second
sq('postgres', 'CREATE DATABASE app_d');
sq('app_d', 'CREATE TABLE pics (id int PRIMARY KEY, url text NOT NULL, imagekit_url text)');
my $t0 = time;
sq('app_d', "CREATE EXTENSION imagekit_ext; SELECT imagekit.attach('pics')");
my $started;
for (1 .. 200)
{
	if (serving('app_d') eq '1') { $started = time - $t0; last; }
	usleep(20_000);
}
ok(defined $started, 'CREATE EXTENSION starts the database\'s worker');
cmp_ok($started // 99, '<', 1.0, sprintf('within a second (%.0f ms)', 1000 * ($started // 99)));
insert_rows('app_d', 201, 210);
ok(all_done('app_d', 10), 'and it drains');

# 3. database DDL while the workers drain: slow uploads keep jobs in flight
$ik->config(latency_ms => 300);
my $tsdir = PostgreSQL::Test::Utils::tempdir();
sq('postgres', "CREATE TABLESPACE elsewhere LOCATION '$tsdir'");
log_quiet('before the DDL');

my $next_row = 1000;	# rows of their own for each DDL (ids never reused)
sub while_draining
{
	my ($db, $ddl, $what) = @_;
	my ($from, $to) = ($next_row, $next_row + 19);
	$next_row += 20;
	insert_rows($db, $from, $to);
	ok($node->poll_query_until($db, "SELECT count(*) > 0 FROM imagekit.jobs WHERE state = 'in_flight'"),
		"$what: jobs in flight");
	my $t = time;
	my ($rc, $out, $err) = $node->psql('postgres', $ddl);
	my $took = time - $t;
	is($rc, 0, "$what succeeds") or diag($err);
	cmp_ok($took, '<', 1.0, sprintf('%s: at once (%.0f ms)', $what, 1000 * $took));
	return $took;
}

while_draining('app_a', 'ALTER DATABASE app_a RENAME TO app_renamed', 'ALTER DATABASE ... RENAME TO');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM imagekit.workers WHERE datname = 'app_renamed' AND state = 'serving'"),
	'the renamed database gets its worker back');
while_draining('app_renamed', 'ALTER DATABASE app_renamed SET TABLESPACE elsewhere', 'ALTER DATABASE ... SET TABLESPACE');
while_draining('app_renamed', 'CREATE DATABASE app_copy TEMPLATE app_renamed', 'CREATE DATABASE ... TEMPLATE');
while_draining('app_b', 'DROP DATABASE app_b', 'DROP DATABASE');
is(sq('postgres', "SELECT count(*) FROM pg_database WHERE datname = 'app_b'"), '0', 'app_b is gone');

# the DDL while idle, of a database the workers do not serve: DROP DATABASE
# waits until every process has absorbed a ProcSignalBarrier (15 and
# later), the sleeping workers and the launcher included
my $t = time;
sq('postgres', 'DROP DATABASE plain');
cmp_ok(time - $t, '<', 1.0, 'DROP DATABASE of a database without the extension: at once');

$ik->config(latency_ms => 0);
my $n_renamed = sq('app_renamed', 'SELECT count(*) FROM pics');
ok(all_done('app_renamed', $n_renamed), "every row of the renamed database ends with its URL ($n_renamed)");
my $n_copy = sq('app_copy', 'SELECT count(*) FROM pics');
ok(all_done('app_copy', $n_copy), "every row of the copy ends with its URL ($n_copy)");
ok(ik_drained($node, 'app_copy'), 'the copy\'s queue is drained');
ok(ik_drained($node, 'app_renamed'), 'and the renamed database\'s');
is(sq('app_renamed', "SELECT count(*) FROM imagekit.jobs WHERE state NOT IN ('done')"), '0', 'every job of it done, none fell back');
is(sq('app_renamed', "SELECT max(attempts) FROM imagekit.jobs"), '0', 'the stops counted no attempt');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM imagekit.workers WHERE datname IS NULL AND kind = 'worker'"),
	'no worker is left for the dropped database');
# every surviving database served again: the launcher has done its part
ok($node->poll_query_until('postgres',
	"SELECT string_agg(DISTINCT datname, ',' ORDER BY datname) = 'app_copy,app_d,app_renamed,postgres'
	   FROM imagekit.workers WHERE state = 'serving'"),
	'the surviving databases are served again');
log_quiet('the DDL');
ok(!$node->log_contains('being accessed by other users'), 'no DDL waited for a worker');

# 4. a role that may not drop a database does not stop its workers by
# trying; a killed worker comes back; so does a killed launcher
my $pid = sq('postgres', "SELECT pid FROM imagekit.workers WHERE datname = 'app_d'");
sq('postgres', 'CREATE ROLE mallory LOGIN');
my ($mrc, $mout, $merr) = $node->psql('postgres', "\\set VERBOSITY sqlstate\nDROP DATABASE app_d", extra_params => [ '-U', 'mallory' ]);
like($merr, qr/ERROR:  42501/, 'DROP DATABASE by a role that does not own it fails');
is(sq('postgres', "SELECT pid FROM imagekit.workers WHERE datname = 'app_d'"), $pid, 'and leaves its worker alone');
sq('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM imagekit.workers WHERE datname = 'app_d' AND state = 'serving' AND pid <> $pid"),
	'the launcher starts a killed worker again');
insert_rows('app_d', 301, 305);
ok(all_done('app_d', 15), 'which drains');

my $launcher = sq('postgres', "SELECT pid FROM imagekit.workers WHERE kind = 'launcher'");
sq('postgres', "SELECT pg_terminate_backend($launcher)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM imagekit.workers WHERE kind = 'launcher' AND pid <> $launcher"),
	'the postmaster starts a killed launcher again');
ok($node->poll_query_until('postgres', "SELECT count(DISTINCT datname) = 4 FROM imagekit.workers WHERE state = 'serving'"),
	'and it starts the workers of the four databases');
insert_rows('app_d', 306, 310);
ok(all_done('app_d', 20), 'which drain');
# (the kills are in the log, as FATAL "terminating background worker")
$log_offset = -s $node->logfile;

# 5. more workers asked for than imagekit.max_workers (6): each database
# keeps one, the rest is shared
sq('postgres', 'ALTER DATABASE app_renamed SET imagekit.workers = 4');
sq('postgres', 'ALTER DATABASE app_copy SET imagekit.workers = 4');
ok($node->poll_query_until('postgres',
	"SELECT string_agg(datname || ':' || n, ',' ORDER BY datname) = 'app_copy:2,app_d:1,app_renamed:2,postgres:1'
	   FROM (SELECT datname, count(*) AS n FROM imagekit.workers WHERE state = 'serving' GROUP BY datname) w"),
	'six workers for a demand of ten: every database has one, the first ones by OID get the rest');
insert_rows('app_copy', 5001, 5030);
ok(all_done('app_copy', $n_copy + 30), 'and the queues drain');
sq('postgres', 'ALTER DATABASE app_renamed RESET imagekit.workers');
sq('postgres', 'ALTER DATABASE app_copy SET imagekit.workers = 0');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM imagekit.workers WHERE datname = 'app_copy'"),
	'imagekit.workers = 0 for a database stops its workers');

# 6. a database that no longer allows connections loses its worker quietly
sq('postgres', 'ALTER DATABASE app_d ALLOW_CONNECTIONS false');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM imagekit.workers WHERE datname = 'app_d'"),
	'ALLOW_CONNECTIONS false: its worker stops');
sq('postgres', 'ALTER DATABASE app_d ALLOW_CONNECTIONS true');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM imagekit.workers WHERE datname = 'app_d' AND state = 'serving'"),
	'and comes back with it');

# 7. DROP EXTENSION stops the database's worker, which is not started again
sq('app_d', 'DROP EXTENSION imagekit_ext CASCADE');
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM imagekit.workers WHERE datname = 'app_d'"),
	'DROP EXTENSION stops the worker');
# a database that gets the extension now is served by a later pass of the
# launcher, which starts nothing for app_d
sq('postgres', 'CREATE DATABASE app_e');
sq('app_e', 'CREATE EXTENSION imagekit_ext');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM imagekit.workers WHERE datname = 'app_e' AND state = 'serving'"),
	'a new database is served meanwhile');
is(serving('app_d'), '0', 'and app_d stays without a worker');
log_quiet('the end');

$node->stop;

# 8. imagekit.max_workers = 1 and two databases with work: one waits, and
# the launcher says so once
my $small = PostgreSQL::Test::Cluster->new('small');
$small->init;
$small->append_conf('postgresql.conf',
	"shared_preload_libraries = 'imagekit_ext'\n"
	  . $ik->conf
	  . "imagekit.max_workers = 1\n");
$small->start;
$small->safe_psql('postgres', 'CREATE DATABASE second');
$small->safe_psql($_, 'CREATE EXTENSION imagekit_ext') for qw(postgres second);
ok($small->wait_for_log(qr/imagekit\.max_workers \(1\) is too small: 1 database gets no worker/),
	'the launcher warns when a database gets no worker');
$small->stop;

done_testing();
