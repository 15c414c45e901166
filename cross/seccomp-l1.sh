# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh disable=SC2034 # sc_res is read by the caller (finish, POLYVISOR-RUN)
# cross/seccomp-l1.sh: sourced by the L1 /init of cross/nested (busybox sh, as
# /etc/pv-seccomp.sh). The caller's vmm() sets sc_done=0 sc_res=none for each polyvisor run
# it starts; its finish() calls sc_poll while the run is unchecked and prints
# POLYVISOR-SECCOMP=missed when L2 was up but polyvisor ended before a look.
sc_done=0 sc_res=none
# seccomp_check: once per run (vmm() resets sc_done), while L2 runs: every thread of polyvisor
# must have its seccomp filter and no_new_privs (the default --seccomp true). Prints
# POLYVISOR-SECCOMP=ok with the thread names, or =bad with the threads that lack them; sets
# sc_res to ok or bad. finish() prints =missed for a run whose L2 was up but never checked.
seccomp_check() {
    [ "$sc_done" = 0 ] || return 0
    # Its own variable names (sc_*): finish() counts in $t and $w.
    for sc_c in /proc/[0-9]*/comm; do
        # The shell's read, not cat: no process per /proc entry (a short run is racing).
        { read -r sc_comm <"$sc_c"; } 2>/dev/null || sc_comm=""
        [ "$sc_comm" = polyvisor ] || continue
        sc_bad="" sc_names=""
        for sc_t in "${sc_c%/comm}"/task/*; do
            # status lists NoNewPrivs before Seccomp: take each by its name.
            sc_st="$(awk '/^Name:/ { n = $2 } /^Seccomp:/ { s = $2 } /^NoNewPrivs:/ { p = $2 } END { print n ":" s ":" p }' "$sc_t/status" 2>/dev/null)"
            case "$sc_st" in
                # A thread that ended between the listing and the read.
                ""|:*) ;;
                *:2:1) sc_names="$sc_names ${sc_st%%:*}" ;;
                *) sc_bad="$sc_bad $sc_st(name:Seccomp:NoNewPrivs)" ;;
            esac
        done
        sc_done=1
        if [ -z "$sc_bad" ]; then
            sc_res=ok; echo "POLYVISOR-SECCOMP=ok:$sc_names"
        else
            sc_res=bad; echo "POLYVISOR-SECCOMP=bad:$sc_bad"
        fi
        return 0
    done
}
# sc_poll: about one second in 0.1-s steps, looking for L2's POLYVISOR-GUEST-UP and checking
# at once: a short run may end within a fraction of a second of it. (busybox's `test -nt`
# compares whole seconds, so each step greps; the steps stop once the run is checked.)
sc_poll() {
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        [ "$sc_done" = 0 ] || return 0
        grep -q POLYVISOR-GUEST-UP /tmp/run.out && seccomp_check
        usleep 100000
    done
}
