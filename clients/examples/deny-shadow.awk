# A complete brokerd authorizer in awk (plain mode: one line in, one line out).
# Deny opening /etc/shadow with EACCES; allow everything else.
{
    if ($1 == "syscall" && ($6 == "openat" || $6 == "open") && index($0, "\"/etc/shadow\""))
        print "skip-fail EACCES"
    else
        print "cont"
    fflush()
}
