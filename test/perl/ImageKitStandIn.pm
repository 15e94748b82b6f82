# ImageKitStandIn: start, steer and read the stand-in ImageKit
# (test/imagekit_standin.py) from a TAP test.
#
#   my $ik = ImageKitStandIn->new(key => 'private_xyz');
#   $node->append_conf('postgresql.conf', $ik->conf);
#   $ik->faults({status => 500, count => 2});
#   my $stats = $ik->stats;          # decoded JSON
package ImageKitStandIn;

use strict;
use warnings;

use File::Basename qw(dirname);
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep);

my $script = dirname(__FILE__) . '/../imagekit_standin.py';

sub new
{
	my ($class, %args) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $self = bless {
		key => $args{key} // 'private_tap_test_key',
		dir => $dir,
		http => HTTP::Tiny->new(timeout => 30, keep_alive => 0),
	}, $class;
	my @cmd = ('python3', $script, '--host', '127.0.0.1', '--port', $args{port} // 0,
		'--private-key', $self->{key},
		'--url-endpoint', 'https://ik.imagekit.io/demo',
		'--port-file', "$dir/port", @{ $args{extra_args} // [] });
	my $pid = fork();
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>>', "$dir/standin.log");
		open(STDERR, '>&', \*STDOUT);
		exec(@cmd) or die "could not run @cmd: $!";
	}
	$self->{pid} = $pid;
	for (1 .. 200)
	{
		last if -s "$dir/port";
		usleep(50_000);
	}
	die "stand-in did not start" unless -s "$dir/port";
	$self->{port} = slurp_file("$dir/port");
	$self->{port} =~ s/\s+//g;
	return $self;
}

sub key { return $_[0]->{key}; }
sub port { return $_[0]->{port}; }
sub base_url { return "http://127.0.0.1:$_[0]->{port}"; }

# a source image the stand-in serves: same seed, same bytes
sub source_url
{
	my ($self, $seed, $bytes) = @_;
	return $self->base_url . "/source/img-$seed-" . ($bytes // 2000) . '.png';
}
sub upload_endpoint { return $_[0]->base_url . '/api/v1/files/upload'; }

# postgresql.conf lines that point the extension at this stand-in
sub conf
{
	my ($self) = @_;
	return join("\n",
		"imagekit.private_key = '$self->{key}'",
		"imagekit.upload_endpoint = '" . $self->upload_endpoint . "'",
		"imagekit.url_endpoint = 'https://ik.imagekit.io/demo'",
		'');
}

sub _post
{
	my ($self, $path, $body) = @_;
	my $res = $self->{http}->post($self->base_url . $path,
		{ content => encode_json($body), headers => { 'Content-Type' => 'application/json' } });
	die "stand-in $path: $res->{status} $res->{content}" unless $res->{success};
	return decode_json($res->{content});
}

sub reset { my ($self) = @_; return $self->_post('/_standin/reset', {}); }
sub config { my ($self, %c) = @_; return $self->_post('/_standin/config', \%c); }
sub faults { my ($self, @f) = @_; return $self->_post('/_standin/faults', \@f); }

sub stats
{
	my ($self) = @_;
	my $res = $self->{http}->get($self->base_url . '/_standin/stats');
	die "stand-in stats: $res->{status}" unless $res->{success};
	return decode_json($res->{content});
}

sub stop
{
	my ($self) = @_;
	return unless $self->{pid};
	kill 'TERM', $self->{pid};
	waitpid($self->{pid}, 0);
	delete $self->{pid};
}

sub DESTROY { $_[0]->stop; }

1;
