# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# cross/api-lib.sh: the management-API scenario of cross/nested --api (sourced after lib.sh).
# In the same L1 boot as the other runs, L1 starts `polyvisor --api-socket /tmp/api.sock`
# with no VM and drives it as Kata's clh driver or ch-remote would, through `polyvisor
# remote`: ping; vm.create with a Cloud Hypervisor VmConfig (the L2 kernel and initrd, a
# user's command line, an 8 MiB raw disk with serial pv-api, virtio-rng, the serial port on
# stdout); info (Created); boot; L2 checks it has the disk (its serial) and the rng as the
# hwrng and waits; info (Running); counters; power-button; L2 powers off, polyvisor exits 0
# and removes its socket. L1 prints `POLYVISOR-API result=pass|fail secs=S why=...`.
# With hotplug (s390x, virtio-ccw): once L2 has found its boot devices, L1 adds a 4 MiB disk
# with serial pv-hot (vm.add-disk); L2 finds it and reads its first bytes; vm.info lists it;
# L1 removes it (vm.remove-device) and L2 sees it gone; vm.info no longer lists it; then
# L1 removes the disk the VM booted with (_disk0) and L2 sees vda go.

# pv_mem_bytes SIZE: 256M / 1G / 1048576 as bytes.
pv_mem_bytes() {
    local n="${1%[KkMmGg]}"
    case "$1" in
        *[Kk]) echo $((n << 10)) ;;
        *[Mm]) echo $((n << 20)) ;;
        *[Gg]) echo $((n << 30)) ;;
        *) echo "$1" ;;
    esac
}

# pv_api_files ROOT CONSOLE KERNEL INITRD MEM CPUS [hotplug]: L1's side: ROOT/etc/pv-api-vm.json
# (the VmConfig; KERNEL and INITRD are L1 paths) and ROOT/etc/pv-api-l1.sh (run as
# `sh /etc/pv-api-l1.sh TIMEOUT [POLYVISOR [hotplug]]`, POLYVISOR defaulting to
# /bin/polyvisor).
pv_api_files() {
    local root="$1" console="$2" kernel="$3" initrd="$4" mem cpus="$6" cmdline run hot=""
    mem="$(pv_mem_bytes "$5")"
    run="grep -qx pv-api /sys/block/vda/serial && grep -q virtio /sys/class/misc/hw_random/rng_current && echo PV-API-L2-DEVICES-OK"
    if [[ ${7:-} == hotplug ]]; then
        # L2 waits (up to 600 s) for the disk with serial pv-hot, prints its first 8 bytes,
        # then waits for it to go. No double quotes: this is inside pv.run="...".
        # shellcheck disable=SC2016 # expanded by L2's shell, not here
        hot='i=0; until f=$(grep -lx pv-hot /sys/block/vd*/serial 2>/dev/null); do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 1; done; d=${f%/serial}; d=${d##*/}; echo PV-API-L2-HOTPLUG-ADDED $d $(head -c 8 /dev/$d); i=0; while [ -e /sys/block/$d ]; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 1; done; echo PV-API-L2-HOTPLUG-REMOVED $d; i=0; while [ -e /sys/block/vda ]; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 1; done; echo PV-API-L2-BOOT-DISK-REMOVED'
        run="$run && $hot"
    fi
    # A user's command line; L2's /init runs pv.run and then waits for its power button.
    cmdline="console=$console quiet pv.run=\"$run\" pv.end=wait"
    mkdir -p "$root/etc"
    printf '{"payload":{"kernel":"%s","initramfs":"%s","cmdline":"%s"},"cpus":{"boot_vcpus":%s,"max_vcpus":%s},"memory":{"size":%s},"disks":[{"path":"/tmp/api.img","serial":"pv-api"}],"rng":{"src":"/dev/urandom"},"serial":{"mode":"Tty"},"console":{"mode":"Off"}}\n' \
        "$kernel" "$initrd" "${cmdline//\"/\\\"}" "$cpus" "$cpus" "$mem" >"$root/etc/pv-api-vm.json"
    cat >"$root/etc/pv-api-l1.sh" <<'L1API'
#!/bin/sh
# L1's half of the management-API check (cross/api-lib.sh).
up() { cut -d' ' -f1 /proc/uptime; }
S=/tmp/api.sock OUT=/tmp/api.out TMO="${1:-600}" PV="${2:-/bin/polyvisor}" HOT="${3:-}" pid=""
t0="$(up)"
secs() { awk -v a="$t0" -v b="$(up)" 'BEGIN { printf "%.1f", b - a }'; }
r() { "$PV" remote --api-socket "$S" "$@"; }
end() {
    [ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null
    echo "pv-l1: the API run's output (last 40 lines):"
    tail -n 40 "$OUT" | tr -d '\r'
    echo
    echo "POLYVISOR-API result=$1 secs=$(secs) why=$2"
    exit 0
}
dd if=/dev/zero of=/tmp/api.img bs=1M count=8 2>/dev/null
rm -f "$S"
echo "pv-l1: api run: polyvisor --api-socket $S; remote create /etc/pv-api-vm.json, boot, power-button at $t0 s"
timeout -s KILL "$TMO" "$PV" --api-socket "$S" </dev/null >"$OUT" 2>&1 &
pid=$!
n=0
while [ ! -S "$S" ] && kill -0 "$pid" 2>/dev/null && [ "$n" -lt 300 ]; do usleep 100000; n=$((n + 1)); done
[ -S "$S" ] || end fail "no API socket after $((n / 10)) s"
a="$(r ping)" || end fail "ping: $a"
echo "pv-l1: ping: $a"
a="$(r create /etc/pv-api-vm.json)" || end fail "vm.create: $a"
a="$(r info)"
echo "$a" | grep -q '"state":"Created"' || end fail "vm.info after vm.create: $a"
a="$(r boot)" || end fail "vm.boot: $a"
# waitfor TEXT: until L2 printed TEXT (or polyvisor ended, or TMO seconds passed).
waitfor() {
    n=0
    while ! grep -q "$1" "$OUT" && kill -0 "$pid" 2>/dev/null && [ "$n" -lt "$TMO" ]; do
        sleep 1; n=$((n + 1))
    done
    grep -q "$1" "$OUT"
}
if [ -n "$HOT" ]; then
    waitfor PV-API-L2-DEVICES-OK || end fail "L2 did not find the disk (serial pv-api) and the rng"
    dd if=/dev/zero of=/tmp/hot.img bs=1M count=4 2>/dev/null
    printf PVHOTDAT | dd of=/tmp/hot.img conv=notrunc 2>/dev/null
    a="$(r add-disk path=/tmp/hot.img,serial=pv-hot)" || end fail "vm.add-disk: $a"
    echo "pv-l1: add-disk: $a"
    id="$(echo "$a" | sed -n 's/.*"id" *: *"\([^"]*\)".*/\1/p')"
    [ -n "$id" ] || end fail "vm.add-disk answered no id: $a"
    waitfor PV-API-L2-HOTPLUG-ADDED || end fail "L2 did not find the hotplugged disk (serial pv-hot)"
    grep 'PV-API-L2-HOTPLUG-ADDED' "$OUT" | grep -q PVHOTDAT || end fail "L2 read other bytes from the hotplugged disk: $(grep PV-API-L2-HOTPLUG-ADDED "$OUT" | tr -d '\r')"
    a="$(r info)"
    echo "$a" | grep -q '/tmp/hot.img' || end fail "vm.info does not list the hotplugged disk: $a"
    a="$(r remove-device "$id")" || end fail "vm.remove-device $id: $a"
    waitfor PV-API-L2-HOTPLUG-REMOVED || end fail "L2 did not see the disk go after vm.remove-device"
    a="$(r info)"
    echo "$a" | grep -q '/tmp/hot.img' && end fail "vm.info still lists the removed disk: $a"
    # The disk the VM booted with (vda, serial pv-api) can be taken out as well.
    a="$(r remove-device _disk0)" || end fail "vm.remove-device _disk0 (attached at boot): $a"
    waitfor PV-API-L2-BOOT-DISK-REMOVED || end fail "L2 did not see its boot-time disk go after vm.remove-device _disk0"
    echo "pv-l1: hotplug: disk $id added, read by L2, removed; boot-time _disk0 removed"
fi
n=0
while ! grep -q POLYVISOR-GUEST-WAITING "$OUT" && kill -0 "$pid" 2>/dev/null && [ "$n" -lt "$TMO" ]; do
    sleep 1; n=$((n + 1))
done
grep -q POLYVISOR-GUEST-WAITING "$OUT" || end fail "L2 did not get to wait for its power button"
grep -q PV-API-L2-DEVICES-OK "$OUT" || end fail "L2 did not find the disk (serial pv-api) and the rng"
if [ -n "$HOT" ]; then
    grep -q 'PV-API-L2-HOTPLUG-REMOVED' "$OUT" || end fail "L2 did not see the hotplugged disk go"
fi
a="$(r info)"
echo "$a" | grep -q '"state":"Running"' || end fail "vm.info of the running VM: $a"
echo "pv-l1: info: $a"
a="$(r counters)" || end fail "vm.counters: $a"
echo "pv-l1: counters: $a"
a="$(r power-button)" || end fail "vm.power-button: $a"
n=0
while kill -0 "$pid" 2>/dev/null && [ "$n" -lt 120 ]; do sleep 1; n=$((n + 1)); done
kill -0 "$pid" 2>/dev/null && end fail "polyvisor still runs 120 s after vm.power-button"
wait "$pid"
rc=$?
pid=""
tr -d '\r' <"$OUT" | grep -q 'polyvisor: info: guest powered off' || end fail "no 'guest powered off' (exit $rc)"
[ "$rc" = 0 ] || end fail "polyvisor exited $rc"
[ ! -e "$S" ] || end fail "the API socket outlived polyvisor"
end pass "-"
L1API
}

# pv_api_check_log LOG: empty when L1's POLYVISOR-API line in LOG says pass, else why not.
pv_api_check_log() {
    local line
    line="$(tr -d '\r' <"$1" | grep -m1 '^POLYVISOR-API ' || true)"
    if [[ -z "$line" ]]; then echo "no POLYVISOR-API line (L1 ended before it)"
    elif [[ "$line" != *"result=pass"* ]]; then echo "${line#*why=}"
    fi
}

# pv_api_secs LOG: the seconds of the API run.
pv_api_secs() {
    tr -d '\r' <"$1" | grep -m1 '^POLYVISOR-API ' | sed -n 's/.* secs=\([0-9.]*\).*/\1/p'
}
