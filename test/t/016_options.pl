# Per-table upload options, result columns and notifications, end to end:
# what the stand-in receives (and, where Node.js and the official SDK are
# here, that it is what @imagekit/nodejs sends for the same options), the
# row's own tags and metadata, the columns filled from ImageKit's answer
# (and left NULL by a fallback), dedup per options, configure() while rows
# wait, a result stored after its row was locked, and the notifications a
# listening session receives.
use strict;
use warnings;

use FindBin;
use JSON::PP;
use MIME::Base64;
use lib "$FindBin::RealBin/../perl";

use ImageKitNode;
use ImageKitSession;
use ImageKitStandIn;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(usleep);

my $ik = ImageKitStandIn->new;
my $base = $ik->base_url;

my $node = PostgreSQL::Test::Cluster->new('options');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'imagekit_ext'\n"
	  . $ik->conf
	  . "imagekit.allow_private_sources = on\n"
	  . "log_min_messages = warning\n");
$node->start;

sub sq { return $node->safe_psql('postgres', $_[0]); }
sub drained { return ik_drained($node); }

sq(q{
	CREATE EXTENSION imagekit_ext;
	CREATE TABLE beans (id bigint PRIMARY KEY, url text, labels varchar[], extra json,
	                    width integer, height integer, bytes numeric, fid text,
	                    fpath text, fname varchar, chash text);
	CREATE TABLE plain (id int PRIMARY KEY, url text);
	SELECT imagekit.attach('plain');
});
my $options = '{"folder": "coffee/beans", "tags": ["coffee", "beans"],
	"custom_metadata": {"roaster": "north", "grams": 250},
	"is_private_file": true,
	"transformation": {"pre": "w-800,h-800", "post": [{"type": "thumbnail", "value": "w-150"}]},
	"extensions": [{"name": "google-auto-tagging", "maxTags": 5, "minConfidence": 95}],
	"tags_column": "labels", "custom_metadata_column": "extra"}';
sq("SELECT imagekit.attach('beans', options => '$options',
	columns => '{\"width\": \"width\", \"height\": \"height\", \"size\": \"bytes\", \"file_id\": \"fid\",
	             \"file_path\": \"fpath\", \"name\": \"fname\", \"content_hash\": \"chash\"}',
	notify => true)");

my $listener = ImageKitSession->new($node, 'postgres');
$listener->query('LISTEN imagekit_beans');
my $other = ImageKitSession->new($node, 'postgres');
$other->query('LISTEN imagekit_plain');

$ik->reset;
sq("INSERT INTO beans (id, url, labels, extra) VALUES
	(1, '$base/source/img-1-3000.png', '{light,coffee}', '{\"origin\": \"kenya\", \"roaster\": \"south\"}'),
	(2, '$base/source/missing.png', NULL, NULL),
	(3, '$base/source/img-1-3000.png', '{\"50%\"}', NULL),
	(4, '$base/source/img-1-3000.png', '{dark}', NULL),
	(5, '$base/source/img-1-3000.png', '{light,coffee}', '{\"roaster\": \"south\", \"origin\": \"kenya\"}'),
	(6, '$base/source/img-2-3000.png', NULL, NULL)");
sq("INSERT INTO plain VALUES (1, '$base/source/img-2-3000.png')");
ok(drained(), 'drained');

my $st = $ik->stats;
my %by_name = map { ($_->{fileName} => $_) } @{ $st->{files} };
is($st->{uploads}, 4, 'four uploads: rows 1 (and 5, the same content and options), 4 (other tags), 6, and the plain table\'s');
my ($f1) = grep { $_->{fields}{tags} eq 'coffee,beans,light' } @{ $st->{files} };
ok($f1, 'row 1: the table\'s tags, then the row\'s new ones, comma-joined');
my %want = (
	folder => 'coffee/beans',
	useUniqueFileName => 'false',
	isPrivateFile => 'true',
	customMetadata => '{"grams":250,"origin":"kenya","roaster":"south"}',
	transformation => '{"pre":"w-800,h-800","post":[{"type":"thumbnail","value":"w-150"}]}',
	extensions => '[{"name":"google-auto-tagging","maxTags":5,"minConfidence":95}]',
);
is_deeply({ map { ($_ => $f1->{fields}{$_}) } keys %want }, \%want,
	'row 1: each option as the SDK sends it (JSON text, "true"), the row\'s metadata over the table\'s');
like($f1->{fileName}, qr/^[0-9a-f]{64}-[0-9a-f]{16}\.png$/, 'named after the content and the options');
my ($f4) = grep { $_->{fields}{tags} eq 'coffee,beans,dark' } @{ $st->{files} };
ok($f4 && $f4->{sha256} eq $f1->{sha256} && $f4->{fileName} ne $f1->{fileName},
	'row 4: the same bytes with other tags are another file');
my ($fp) = grep { $_->{fields}{folder} ne 'coffee/beans' } @{ $st->{files} };
ok($fp && !exists $fp->{fields}{tags} && !exists $fp->{fields}{isPrivateFile}
	  && $fp->{fileName} eq "$fp->{sha256}.png" && $fp->{fields}{folder} eq '/coffee-images/',
	'a table without options uploads as before: <sha256>.png in imagekit.folder, no other field');
my ($f6) = grep { $_->{fields}{tags} eq 'coffee,beans' } @{ $st->{files} };
ok($f6 && $f6->{fields}{customMetadata} eq '{"grams":250,"roaster":"north"}',
	'row 6: a row without tags or metadata gets the table\'s');
ok($f6 && $f6->{sha256} eq $fp->{sha256} && $f6->{fileName} ne $fp->{fileName},
	'the same bytes in two tables with other options: two files');

is(sq("SELECT string_agg(id || ':' || coalesce(width::text, '-') || ',' || coalesce(height::text, '-') || ','
        || coalesce(bytes::text, '-') || ',' || (fid IS NOT NULL) || ',' || (chash IS NOT NULL), ' ' ORDER BY id) FROM beans"),
	'1:64,64,3000,true,true 2:-,-,-,false,false 3:-,-,-,false,false 4:64,64,3000,true,true 5:64,64,3000,true,true 6:64,64,3000,true,true',
	'the result columns: filled from ImageKit\'s answer, NULL after a fallback');
is(sq("SELECT count(*) FROM beans b WHERE b.id = 1 AND b.chash = '$f1->{sha256}'
        AND b.fpath = '/coffee/beans/$f1->{fileName}' AND b.fname = '$f1->{fileName}'
        AND b.fid = '$f1->{fileId}' AND b.imagekit_url = 'https://ik.imagekit.io/demo' || b.fpath"),
	'1', 'row 1: file id, path, name and content hash are ImageKit\'s and the bytes\'');
is(sq("SELECT fid FROM beans WHERE id = 5"), $f1->{fileId}, 'row 5, deduplicated: the same file\'s columns');
is(sq("SELECT state || ': ' || last_error FROM imagekit.jobs WHERE tbl = 'beans'::regclass AND row_key = '3'"),
	'fallback: not uploaded: a tag of the row is empty or holds "%" or ","',
	'row 3: tags ImageKit would refuse: a fallback without an upload, with the reason');

# the notifications: one per job, in the listening session
my %heard;
for (1 .. 100)
{
	my $out = $listener->query('SELECT 1');
	while ($out =~ /Asynchronous notification "imagekit_beans" with payload "(.*)" received/g)
	{
		my $p = decode_json($1);
		push @{ $heard{ $p->{key} } }, $p;
	}
	last if keys %heard >= 6;
	usleep(50_000);
}
is(join(',', map { scalar @{ $heard{$_} } } sort keys %heard), '1,1,1,1,1,1', 'one notification per row');
is_deeply($heard{1}[0], { table => 'public.beans', key => '1', state => 'done',
	url => sq("SELECT imagekit_url FROM beans WHERE id = 1") }, 'done: the table, the key, the state and the URL');
is_deeply($heard{2}[0], { table => 'public.beans', key => '2', state => 'fallback',
	url => "$base/source/missing.png" }, 'fallback: the source URL');
unlike($other->query('SELECT 1'), qr/Asynchronous/, 'a table attached without notify sends none');

# the same content uploaded through the official SDK with the same options
# sends the same fields
my $sdk_dir = "$FindBin::RealBin/../bench";
SKIP:
{
	skip 'no Node.js or no @imagekit/nodejs in test/bench (npm ci there)', 1
	  unless -d "$sdk_dir/node_modules/\@imagekit/nodejs" && system('node --version >/dev/null 2>&1') == 0;
	my $bytes = '';
	{
		my $http = HTTP::Tiny->new;
		$bytes = $http->get("$base/source/img-1-3000.png")->{content};
	}
	my $in = $node->basedir . '/sdk-upload.json';
	# (objects with their keys in the order jsonb keeps them: the order
	# written is not kept, and means nothing to ImageKit)
	my $b64 = encode_base64($bytes, '');
	my $key = $ik->key;
	PostgreSQL::Test::Utils::append_to_file($in, qq({"baseURL": "$base", "privateKey": "$key", "fileBase64": "$b64",
		"fileName": "sdk.png", "useUniqueFileName": false, "folder": "coffee/beans", "tags": ["coffee", "beans", "light"],
		"customMetadata": {"grams": 250, "origin": "kenya", "roaster": "south"}, "isPrivateFile": true,
		"transformation": {"pre": "w-800,h-800", "post": [{"type": "thumbnail", "value": "w-150"}]},
		"extensions": [{"name": "google-auto-tagging", "maxTags": 5, "minConfidence": 95}]}));
	my $out = `cd '$sdk_dir' && IK_SDK_DIR='$sdk_dir' node '$FindBin::RealBin/../options/sdk-upload.mjs' < '$in'`;
	my ($sdk) = grep { $_->{fileName} eq 'sdk.png' } @{ $ik->stats->{files} };
	my %ours = %{ $f1->{fields} };
	my %theirs = $sdk ? %{ $sdk->{fields} } : ();
	delete $_->{fileName} for \%ours, \%theirs;
	is_deeply(\%ours, \%theirs, 'the fields are those @imagekit/nodejs sends for the same options')
	  or diag("sdk: $out");
}

# configure() while rows wait: they are uploaded with the new options
ik_set_enabled($node, 0);
sq("INSERT INTO beans (id, url) VALUES (7, '$base/source/img-3-3000.png')");
sq("SELECT imagekit.configure('beans', options => '{\"folder\": \"coffee/new\"}')");
ik_set_enabled($node, 1);
ok(drained(), 'drained after configure');
my ($f7) = grep { $_->{fields}{folder} eq 'coffee/new' } @{ $ik->stats->{files} };
ok($f7 && !exists $f7->{fields}{tags} && !exists $f7->{fields}{isPrivateFile},
	'a row queued before configure() is uploaded with the options it set');
is(sq("SELECT width FROM beans WHERE id = 7"), '64', 'and the result columns, which configure() left alone, are filled');

# a row locked while its result comes back: the result waits in the job and
# is stored, result columns and notification included, once the lock goes
$listener->query('SELECT 1');
ik_set_enabled($node, 0);
sq("INSERT INTO beans (id, url) VALUES (8, '$base/source/img-4-3000.png')");
my $locker = ImageKitSession->new($node, 'postgres');
$locker->query('BEGIN');
$locker->query('SELECT 1 FROM beans WHERE id = 8 FOR UPDATE');
ik_set_enabled($node, 1);
ok($node->poll_query_until('postgres',
	"SELECT pending_state = 'done' FROM imagekit.jobs WHERE tbl = 'beans'::regclass AND row_key = '8'"),
	'the result of the locked row waits in its job');
$locker->query('COMMIT');
ok($node->poll_query_until('postgres', "SELECT width = 64 AND chash IS NOT NULL AND fid IS NOT NULL FROM beans WHERE id = 8"),
	'stored with its result columns once the lock is gone');
my $heard8 = '';
for (1 .. 100)
{
	$heard8 .= $listener->query('SELECT 1');
	last if $heard8 =~ /"key": "8"/;
	usleep(50_000);
}
like($heard8, qr/"key": "8", "url": "https:[^"]*", "state": "done"/, 'and its notification sent then');

# a table an application holds (ACCESS EXCLUSIVE) while a row whose tags
# come from the row waits: the job waits, the worker does not, and the other
# tables drain meanwhile
sq("SELECT imagekit.configure('beans', options => '{\"folder\": \"coffee/new\", \"tags_column\": \"labels\"}')");
ik_set_enabled($node, 0);
sq("INSERT INTO beans (id, url, labels) VALUES (12, '$base/source/img-8-3000.png', '{locked}')");
$locker->query('BEGIN');
$locker->query('LOCK TABLE beans IN ACCESS EXCLUSIVE MODE');
ik_set_enabled($node, 1);
ok($node->poll_query_until('postgres',
	"SELECT state = 'queued' AND last_error = 'table public.beans is locked: its row''s options are read later'
	   FROM imagekit.jobs WHERE tbl = 'beans'::regclass AND row_key = '12'"),
	'a job whose row cannot be read now goes back to the queue');
sq("INSERT INTO plain VALUES (2, '$base/source/img-9-3000.png')");
ok($node->poll_query_until('postgres', "SELECT imagekit_url IS NOT NULL FROM plain WHERE id = 2"),
	'the other table drains meanwhile');
$locker->query('COMMIT');
ok($node->poll_query_until('postgres', "SELECT width = 64 FROM beans WHERE id = 12"), 'done once the lock goes');
is(sq("SELECT state || ' ' || attempts FROM imagekit.jobs WHERE tbl = 'beans'::regclass AND row_key = '12'"), 'done 0',
	'no attempt counted for the waits');
ok((grep { $_->{fields}{tags} eq 'coffee,beans,locked' } @{ $ik->stats->{files} }) == 0
	  && (grep { ($_->{fields}{tags} // '') eq 'locked' } @{ $ik->stats->{files} }) == 1,
	'with its row\'s tags');

# a row whose metadata cannot be read (valid json, but not jsonb): that job
# falls back, the worker goes on
sq("SELECT imagekit.configure('beans', options => '{\"custom_metadata_column\": \"extra\"}')");
sq("INSERT INTO beans (id, url, extra) VALUES (13, '$base/source/img-10-3000.png', '{\"x\": \"\\u0000\"}'),
	(14, '$base/source/img-11-3000.png', '{\"x\": 1}')");
ok(drained(), 'drained with an unreadable row');
like(sq("SELECT state || ': ' || last_error FROM imagekit.jobs WHERE tbl = 'beans'::regclass AND row_key = '13'"),
	qr/^fallback: not uploaded: could not read the row's tags or metadata: unsupported Unicode escape sequence/,
	'that row falls back, saying why');
is(sq("SELECT width FROM beans WHERE id = 14"), '64', 'the next one is uploaded');

# a result the table's owner refuses to store (a trigger raises): the
# listener hears of the fallback, with no URL
sq(q{CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN IF NEW.id = 15 THEN RAISE EXCEPTION 'not this one'; END IF; RETURN NEW; END $$;
	CREATE TRIGGER refuse BEFORE UPDATE ON beans FOR EACH ROW EXECUTE FUNCTION refuse()});
$listener->query('SELECT 1');
sq("INSERT INTO beans (id, url) VALUES (15, '$base/source/img-12-3000.png')");
ok(drained(), 'drained with a refused store');
my $heard15 = '';
for (1 .. 100)
{
	$heard15 .= $listener->query('SELECT 1');
	last if $heard15 =~ /"key": "15"/;
	usleep(50_000);
}
like($heard15, qr/\{"key": "15", "url": null, "state": "fallback", "table": "public.beans"\}/,
	'a store that failed is heard as a fallback without a URL');
sq('DROP TRIGGER refuse ON beans');

# a hostile owner: the row is read as the owner, so code of theirs that
# runs when it is read (an index expression, computed when the worker plans
# the read) never runs as the superuser the worker is
sq(q{
	CREATE ROLE mallory;
	CREATE SCHEMA mallory AUTHORIZATION mallory;
	SET ROLE mallory;
	CREATE FUNCTION mallory.probe() RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$
	BEGIN
		IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
			RAISE EXCEPTION 'mallory''s code ran as a superuser';
		END IF;
		RETURN 0;
	END $$;
	CREATE TABLE mallory.pics (id int PRIMARY KEY, url text, labels text[]);
	CREATE INDEX ON mallory.pics ((id + mallory.probe()));
	RESET ROLE;
	SELECT imagekit.attach('mallory.pics', options => '{"tags_column": "labels"}');
});
sq("SET ROLE mallory; INSERT INTO mallory.pics VALUES (1, '$base/source/img-13-3000.png', '{mine}')");
ok(drained(), 'the hostile owner\'s table drains');
is(sq("SELECT state || coalesce(': ' || last_error, '') FROM imagekit.jobs WHERE tbl = 'mallory.pics'::regclass"),
	'done', 'its row was read as its owner, not as a superuser');
sq('DROP SCHEMA mallory CASCADE; DROP ROLE mallory');

# notify off, then a channel of one's own
sq("SELECT imagekit.configure('beans', notify => false)");
sq("INSERT INTO beans (id, url) VALUES (9, '$base/source/img-5-3000.png')");
ok(drained(), 'drained without notifications');
$listener->query('LISTEN beans_ready');
sq("SELECT imagekit.configure('beans', notify_channel => 'beans_ready')");
sq("INSERT INTO beans (id, url) VALUES (10, '$base/source/img-6-3000.png')");
ok(drained(), 'drained with a channel of its own');
my $heard10 = $listener->query('SELECT 1');
unlike($heard10, qr/"key": "9"/, 'nothing was sent while notify was off');
like($heard10, qr/Asynchronous notification "beans_ready" with payload "\{"key": "10"/, 'the channel given is used');

# a dump restored elsewhere keeps the options, the columns and the channel
my $dump = $node->basedir . '/options.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump');
sq('CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
is($node->safe_psql('restored', "SELECT options::text || ' ' || columns::text || ' ' || notify_channel FROM imagekit.attached WHERE tbl = 'beans'::regclass"),
	sq("SELECT options::text || ' ' || columns::text || ' ' || notify_channel FROM imagekit.attached WHERE tbl = 'beans'::regclass"),
	'the restored database has the same configuration');
$node->safe_psql('restored', "INSERT INTO beans (id, url) VALUES (11, '$base/source/img-7-3000.png')");
ok(ik_drained($node, 'restored'), 'the restored database drains');
is($node->safe_psql('restored', "SELECT width FROM beans WHERE id = 11"), '64', 'with its result columns');

$listener->quit;
$other->quit;
$locker->quit;
$node->stop;
done_testing();
