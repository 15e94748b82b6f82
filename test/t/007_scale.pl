# The queue at a million jobs: the claim (and the idle worker's look at
# the next due job) cost the same with or without statistics on
# imagekit.jobs, where the planner would otherwise sort the whole backlog.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('scale');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'imagekit_ext'\n"
	  . "imagekit.enabled = off\n"
	  . "log_temp_files = 0\n"
	  . "work_mem = '4MB'\n");
$node->start;

sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
	CREATE EXTENSION imagekit_ext;
	ALTER TABLE imagekit.jobs SET (autovacuum_enabled = off);
	CREATE TABLE big (id bigint PRIMARY KEY, url text);
	SELECT imagekit.attach('big');
	INSERT INTO imagekit.jobs (tbl, row_key, source_url, seq)
	SELECT 'big'::regclass, g::text, 'https://example.com/' || g || '.png', g
	  FROM generate_series(1, 1000000) g;
});
is(sq("SELECT reltuples < 1 FROM pg_class WHERE oid = 'imagekit.jobs'::regclass"), 't',
	'a million queued jobs, never analyzed');

# Claims as the worker makes them (batch of 64), in a transaction rolled
# back so that every one sees the whole backlog.  A plan that sorts the
# backlog spills it to a temporary file, which log_temp_files reports.
sub claims
{
	my ($label) = @_;
	my $offset = -s $node->logfile;
	my $t0 = time;
	my $out = sq("BEGIN;
		SELECT count(*) FROM imagekit.claim(1, 1, 64, interval '5 min');
		SELECT count(*) FROM imagekit.claim(1, 1, 64, interval '5 min');
		SELECT count(*) FROM imagekit.claim(1, 1, 64, interval '5 min');
		SELECT imagekit.next_due_ms() <= 0;
		ROLLBACK;");
	my $took = (time - $t0) / 3;
	is($out, "64\n64\n64\nt", "$label: three claims of 64 jobs");
	unlike(substr(slurp_file($node->logfile), $offset), qr/temporary file/,
		"$label: no claim sorted the backlog (no temporary file)");
	note(sprintf('%s: %.1f ms per claim', $label, $took * 1000));
}

claims('without statistics');
sq('ANALYZE imagekit.jobs');
claims('with statistics');

$node->stop;
done_testing();
