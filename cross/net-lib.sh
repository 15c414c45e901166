# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# cross/net-lib.sh: the virtio-net and vsock scenarios shared by cross/nested --net/--vsock
# and cross/nested-s390x --net/--vsock (sourced after lib.sh). The host puts L1's half into
# L1's initramfs tree and L2's half into a directory the caller appends to L2's initrd as
# another cpio segment (pv_append_cpio, cross/disk-lib.sh). Both halves move MIB MiB each
# way and check it with sha256.
#   virtio-net: L1 runs /etc/pv-net-l1.sh (sourced) before polyvisor: tap pvtap0
#     (192.168.77.1/24, made with busybox tunctl), httpd serving a MIB MiB file, `nc -l -e`
#     storing an upload, and pv_net_after (the upload's sha256, pvtap0's counters) after it.
#     polyvisor gets PV_NET_ARGS: pvtap0 with the guest MAC PV_NET_MAC, and pvtap1, created
#     by polyvisor (ip=192.168.78.1). L2's /bin/pv-net-l2 pings both host sides, downloads
#     and uploads; markers PV-NET-PING-OK, PV-NET-DOWN/-UP (MiB/s), PV-NET-DOWN-SHA-OK,
#     PV-NET-UP-SHA=..., PV-NET-UP-SHA-OK; L1 prints PV-NET-L1-UP-SHA=...
#   vsock: polyvisor gets PV_VSOCK_ARGS; L1 runs /etc/pv-vsock-l1.sh POLYVISOR_PID beside it
#     (a listener on /tmp/v.sock_5678, and `CONNECT 1234` through /tmp/v.sock); L2's
#     /bin/pv-vsock-l2 loads the vsock modules, listens on port 1234 and connects to host
#     port 5678. Markers POLYVISOR-VSOCK-HOST-TO-GUEST=ok (L1) and -GUEST-TO-HOST=ok (L2).

PV_NET_MAC=02:00:00:00:77:02
# shellcheck disable=SC2034 # used by the scripts that source this file
PV_NET_ARGS="--net tap=pvtap0,mac=$PV_NET_MAC --net tap=pvtap1,ip=192.168.78.1,mask=255.255.255.0"
# shellcheck disable=SC2034 # likewise
PV_VSOCK_ARGS="--vsock cid=3,socket=/tmp/v.sock"

# pv_cc_for ARCH: the C compiler for static ARCH binaries (the host's or a cross compiler).
pv_cc_for() {
    if [[ "$(pv_host_arch)" == "$1" ]]; then echo gcc; else echo "$1-linux-gnu-gcc"; fi
}

# pv_static_tool ARCH NAME: cross/NAME.c built static for ARCH into the cache (rebuilt when
# its source changes); prints the binary's path.
pv_static_tool() {
    local out="$PV_CACHE/nested/$2-$1"
    mkdir -p "$PV_CACHE/nested"
    if [[ ! -x "$out" || "$PV_REPO/cross/$2.c" -nt "$out" ]]; then
        "$(pv_cc_for "$1")" -static -O2 -o "$out" "$PV_REPO/cross/$2.c" \
            || pv_die "cannot build cross/$2.c for $1 with $(pv_cc_for "$1") (run cross/setup)"
    fi
    printf '%s\n' "$out"
}

# pv_vsock_l1_files ROOT VSOCK_IO MIB: L1's side of the vsock check: bin/vsock-io and
# etc/pv-vsock-l1.sh, which L1 runs beside polyvisor (its pid as $1; with `vhost` as $2 it
# talks AF_VSOCK to guest CID 3 instead, for QEMU's vhost-vsock in cross/nested --net-bench).
pv_vsock_l1_files() {
    mkdir -p "$1/bin" "$1/etc"
    cp -f "$2" "$1/bin/vsock-io"
    sed "s/@LEN@/$(($3 << 20))/" >"$1/etc/pv-vsock-l1.sh" <<'L1VSOCK'
#!/bin/sh
# L1's half of the vsock check (cross/net-lib.sh): a listener on PATH_5678 (the guest's
# host port 5678) answering the sha256 of what it reads, and a host process reaching guest
# port 1234.
up() { cut -d' ' -f1 /proc/uptime; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
S=/tmp/v.sock LEN=@LEN@
if [ "${2:-}" = vhost ]; then
    timeout 900 /bin/vsock-io serve-vsock 5678 sha256sum &
    set -- "$1" connect-vsock 3
else
    timeout 900 /bin/vsock-io serve-unix "${S}_5678" sha256sum &
    set -- "$1" connect-unix "$S"
fi
head -c "$LEN" /dev/urandom >/tmp/h2g
want="$(sha256sum </tmp/h2g | cut -d' ' -f1)"
# Until the guest listens (each try before that ends without OK, the guest's RST).
while kill -0 "$1" 2>/dev/null; do
    t0="$(up)"
    if timeout 600 /bin/vsock-io "$2" "$3" 1234 </tmp/h2g >/tmp/h2g.reply 2>/tmp/h2g.err; then
        t1="$(up)"
        got="$(cut -d' ' -f1 /tmp/h2g.reply)"
        if [ "$got" = "$want" ]; then
            echo "POLYVISOR-VSOCK-HOST-TO-GUEST=ok bytes=$LEN secs=$(secs "$t0" "$t1")"
        else
            echo "POLYVISOR-VSOCK-HOST-TO-GUEST=fail (sha256 $got, sent $want)"
        fi
        exit 0
    fi
    sleep 1
done
echo "POLYVISOR-VSOCK-HOST-TO-GUEST=fail (polyvisor ended first; last try: $(cat /tmp/h2g.err))"
L1VSOCK
}

# pv_vsock_l2_files GUESTDIR DIR VSOCK_IO MIB: into DIR (a tree for L2's initrd) the guest
# kernel's vsock modules, bin/vsock-io and bin/pv-vsock-l2, L2's half of the check.
pv_vsock_l2_files() {
    local g="$1" d="$2" kver m
    kver="$(cat "$g/kver")"
    mkdir -p "$d/bin" "$d/lib/modules/$kver/kernel/net/vmw_vsock"
    for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
        cp -f "$g/rootfs-kernel/lib/modules/$kver/kernel/net/vmw_vsock/$m.ko" \
            "$d/lib/modules/$kver/kernel/net/vmw_vsock/" || pv_die "no $m.ko in $g/rootfs-kernel"
    done
    cp -f "$3" "$d/bin/vsock-io"
    sed "s/@LEN@/$(($4 << 20))/" >"$d/bin/pv-vsock-l2" <<'L2VSOCK'
#!/bin/sh
# L2's half of the vsock check (cross/net-lib.sh): load the vsock modules, listen on port
# 1234 (answering the sha256 of what L1 sends), send LEN bytes to host port 5678 and check
# L1's answer. Both directions at once; `pv-vsock-l2 serial` (cross/nested --net-bench)
# sends only once L1's transfer is done, so each is timed alone.
up() { cut -d' ' -f1 /proc/uptime; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
kver="$(uname -r)" LEN=@LEN@
for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
    insmod "/lib/modules/$kver/kernel/net/vmw_vsock/$m.ko" || { echo "pv-vsock: insmod $m failed"; exit 1; }
done
head -c "$LEN" /dev/urandom >/tmp/g2h
want="$(sha256sum </tmp/g2h | cut -d' ' -f1)"
timeout 900 vsock-io serve-vsock 1234 sha256sum &
spid=$!
if [ "${1:-}" = serial ]; then
    wait "$spid" || { echo "pv-vsock: the guest's listener on port 1234 failed"; exit 1; }
    spid=""
fi
t0="$(up)"
got="$(timeout 600 vsock-io connect-vsock 2 5678 </tmp/g2h | cut -d' ' -f1)"
t1="$(up)"
rm -f /tmp/g2h
rc=0
if [ "$got" = "$want" ]; then
    echo "POLYVISOR-VSOCK-GUEST-TO-HOST=ok bytes=$LEN secs=$(secs "$t0" "$t1")"
else
    echo "POLYVISOR-VSOCK-GUEST-TO-HOST=fail (sha256 '$got', sent $want)"
    rc=1
fi
[ -z "$spid" ] || wait "$spid" || { echo "pv-vsock: the guest's listener on port 1234 failed"; rc=1; }
echo "pv-vsock: guest listener done at $(up) s"
exit "$rc"
L2VSOCK
    chmod 755 "$d/bin/pv-vsock-l2"
}

# pv_net_files GUESTDIR ROOT DIR MIB: L1's side of the virtio-net check into ROOT (tun.ko
# listed in etc/pv-net-modules, www/blob, the upload sink and CGI, etc/pv-net-l1.sh) and
# L2's /bin/pv-net-l2 into DIR.
pv_net_files() {
    local g="$1" root="$2" seg="$3" mib="$4" moddir kver tun sha
    moddir="$(cat "$g/moddir")" kver="$(cat "$g/kver")"
    tun="$(cd "$moddir" && find . -name 'tun.ko' | head -n1)"
    [[ -n "$tun" ]] || pv_die "--net: no tun.ko in $moddir"
    mkdir -p "$root/lib/modules/$kver/$(dirname "$tun")" "$root/www/cgi-bin" "$root/bin" "$root/etc" "$seg/bin"
    cp -f "$moddir/$tun" "$root/lib/modules/$kver/$tun"
    printf '%s\n' "$tun" >"$root/etc/pv-net-modules"
    head -c "$((mib << 20))" /dev/urandom >"$root/www/blob"
    sha="$(sha256sum <"$root/www/blob" | cut -d' ' -f1)"
    # The upload: `nc -l -e pv-net-sink` stores what L2 sends; the `sha` CGI tells L2 the
    # size and sha256 of what arrived. (busybox nc pumping stdin, or httpd passing a POST
    # body to a CGI, stopped short of 4 MiB when tried on the build host.)
    printf '#!/bin/sh\nexec cat >/tmp/up\n' >"$root/bin/pv-net-sink"
    cat >"$root/www/cgi-bin/sha" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "$(wc -c </tmp/up) $(sha256sum </tmp/up | cut -d' ' -f1)"
CGI
    chmod 755 "$root/www/cgi-bin/sha" "$root/bin/pv-net-sink"
    cat >"$root/etc/pv-net-l1.sh" <<'L1NET'
# Sourced by L1's /init (cross/net-lib.sh): the host side of the virtio-net check.
while read -r m; do insmod "/lib/modules/$(uname -r)/$m" || echo "pv-l1: insmod $m failed"; done </etc/pv-net-modules
tunctl -t pvtap0 >/dev/null && ip addr add 192.168.77.1/24 dev pvtap0 && ip link set pvtap0 up \
    && echo "pv-l1: tap pvtap0 made (192.168.77.1/24)" || echo "pv-l1: cannot make tap pvtap0"
ip link set lo up
httpd -p 8080 -h /www && echo "pv-l1: httpd serves /www on 192.168.77.1:8080"
nc -ll -p 5001 -e /bin/pv-net-sink </dev/null >/dev/null 2>&1 &
echo "pv-l1: nc stores an upload on 192.168.77.1:5001"
pv_net_after() {
    echo "PV-NET-L1-UP-SHA=$(sha256sum </tmp/up 2>/dev/null | cut -d' ' -f1)"
    echo "pv-l1: pvtap0 rx_bytes=$(cat /sys/class/net/pvtap0/statistics/rx_bytes) tx_bytes=$(cat /sys/class/net/pvtap0/statistics/tx_bytes)"
}
L1NET
    sed -e "s/@SHA@/$sha/" -e "s/@MIB@/$mib/" -e "s/@MAC@/$PV_NET_MAC/" >"$seg/bin/pv-net-l2" <<'L2NET'
#!/bin/sh
# L2's side of the virtio-net check (cross/net-lib.sh). `pv-net-l2 one`: only pvtap0's
# interface (cross/nested --net-bench, where QEMU has one).
set -e
one="${1:-}"
up() { cut -d' ' -f1 /proc/uptime; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { s = b - a; if (s <= 0) s = 0.01; printf "bytes=%d secs=%.2f MiB/s=%.2f", n, s, n / s / 1048576 }'; }
# The interfaces by address, not by name: the one with mac=@MAC@ is pvtap0's (s390x probes
# virtio-ccw devices in another order than the VMM's), the other one pvtap1's.
a="" b=""
for i in /sys/class/net/eth*; do
    if [ "$(cat "$i/address")" = @MAC@ ]; then a="${i##*/}"; else b="${i##*/}"; fi
done
[ -n "$a" ] && { [ -n "$b" ] || [ -n "$one" ]; } || { echo "pv-net: no interface with @MAC@ and another ($(ls /sys/class/net | tr '\n' ' '))"; exit 1; }
ip link set lo up
ip link set "$a" up
ip addr add 192.168.77.2/24 dev "$a"
echo "pv-net: $a $(cat "/sys/class/net/$a/address") (pvtap0)"
ping -c 3 -W 10 192.168.77.1
if [ -z "$one" ]; then
    ip link set "$b" up
    ip addr add 192.168.78.2/24 dev "$b"
    echo "pv-net: $b $(cat "/sys/class/net/$b/address") (pvtap1)"
    ping -c 2 -W 10 192.168.78.1
fi
echo PV-NET-PING-OK
t0=$(up); wget -q -O /tmp/down http://192.168.77.1:8080/blob; t1=$(up)
echo "PV-NET-DOWN $(rate "$(wc -c </tmp/down)" "$t0" "$t1")"
sha256sum </tmp/down | grep -q '^@SHA@ '
rm -f /tmp/down
echo PV-NET-DOWN-SHA-OK
dd if=/dev/urandom of=/tmp/up bs=1M count=@MIB@ 2>/dev/null
want="$(sha256sum </tmp/up | cut -d' ' -f1)"
echo "PV-NET-UP-SHA=$want"
n=$(wc -c </tmp/up)
# Timed until the sending nc exits (its last socket buffer may still be on its way).
t0=$(up); nc 192.168.77.1 5001 -e cat /tmp/up; t1=$(up)
echo "PV-NET-UP $(rate "$n" "$t0" "$t1")"
i=0
until [ "$(wget -q -O - http://192.168.77.1:8080/cgi-bin/sha)" = "$n $want" ]; do
    i=$((i + 1)); [ $i -lt 20 ] || { echo "pv-net: L1 did not get the upload"; exit 1; }
    sleep 0.5
done
rm -f /tmp/up
echo PV-NET-UP-SHA-OK
grep -E "$a${b:+|$b}" /proc/interrupts || true
L2NET
    chmod 755 "$seg/bin/pv-net-l2"
}

# pv_net_check_log LOG: the --net markers in LOG (L2's and L1's); prints why the check
# fails, or nothing.
pv_net_check_log() {
    local m up_guest up_l1
    for m in PV-NET-PING-OK PV-NET-DOWN-SHA-OK PV-NET-UP-SHA-OK; do
        grep -q "$m" "$1" || { echo "--net: no $m from L2"; return 0; }
    done
    up_guest="$(grep -o 'PV-NET-UP-SHA=[0-9a-f]*' "$1" | head -n1 | cut -d= -f2)"
    up_l1="$(grep -o 'PV-NET-L1-UP-SHA=[0-9a-f]*' "$1" | head -n1 | cut -d= -f2)"
    [[ -n "$up_guest" && "$up_guest" == "$up_l1" ]] || echo "--net: L1 received sha256 '${up_l1}', L2 sent '${up_guest}'"
}

# pv_vsock_check_log LOG: the vsock markers in LOG; prints why the check fails, or nothing.
pv_vsock_check_log() {
    local d
    for d in HOST-TO-GUEST GUEST-TO-HOST; do
        grep -q "POLYVISOR-VSOCK-$d=ok" "$1" \
            || { echo "vsock: ${d,,} ($(grep -m1 -o "POLYVISOR-VSOCK-$d=.*" "$1" || echo 'no result'))"; return 0; }
    done
}
