# ImageKitSession: a psql session kept open across steps of a TAP test, for
# transactions that must stay open while something else happens (a row
# lock held, a transaction that began earlier).  It drives psql through
# IPC::Run, so it works the same with every PostgreSQL major's test modules.
#
#   my $s = ImageKitSession->new($node, 'postgres');
#   $s->query('BEGIN');
#   my $out = $s->query('SELECT 1');   # waits for the answer
#   $s->quit;
package ImageKitSession;

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $marker = '__imagekit_session_done__';

sub new
{
	my ($class, $node, $dbname) = @_;
	my $self = bless { in => '', out => '', err => '' }, $class;
	$self->{timer} = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
	$self->{h} = IPC::Run::start(
		[ $node->installed_command('psql'), '-X', '-q', '-A', '-t',
		  '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr($dbname) ],
		'<', \$self->{in}, '>', \$self->{out}, '2>', \$self->{err},
		$self->{timer});
	return $self;
}

# Run one statement and return its output (errors go to ->err).
sub query
{
	my ($self, $sql) = @_;
	$self->send($sql);
	return $self->result;
}

# Send a statement without waiting for it; ->done says whether it has
# finished, ->result waits for it and returns its output.
sub send
{
	my ($self, $sql) = @_;
	$self->{out} = '';
	$self->{in} .= "$sql;\n\\echo $marker\n";
	$self->{timer}->start($PostgreSQL::Test::Utils::timeout_default);
	$self->{h}->pump_nb;
}

sub done
{
	my ($self) = @_;
	$self->{h}->pump_nb;
	return $self->{out} =~ /\Q$marker\E/;
}

sub result
{
	my ($self) = @_;
	$self->{h}->pump until $self->{out} =~ /\Q$marker\E/;
	(my $out = $self->{out}) =~ s/\Q$marker\E\n?//;
	chomp $out;
	return $out;
}

sub err { return $_[0]->{err}; }

sub quit
{
	my ($self) = @_;
	$self->{in} .= "\\q\n";
	$self->{h}->finish;
}

1;
