#!/usr/bin/perl
# A complete brokerd authorizer in Perl, in handshake mode: it answers the
# broker's greeting with its own hello, so it is sent only openat/open calls,
# and it prefixes each reply with the event's id.
# Deny opening /etc/shadow with EACCES; allow everything else.
#
#   brokerctl run -a 'perl clients/examples/deny-shadow.pl' -- cat /etc/hostname /etc/shadow
use strict;
use warnings;

$| = 1;    # unbuffered: each answer goes out at once
while (my $line = <STDIN>) {
    chomp $line;
    if ($line =~ /^hello \S+ .*role=broker session=/) {
        print "hello 1 role=authorizer name=deny-shadow-perl trace=openat,open\n";
    } elsif ($line =~ /^syscall (\d+) \d+ \d+ \S+ (?:openat|open) (.*)$/) {
        my ($id, $args) = ($1, $2);
        print $args =~ /(?:^|, )"\/etc\/shadow",/ ? "$id skip-fail EACCES\n" : "$id cont\n";
    } elsif ($line =~ /^(?:syscall|sysret|signal) (\d+) /) {
        print "$1 cont\n";    # not subscribed; answer anyway to be safe
    }
    # hello confirmations, proc and error lines get no answer
}
