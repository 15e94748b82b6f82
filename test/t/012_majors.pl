# What newer PostgreSQL majors add, used where the server offers it:
# named wait events in pg_stat_activity from 17 (the generic "Extension"
# before).  And what does not change: DROP DATABASE of a database the
# workers serve goes through at once, on every major.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use ImageKitSession;
use ImageKitStandIn;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ik = ImageKitStandIn->new;

my $node = PostgreSQL::Test::Cluster->new('majors');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'imagekit_ext'\n"
	  . $ik->conf
	  . "imagekit.workers = 1\n"
	  . "imagekit.allow_private_sources = on\n");
$node->start;
my $major = $node->pg_version->major;
note "PostgreSQL $major";

sub sq { return $node->safe_psql('postgres', $_[0]); }

# the wait event expected on this major: its own name from 17 on
sub named { return $major >= 17 ? $_[0] : 'Extension'; }

# wait until the process that $where picks waits for $event
sub waits_for
{
	my ($where, $event, $what) = @_;
	ok( $node->poll_query_until('postgres',
			"SELECT wait_event_type = 'Extension' AND wait_event = '$event'
			   FROM pg_stat_activity WHERE $where"),
		"$what: wait_event $event");
}

sq('CREATE EXTENSION imagekit_ext');
my $worker = "backend_type = 'imagekit worker'";
waits_for($worker, named('ImageKitIdle'), 'a worker with nothing to do');

# a row whose download and upload each take 3 s at the stand-in
$ik->config(latency_ms => 3000);
sq("CREATE TABLE pics (id int PRIMARY KEY, url text, cdn_url text);
    SELECT imagekit.attach('pics', 'url', 'cdn_url');
    INSERT INTO pics VALUES (1, '" . $ik->source_url(1) . "')");
waits_for($worker, named('ImageKitDownload'), 'a worker downloading a source');
waits_for($worker, named('ImageKitUpload'), 'a worker uploading');
ok($node->poll_query_until('postgres', 'SELECT cdn_url IS NOT NULL FROM pics'), 'the row is done');

# a session's imagekit_upload(): a 503 first, then a 3 s upload
my $s = ImageKitSession->new($node, 'postgres');
my $pid = $s->query('SELECT pg_backend_pid()');
$ik->faults({ status => 503 });
$s->send("SET imagekit.retry_base_delay = '3s';
          SELECT url FROM imagekit_upload('\\x89504e470d0a1a0a'::bytea, 'wait.png')");
waits_for("pid = $pid", named('ImageKitBackoff'), 'imagekit_upload() waiting to retry');
waits_for("pid = $pid", named('ImageKitUpload'), 'imagekit_upload() uploading');
like($s->result, qr{^https://ik\.imagekit\.io/demo/}, 'and the upload ends well');
$s->quit;
$ik->config(latency_ms => 0);

# the launcher, idle, and a DDL that waits for a database's workers to go
waits_for("backend_type = 'imagekit launcher'", named('ImageKitLauncher'), 'the launcher with nothing to do');
sq('CREATE DATABASE served');
$node->safe_psql('served', 'CREATE EXTENSION imagekit_ext');
ok($node->poll_query_until('postgres', "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE $worker AND datname = 'served')"),
	'a worker serves the new database');
$node->safe_psql('served', "CREATE TABLE pics (id int PRIMARY KEY, url text, imagekit_url text);
                            SELECT imagekit.attach('pics');
                            INSERT INTO pics VALUES (1, '" . $ik->source_url(2) . "')");
ok($node->poll_query_until('served', "SELECT imagekit_url IS NOT NULL FROM pics"), 'its row is done');
my ($rc, $out, $err) = $node->psql('postgres', "DROP DATABASE served");
is($rc, 0, 'DROP DATABASE of a database a worker serves succeeds, without FORCE') or diag($err);
ok($node->poll_query_until('postgres', "SELECT NOT EXISTS (SELECT FROM imagekit.workers WHERE kind = 'worker' AND datname IS NULL)"),
	'and no worker is left for it');

$node->stop;
unlike(slurp_file($node->logfile), qr/\Q${\ $ik->key }\E/, 'the key is not in the server log');
done_testing();
