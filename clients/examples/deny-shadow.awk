# A complete brokerd authorizer in awk (plain mode: one line in, one line out).
# Deny opening /etc/shadow with EACCES; allow everything else.
#
#   brokerctl run -a 'awk -W interactive -f clients/examples/deny-shadow.awk' -- cat /etc/hostname /etc/shadow   (mawk)
#   brokerctl run -a 'gawk -f clients/examples/deny-shadow.awk' -- ...                                            (gawk, busybox)
#
# mawk (Debian's default awk) reads its input in large blocks and would wait
# for more lines before answering the first: `-W interactive` makes it read
# line by line.  The broker then gives up on the greeting after --timeout.
{
    if ($1 == "syscall" && ($6 == "openat" || $6 == "open") && index($0, "\"/etc/shadow\""))
        print "skip-fail EACCES"
    else
        print "cont"
    fflush()
}
