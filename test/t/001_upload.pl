# imagekit_upload() against the stand-in ImageKit: retries, rate limits,
# permanent errors, timeouts, garbage answers, dedup, cancellation, leaks
# and secrets.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";

use IPC::Run;
use ImageKitStandIn;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $key = 'private_tap_' . join('', map { ('a' .. 'z')[ rand 26 ] } 1 .. 20);
my $ik = ImageKitStandIn->new(key => $key);

my $node = PostgreSQL::Test::Cluster->new('upload');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'imagekit_ext'\n"
	  . "log_min_messages = debug1\n"
	  . "log_min_error_statement = error\n"
	  . $ik->conf
	  . "imagekit.retry_base_delay = 50\n"
	  . "imagekit.use_unique_file_name = off\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION imagekit_ext');

# Upload the bytes of $label as "$label.png"; returns (rc, stdout, stderr,
# seconds).  $set is SQL run first in the same session.
sub upload
{
	my ($label, $set) = @_;
	my ($out, $err) = ('', '');
	my $t0 = time;
	my $rc = $node->psql(
		'postgres',
		"\\set VERBOSITY verbose\n" . ($set // '')
		  . "SELECT url, deduplicated FROM imagekit_upload(" . content($label) . ", '$label.png');",
		stdout => \$out,
		stderr => \$err);
	return ($rc, $out, $err, time - $t0);
}

sub requests { return $ik->stats->{requests}; }

# distinct PNG bytes for a label: a 1x1 PNG with the label after IEND
my $png_b64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';
sub content { return "(decode('$png_b64', 'base64') || convert_to('$_[0]', 'UTF8'))"; }

# a plain upload sends what the real API expects
$ik->reset;
my ($rc, $out, $err) = upload('basic');
is($rc, 0, 'upload succeeds');
like($out, qr{^https://ik\.imagekit\.io/demo/coffee-images/basic\.png\|f$}, 'CDN URL returned');
my $sent = $ik->stats->{files}[0];
is($sent->{fileName}, 'basic.png', 'fileName sent');
is($sent->{folder}, '/coffee-images/', 'folder sent');
is($sent->{useUniqueFileName}, 'false', 'useUniqueFileName sent as a string boolean');
is($sent->{transformation}, '{"pre":"w-800,h-800,c-maintain_ratio"}', 'transformation sent as JSON');
is($sent->{file_part_filename}, 'basic.png', 'file part carries the file name');
is($sent->{size}, 70 + length('basic'), 'file part carries exactly the bytes');
is($sent->{sha256}, $node->safe_psql('postgres', 'SELECT encode(sha256(' . content('basic') . "), 'hex')"),
	'the stand-in received the exact content');

# a read-only transaction (or a standby) cannot record the asset: refused
# before anything is sent; a dedup hit needs no write and is answered
$ik->reset;
($rc, $out, $err) = upload('readonly', "SET default_transaction_read_only = on;\n");
isnt($rc, 0, 'upload refused in a read-only transaction');
like($err, qr/ERROR:  25006: cannot execute imagekit_upload\(\) in a read-only transaction/, 'with SQLSTATE 25006');
is(requests(), 0, 'nothing was sent');
($rc, $out) = upload('basic', "SET default_transaction_read_only = on;\n");
is($rc, 0, 'a dedup hit is answered in a read-only transaction');
like($out, qr{/basic\.png\|t$}, 'from imagekit.assets');

# transient errors are retried, then the upload succeeds
$ik->reset;
$ik->faults({ status => 500, count => 2 });
($rc, $out) = upload('retry500');
is($rc, 0, 'upload succeeds after two 500s');
is(requests(), 3, 'two retries were made');

$ik->reset;
$ik->faults({ action => 'drop' }, { action => 'truncate' });
($rc, $out) = upload('dropped');
is($rc, 0, 'upload succeeds after a dropped connection and a truncated answer');
is(requests(), 3, 'both connection failures were retried');

# ... until the retries run out
$ik->reset;
$ik->faults({ status => 503, count => 10 });
($rc, $out, $err) = upload('unavailable', "SET imagekit.max_retries = 2;\n");
isnt($rc, 0, 'upload fails when ImageKit stays unavailable');
like($err, qr/ERROR:  IK003: could not upload "unavailable\.png" to ImageKit/, 'unavailable error, SQLSTATE IK003');
like($err, qr/DETAIL:  HTTP status 503\..*Request ID: [0-9a-f-]{36}\. Attempts: 3\./, 'detail has status, request id and attempts');
is(requests(), 3, 'max_retries = 2 means three attempts');

# 429: Retry-After and X-RateLimit-Reset are honoured, within the cap
$ik->reset;
$ik->faults({ status => 429, headers => { 'Retry-After' => '2' } });
my $secs;
($rc, $out, $err, $secs) = upload('ratelimited');
is($rc, 0, 'upload succeeds after a 429');
cmp_ok($secs, '>=', 1.9, "Retry-After: 2 waited ($secs s)");
is(requests(), 2, 'one retry after the 429');

$ik->reset;
$ik->faults({ status => 429, headers => { 'X-RateLimit-Reset' => '1500' } });
($rc, $out, $err, $secs) = upload('ratereset');
is($rc, 0, 'upload succeeds after a 429 with X-RateLimit-Reset');
cmp_ok($secs, '>=', 1.4, "X-RateLimit-Reset: 1500 waited ($secs s)");

$ik->reset;
$ik->faults({ status => 429, headers => { 'Retry-After' => '120' } });
($rc, $out, $err, $secs) = upload('ratecap', "SET imagekit.retry_max_delay = '1s';\n");
is($rc, 0, 'upload succeeds after a 429 asking for two minutes');
cmp_ok($secs, '<', 10, "the wait is capped by imagekit.retry_max_delay ($secs s)");

# permanent errors are not retried
for my $case ([ 400, 'IK002', 'ImageKit rejected' ],
	[ 401, 'IK001', 'ImageKit refused the credentials' ],
	[ 403, 'IK001', 'ImageKit refused the credentials' ])
{
	my ($status, $code, $msg) = @$case;
	$ik->reset;
	$ik->faults({ status => $status, body => { message => "nope $status", help => '' } });
	($rc, $out, $err) = upload("perm$status");
	like($err, qr/ERROR:  $code: $msg/, "$status gives $code");
	like($err, qr/DETAIL:  HTTP status $status\. ImageKit said: nope $status\./, "$status detail quotes ImageKit");
	is(requests(), 1, "$status is not retried");
}
like($err, qr/HINT:  Check imagekit\.private_key\./, '403 hints at the key');

# a wrong key, as the stand-in sees it
$ik->reset;
$ik->config(private_key => 'private_someone_else');
($rc, $out, $err) = upload('wrongkey');
like($err, qr/ERROR:  IK001: .*DETAIL:  HTTP status 403\. ImageKit said: Your account cannot be authenticated\./s,
	'a key the server does not know gives 403 / IK001');
$ik->config(private_key => $key);

# timeouts
$ik->reset;
$ik->faults({ action => 'delay', ms => 3000, count => 2 });
($rc, $out, $err, $secs) = upload('slow',
	"SET imagekit.timeout = 500; SET imagekit.max_retries = 1;\n");
like($err, qr/ERROR:  IK003: .*DETAIL:  No HTTP response was received\. Error: .*[Tt]imeout/s,
	'a slow answer times out');
cmp_ok($secs, '<', 2.8, "two 500 ms attempts end quickly ($secs s)");
is(requests(), 2, 'the timeout was retried once');

# answers that are not answers
$ik->reset;
$ik->faults({ action => 'garbage' });
($rc, $out, $err) = upload('garbage');
like($err, qr/ERROR:  IK004: unusable response from ImageKit/, 'HTML with 200 is an unusable response');
is(requests(), 1, 'an unusable response is not retried');

$ik->reset;
$ik->faults({ action => 'json', body => { fileId => 'abc', name => 'x.png' } });
($rc, $out, $err) = upload('nourl');
like($err, qr/ERROR:  IK004: .*not a JSON object with a "url" string/s, 'JSON without url is refused');

$ik->reset;
$ik->faults({ action => 'json', body => { url => 42 } });
($rc, $out, $err) = upload('urlnumber');
like($err, qr/ERROR:  IK004/, 'a url that is not a string is refused');

$ik->reset;
$ik->faults({ action => 'raw', status => 302, headers => { Location => 'http://127.0.0.1:9/' }, body_b64 => '' });
($rc, $out, $err) = upload('redirect');
like($err, qr/ERROR:  IK004: .*HTTP status 302/s, 'a redirect from the upload endpoint is not followed');
is($node->safe_psql('postgres', "SELECT count(*) FROM imagekit.assets WHERE name IN ('garbage.png', 'nourl.png', 'urlnumber.png', 'redirect.png')"),
	'0', 'failed uploads leave no asset');

# dedup: the same bytes again send no request
$ik->reset;
($rc, $out) = upload('dedup');
like($out, qr/\|f$/, 'first upload is fresh');
($rc, $out) = upload('dedup');
like($out, qr/\|t$/, 'second upload is deduplicated');
is(requests(), 1, 'no request reached the stand-in for the second upload');

# two sessions uploading the same bytes at once both succeed, one asset
$ik->reset;
$ik->faults({ action => 'delay', ms => 1000, count => 2 });
my $sql = "SELECT url FROM imagekit_upload(" . content('together') . ", 'together.png')";
my ($o1, $e1, $o2, $e2) = ('', '', '', '');
my $h1 = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c', $sql ], '>', \$o1, '2>', \$e1);
my $h2 = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c', $sql ], '>', \$o2, '2>', \$e2);
$h1->finish;
$h2->finish;
is($e1 . $e2, '', 'concurrent uploads of the same bytes both succeed');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM imagekit.assets WHERE content_hash = encode(sha256(" . content('together') . "), 'hex')"),
	'1', 'one asset row for the two uploads');

# cancellation: pg_cancel_backend() stops a slow upload at once, and the
# wait shows in pg_stat_activity
$ik->reset;
$ik->faults({ action => 'delay', ms => 30000 });
my ($co, $ce) = ('', '');
my $t0 = time;
my $h = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
		"SELECT imagekit_upload(" . content('cancel-me') . ", 'cancel-me.png')" ],
	'>', \$co, '2>', \$ce);
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND wait_event = '"
	  . ($node->pg_version >= 17 ? 'ImageKitUpload' : 'Extension')
	  . "' AND query LIKE '%cancel-me%' AND pid <> pg_backend_pid()"),
	'the upload waits on an Extension wait event (ImageKitUpload from 17)');
$node->safe_psql('postgres', "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%cancel-me%' AND pid <> pg_backend_pid()");
$h->finish;
like($ce, qr/canceling statement due to user request/, 'pg_cancel_backend cancels the upload');
cmp_ok(time - $t0, '<', 10, 'cancellation is prompt');

# statement_timeout stops a slow upload, and a backoff sleep
$ik->reset;
$ik->faults({ action => 'delay', ms => 30000 });
($rc, $out, $err, $secs) = upload('stmt-timeout', "SET statement_timeout = '1s';\n");
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout stops a slow upload');
cmp_ok($secs, '<', 5, "promptly ($secs s)");

$ik->reset;
$ik->faults({ status => 503, headers => { 'Retry-After' => '60' } });
($rc, $out, $err, $secs) = upload('backoff-timeout',
	"SET statement_timeout = '1s'; SET imagekit.retry_max_delay = '2min';\n");
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout stops a backoff sleep');
cmp_ok($secs, '<', 5, "promptly ($secs s)");

# no leaks across many calls, failed ones included: open files and private
# memory of one backend stay flat
$ik->reset;
$ik->faults(map { ({ status => 400 }, { action => 'delay', ms => 0 }) } 1 .. 200);
my $probe = "SELECT count(*) AS fds, (regexp_match(pg_read_file('/proc/self/status'), 'RssAnon:\\s+(\\d+)'))[1] AS anon_kb FROM pg_ls_dir('/proc/self/fd');\n";
my $script = "SET imagekit.max_retries = 0;\n";
my $n = 0;
my $calls = sub {
	my ($count) = @_;
	my $s = '';
	for (1 .. $count)
	{
		$n++;
		$s .= "SELECT (imagekit_upload(" . content("leak $n") . ", 'leak$n.png')).deduplicated;\n";
		$s .= "SELECT (imagekit_upload(" . content('leak 1') . ", 'leak1.png')).deduplicated;\n" if $n % 10 == 0;
		$s .= "SELECT imagekit_upload(''::bytea, 'x.png');\n" if $n % 25 == 0;
	}
	return $s;
};
$script .= $calls->(50) . $probe . $calls->(300) . $probe;
($rc, $out, $err) = ('', '', '');
$node->psql('postgres', $script, stdout => \$out, stderr => \$err, on_error_stop => 0);
my @probes = ($out =~ /^(\d+)\|(\d+)$/mg);
is(scalar(@probes), 4, 'leak probes ran');
my ($fd1, $kb1, $fd2, $kb2) = @probes;
like($err, qr/ImageKit rejected the upload/, 'the leak run included failed uploads');
cmp_ok($fd2, '<=', $fd1 + 3, "open files stay flat over 300 calls ($fd1 -> $fd2)");
SKIP:
{
	# ASan keeps freed memory in quarantine: RSS says nothing under it
	skip 'memory is not flat under AddressSanitizer', 1 if ($ENV{LD_PRELOAD} // '') =~ /asan/;
	cmp_ok($kb2 - $kb1, '<', 2048, "private memory stays flat over 300 calls ($kb1 kB -> $kb2 kB)");
}

# a missing key is refused before any request
$ik->reset;
$node->safe_psql('postgres', "ALTER SYSTEM SET imagekit.private_key = ''");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('imagekit.private_key') = ''");
($rc, $out, $err) = upload('nokey');
like($err, qr/ERROR:  IK000: imagekit\.private_key is not set/, 'a missing key gives IK000');
is(requests(), 0, 'and no request');

# rotating the key with ALTER SYSTEM and a reload takes effect at once
my $key2 = 'private_rotated_' . join('', map { ('a' .. 'z')[ rand 26 ] } 1 .. 20);
$ik->config(private_key => $key2);
$node->safe_psql('postgres', "ALTER SYSTEM SET imagekit.private_key = '$key2'");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('imagekit.private_key') <> ''");
($rc, $out, $err) = upload('rotated');
is($rc, 0, 'upload succeeds with the rotated key');

# a non-superuser sees neither the key nor, by default, the function
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');
($rc, $out, $err) = ('', '', '');
$node->psql('postgres', "\\set VERBOSITY sqlstate\nSHOW imagekit.private_key", extra_params => [ '-U', 'app' ], stderr => \$err);
like($err, qr/ERROR:  42501/, 'a non-superuser cannot SHOW the key (insufficient_privilege)');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_settings WHERE name = 'imagekit.private_key'", extra_params => [ '-U', 'app' ]),
	'0', 'nor see it in pg_settings');
$node->psql('postgres', "SELECT imagekit_upload('\\x01'::bytea, 'x.png')", extra_params => [ '-U', 'app' ], stderr => \$err);
like($err, qr/permission denied for function imagekit_upload/, 'nor execute imagekit_upload by default');

# the key never reached the server log
$node->stop;
my $log = slurp_file($node->logfile);
like($log, qr/imagekit/, 'the log has imagekit lines');
unlike($log, qr/\Q$key\E/, 'the private key is not in the server log');
unlike($log, qr/\Q$key2\E/, 'nor the rotated key');
like($log, qr/parameter "imagekit\.private_key" \[redacted\]/, 'the reload message is redacted');

$ik->stop;
done_testing();
