# What the workers take from the server: file descriptors for curl's
# sockets count against the server's limit (the worker opens no more
# connections than fd.c allows, and what is beyond waits instead of
# failing); memory, in images held, stays within the worker's slots; a
# worker count that takes every background worker slot is warned about at
# start; the worker's commits leave their WAL to the WAL writer.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use ImageKitNode;
use ImageKitStandIn;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes;

# the stand-in traces every request: client, arrival, end, method, path
my $trace = PostgreSQL::Test::Utils::tempdir() . '/trace';
my $ik = ImageKitStandIn->new(extra_args => [ '--trace', $trace ]);
my $base = $ik->base_url;

my $node = PostgreSQL::Test::Cluster->new('resources');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'imagekit_ext'\n"
	  . $ik->conf
	  . "imagekit.allow_private_sources = on\n"
	  . "imagekit.max_concurrent_uploads = 64\n"
	  . "imagekit.batch_size = 64\n"
	  . "max_files_per_process = 80\n"
	  . "imagekit.max_workers = 1\n"
	  . "max_worker_processes = 3\n"
	  . "log_min_messages = warning\n");
$node->start;

ok($node->log_contains('imagekit.max_workers \(1\) leaves no background worker slot free \(max_worker_processes = 3\)'),
	'a warning at start: the imagekit launcher and worker take the last slots');
ok(!$node->log_contains('too many background workers'), 'which it still gets');

$node->safe_psql('postgres', q{
	CREATE EXTENSION imagekit_ext;
	CREATE TABLE pics (id int PRIMARY KEY, url text);
	SELECT imagekit.attach('pics');
});
# every source answers after 500 ms: the worker would have 64 downloads
# open at once; fd.c leaves curl about a third of the ~60 descriptors
$ik->config(latency_ms => 500);
$node->safe_psql('postgres',
	"INSERT INTO pics SELECT g, '$base/source/img-' || g || '-2000.png' FROM generate_series(1, 150) g");
ok(ik_drained($node), 'drained');
is($node->safe_psql('postgres', "SELECT count(*) FROM pics WHERE imagekit_url LIKE 'https://ik.imagekit.io/demo/%'"), '150',
	'every row got its CDN URL: requests beyond the descriptors waited, none failed');
my $st = $ik->stats;
cmp_ok($st->{max_downloads_in_flight}, '<=', 25,
	"downloads open at once stay within the server's descriptors ($st->{max_downloads_in_flight} of 64 allowed by imagekit.max_concurrent_uploads)");
cmp_ok($st->{max_downloads_in_flight}, '>=', 5, 'and still run concurrently');

# Memory: a download starts only while fewer jobs than
# imagekit.max_concurrent_uploads hold a body (downloading, downloaded,
# uploading).  Downloads answer at once and uploads after 300 ms, so
# without that rule downloaded bodies would pile up behind the uploads
# (the worker claims up to imagekit.batch_size jobs ahead of its slots).
# Read from the stand-in's trace: a body is held from before its GET
# arrives until after its upload's answer is sent, so the count of bodies
# held when a GET arrives, taken there, is never more than the worker's.
my $slots = 4;
$node->append_conf('postgresql.conf', "imagekit.max_concurrent_uploads = $slots\n");
$node->restart;
$ik->config(latency_ms => 0);
my $images = 24;
$ik->faults({ action => 'delay', ms => 300, count => $images });
my $since = Time::HiRes::time();
$node->safe_psql('postgres',
	"INSERT INTO pics SELECT 500 + g, '$base/source/img-body' || g || '-20000.png' FROM generate_series(1, $images) g");
ok(ik_drained($node), 'drained with uploads slower than downloads');
my @events;
for my $line (split /\n/, slurp_file($trace))
{
	my ($client, $arrived, $ended, $method, $path) = split / /, $line;
	next if $arrived < $since;
	push @events, [ $arrived, 1 ] if $path =~ m{^/source/img-body};
	push @events, [ $ended, -1 ] if $path eq '/api/v1/files/upload';
}
is(scalar(grep { $_->[1] == 1 } @events), $images, 'each source downloaded once');
my ($held, $most) = (0, 0);
for my $event (sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @events)
{
	$held += $event->[1];
	$most = $held if $held > $most;
}
is($most, $slots,
	"bodies held at once: $most, as many as imagekit.max_concurrent_uploads, never more");

# WAL flushes: a claim commits synchronously (its attempt must outlive the
# worker), everything else the worker commits asynchronously, leaving its
# WAL to the WAL writer.  Counted by pg_stat_io, which has the WAL's writes
# per kind of process from 18 on (its fsyncs: none, the test clusters run
# with fsync = off); a restart flushes the worker's statistics.
SKIP:
{
	skip 'pg_stat_io counts WAL writes from PostgreSQL 18 on', 1
	  if $node->safe_psql('postgres', 'SHOW server_version_num') < 180000;
	my $wal_writes = sub {
		$node->restart;
		return $node->safe_psql('postgres',
			"SELECT coalesce(sum(writes), 0) FROM pg_stat_io
			  WHERE backend_type = 'background worker' AND object = 'wal'");
	};
	$ik->config(latency_ms => 0);
	my $before = $wal_writes->();
	my $jobs = 20;
	for my $i (1 .. $jobs)
	{
		# one job at a time: a claim and a record each
		$node->safe_psql('postgres',
			"INSERT INTO pics VALUES (1000 + $i, '$base/source/img-wal$i-2000.png')");
		ik_drained($node) or die "job $i was not drained";
	}
	my $writes = $wal_writes->() - $before;
	cmp_ok($writes, '<', 1.5 * $jobs,
		"$jobs jobs done one by one: the worker wrote WAL $writes times (for each claim; its records commit asynchronously)");
}

$node->stop;
done_testing();
