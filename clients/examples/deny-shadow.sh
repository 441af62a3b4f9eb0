#!/bin/sh
# A complete brokerd authorizer in POSIX sh (plain mode: one line in, one line out).
# Deny opening /etc/shadow with EACCES; allow everything else.
#
#   brokerctl run -a 'sh clients/examples/deny-shadow.sh' -- cat /etc/hostname /etc/shadow
#
# The first line is the broker's greeting (hello ...); any answer but a hello
# makes this a plain authorizer, so "cont" is fine for it too.  `read -r`
# keeps backslashes, `IFS=` keeps spaces, printf does not interpret the line.
while IFS= read -r line; do
    case $line in
        "syscall "*" openat "*'"/etc/shadow"'* | "syscall "*" open "*'"/etc/shadow"'*)
            printf '%s\n' 'skip-fail EACCES' ;;
        *)
            printf '%s\n' cont ;;
    esac
done
