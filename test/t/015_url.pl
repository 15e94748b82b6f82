# imagekit.url() against the official Node SDK (@imagekit/nodejs 7.11.0,
# helper.buildSrc): the SDK's own vectors and the cases of
# test/url/sdk-cases.jsonl, whose SDK outputs are test/url/sdk-cases.expected
# (made by test/url/sdk-probe.mjs; docs/research/issue12-url.md).  Cases the
# function refuses on purpose (a transformation outside ImageKit's string
# form, a host with a space or non-ASCII characters) must fail with 22023;
# cases it cannot take (queryParameters, SDK transformation objects, an
# expiry from a fixed clock, another key) are skipped.
use strict;
use utf8;
use warnings;

use FindBin;
use JSON::PP;
use lib "$FindBin::RealBin/../perl";

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('url');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'imagekit_ext'\n"
	  . "imagekit.private_key = 'dummy-key'\n"
	  . "imagekit.url_endpoint = 'https://ik.imagekit.io/demo/'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION imagekit_ext');

sub lit { my ($s) = @_; return 'NULL' unless defined $s; $s =~ s/'/''/g; return "'$s'"; }

# the vectors of the issue (and of the SDK's tests)
is($node->safe_psql('postgres', "SELECT imagekit.url('sdk-testing-files/future-search.png', signed => true)"),
	'https://ik.imagekit.io/demo/sdk-testing-files/future-search.png?ik-s=32dbbbfc5f945c0403c71b54c38e76896ef2d6b0',
	'the SDK vector: a signed path');
is($node->safe_psql('postgres', "SELECT imagekit.url('sdk-testing-files/हिन्दी.png', signed => true)"),
	'https://ik.imagekit.io/demo/sdk-testing-files/%E0%A4%B9%E0%A4%BF%E0%A4%A8%E0%A5%8D%E0%A4%A6%E0%A5%80.png?ik-s=3fff2f31da1f45e007adcdbe95f88c8c330e743c',
	'the SDK vector: a signed unicode path');

open(my $cf, '<:encoding(UTF-8)', "$FindBin::RealBin/../url/sdk-cases.jsonl") or die $!;
open(my $ef, '<:encoding(UTF-8)', "$FindBin::RealBin/../url/sdk-cases.expected") or die $!;
my @cases = map { decode_json(Encode::encode_utf8($_)) } <$cf>;
my @expected = map { chomp; $_ } <$ef>;
my ($same, $refused, $skipped) = (0, 0, 0);
for my $i (0 .. $#cases)
{
	my $c = $cases[$i];
	my $t = $c->{transformation};
	if (ref $t eq 'ARRAY')
	{
		if (@$t == 0) { $t = undef; }
		elsif (@$t == 1 && join(',', keys %{ $t->[0] }) eq 'raw') { $t = $t->[0]{raw}; }
		else { $skipped++; next; }
	}
	my $pos = $c->{transformationPosition} || 'query';    # as the SDK: '' is query
	my $ep = $c->{urlEndpoint} // '';
	if ($c->{queryParameters} || ($c->{privateKey} // 'dummy-key') ne 'dummy-key'
		|| ($c->{expiresIn} // 0) > 0 || ($pos ne 'query' && $pos ne 'path')
		|| $ep !~ m{^https://} || ($c->{src} // '') eq '')
	{
		$skipped++;
		next;
	}
	my $sql = sprintf("\\set VERBOSITY sqlstate\nSELECT imagekit.url(%s, %s, %s, NULL, %s, %s)",
		lit($c->{src}), lit($t), $c->{signed} ? 'true' : 'false', lit($pos), lit($ep));
	my ($rc, $out, $err) = $node->psql('postgres', Encode::encode_utf8($sql));
	$out = Encode::decode_utf8($out);
	if ($rc == 0)
	{
		$same++ if is($out, $expected[$i], "case $i: as the SDK builds it");
	}
	else
	{
		like($err, qr/ERROR:  22023/, "case $i: refused with 22023 (" . encode_json($c) . ")");
		$refused++;
	}
}
note "$same cases as the SDK builds them, $refused refused, $skipped skipped";
cmp_ok($same, '>=', 60, "at least 60 cases byte-identical with the SDK ($same)");

# Generated cases beside the SDK itself, when Node.js and the SDK are here
# (the benchmark's npm ci installs it in test/bench; the chroots of the
# other majors have no Node.js): paths with spaces, unicode, "?", "#", "+",
# "%", dots; absolute URLs with and without a query; chained
# transformations; both positions; signed, expiring and not.  All in one
# transaction, whose time the SDK's clock is set to, so that ik-t agrees.
my $sdk = "$FindBin::RealBin/../bench/node_modules/\@imagekit/nodejs";
SKIP:
{
	skip 'no Node.js or no @imagekit/nodejs in test/bench (npm ci there)', 1
	  unless -d $sdk && system('node --version >/dev/null 2>&1') == 0;

	my @segments = ('coffee-images', 'a b', 'हिन्दी', 'Über', 'x?y', 'hash#1', 'a+b', '50%', '%20', '.', '..',
		'é é', 'tilde~', 'semi;colon', 'quote"d', 'back`tick', '{braces}', 'CAPS', '');
	my @names = ('a.png', 'photo 1.jpg', 'ünïcödé.webp', 'q?.png', 'ok.jpeg');
	my @trs = (undef, 'w-300', 'w-300,h-200', 'w-300,h-200:rt-90', 'c-maintain_ratio,w-800,h-800', 'e-grayscale:q-80', 'ar-4-3,w-400');
	my @abs = ('https://ik.imagekit.io/demo/coffee-images/a.png', 'https://ik.imagekit.io/demo/x y.jpg?v=1',
		'https://ik.imagekit.io/demo/tr:w-100/a.png', 'https://IK.imagekit.io/demo/%C3%BC.png?a=b&c=d');
	srand(11);
	my (@cases, @sql);
	for my $i (1 .. 300)
	{
		my $src = $i % 5 == 0
		  ? $abs[ rand @abs ]
		  : join('/', map { $segments[ rand @segments ] } 1 .. 1 + int(rand 3)) . '/' . $names[ rand @names ];
		$src = "/$src" if $i % 7 == 0 && $src !~ m{^https://};
		my $tr = $trs[ rand @trs ];
		my $pos = rand() < 0.5 ? 'query' : 'path';
		my $signed = rand() < 0.5 ? 1 : 0;
		my $expires = (0, 0, 60, 3600)[ rand 4 ];
		push @cases, { src => $src, tr => $tr, pos => $pos, signed => $signed, expires => $expires };
		push @sql, sprintf("SELECT imagekit.url(%s, %s, %s, %d, %s);",
			lit($src), lit($tr), $signed ? 'true' : 'false', $expires, lit($pos));
	}
	my $out = $node->safe_psql('postgres', Encode::encode_utf8(
		"BEGIN;\nSELECT floor(extract(epoch FROM now()))::bigint;\n" . join("\n", @sql) . "\nCOMMIT;"));
	my @lines = split /\n/, Encode::decode_utf8($out);
	my $t = shift @lines;
	my $input = join('', map {
		encode_json({ src => $_->{src}, urlEndpoint => 'https://ik.imagekit.io/demo/',
			(defined $_->{tr} ? (transformation => $_->{tr}) : ()),
			transformationPosition => $_->{pos}, signed => ($_->{signed} ? JSON::PP::true : JSON::PP::false),
			($_->{expires} ? (expiresIn => $_->{expires}) : ()), now => 0 + $t }) . "\n"
	} @cases);
	my $in = $node->basedir . '/sdk-input.jsonl';
	PostgreSQL::Test::Utils::append_to_file($in, $input);
	my $sdk_dir = "$FindBin::RealBin/../bench";
	my $sdk_out = `cd '$sdk_dir' && IK_SDK_DIR='$sdk_dir' node '$FindBin::RealBin/../url/sdk-probe.mjs' < '$in'`;
	my @want = split /\n/, Encode::decode_utf8($sdk_out);
	my @diffs = grep { $lines[$_] ne ($want[$_] // '') } 0 .. $#cases;
	is(scalar(@diffs), 0, sprintf('%d generated cases: imagekit.url() and buildSrc() agree', scalar @cases))
	  or diag(join("\n", map { encode_json($cases[$_]) . "\n  sdk  $want[$_]\n  ours $lines[$_]" } @diffs[ 0 .. ($#diffs < 9 ? $#diffs : 9) ]));
}

$node->stop;
done_testing();
