# ImageKitNode: what the TAP tests ask of a cluster with the extension,
# each waiting for the condition it is about rather than sleeping.
#
#   ik_drained($node, $db)       the queue of $db has ended: nothing in the
#                                inbox, nothing queued or in flight
#   ik_set_enabled($node, $on)   imagekit.enabled, and wait until every
#                                worker has taken it (paused, or not)
package ImageKitNode;

use strict;
use warnings;

use Exporter 'import';
our @EXPORT = qw(ik_drained ik_set_enabled);

my $paused = 'imagekit: paused (imagekit.enabled = off)';

sub ik_drained
{
	my ($node, $db) = @_;
	# one snapshot: a row cannot hide between the inbox and the queue
	return $node->poll_query_until($db // 'postgres',
		"SELECT NOT EXISTS (SELECT FROM imagekit.inbox)
		    AND NOT EXISTS (SELECT FROM imagekit.jobs WHERE state IN ('queued', 'in_flight'))");
}

sub ik_set_enabled
{
	my ($node, $on) = @_;
	my $value = $on ? 'on' : 'off';
	$node->safe_psql('postgres', "ALTER SYSTEM SET imagekit.enabled = $value");
	$node->reload;
	# the workers report "paused" once they have taken the reload and
	# finished what they held; they leave it as soon as they are enabled
	return $node->poll_query_until('postgres',
		"SELECT bool_and((query = '$paused') = " . ($on ? 'false' : 'true') . ")
		   FROM pg_stat_activity WHERE backend_type = 'imagekit worker'");
}

1;
