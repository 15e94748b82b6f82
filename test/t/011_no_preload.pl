# A server that does not preload the library: CREATE EXTENSION, LOAD and
# the first call never end the session; imagekit_upload() works; what needs
# the workers or shared memory says so.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use ImageKitStandIn;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ik = ImageKitStandIn->new;

my $node = PostgreSQL::Test::Cluster->new('no_preload');
$node->init;
# the settings are in postgresql.conf, the library is not preloaded
$node->append_conf('postgresql.conf', $ik->conf . "imagekit.workers = 2\n");
$node->start;

my ($rc, $out, $err) = $node->psql('postgres', "CREATE EXTENSION imagekit_ext; SELECT 'still here'");
is($rc, 0, 'CREATE EXTENSION without shared_preload_libraries');
is($out, 'still here', 'and the session goes on');
unlike($err, qr/FATAL/, 'no FATAL');

($rc, $out, $err) = $node->psql('postgres', "LOAD 'imagekit_ext'; SELECT 'still here'");
is($out, 'still here', 'LOAD keeps the session');

my $png = "decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64')";
($rc, $out, $err) = $node->psql('postgres', "SELECT url FROM imagekit_upload($png, 'cup.png')");
is($rc, 0, 'imagekit_upload() works in a new session without preloading');
like($out, qr{^https://ik\.imagekit\.io/demo/coffee-images/cup(_\w+)?\.png$}, 'and returns the CDN URL');
is($ik->stats->{uploads}, 1, 'the stand-in received it');

($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\nSELECT * FROM imagekit.stats()");
like($err, qr/ERROR:  55000: imagekit_ext must be loaded via "shared_preload_libraries" to count in shared memory/,
	'imagekit.stats() says what it needs (55000), instead of zeros');

($rc, $out, $err) = $node->psql('postgres',
	"CREATE TABLE pics (id int PRIMARY KEY, url text); SELECT imagekit.attach('pics')");
is($rc, 0, 'attach() works');
like($err, qr/WARNING:  no imagekit worker serves database "postgres"/, 'and warns that no worker will drain it');
is($node->safe_psql('postgres', "INSERT INTO pics VALUES (1, 'https://example.com/1.png'); SELECT count(*) FROM imagekit.inbox"),
	'1', 'rows are queued all the same');

$node->stop;
my $log = slurp_file($node->logfile);
# (but a session that the stop ends before it has gone)
unlike($log, qr/FATAL:  (?!terminating connection due to administrator command)/, 'no FATAL in the server log');
unlike($log, qr/\Q${\ $ik->key }\E/, 'nor the key');
done_testing();
