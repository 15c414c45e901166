# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# cross/disk-lib.sh: the disk scenarios shared by cross/nested --disks and cross/nested-s390x
# --disks (sourced after lib.sh). The host makes the images and the L2 scripts; after the
# run it checks what came back.

# pv_disk_prepare DISKDIR SEGDIR: in DISKDIR a 1 MiB random fs/known.bin, two 16 MiB ext4
# images made from fs/ with `mkfs.ext4 -d` (rw.img, ro.img), ro.img's sha256 (ro.sha256), a
# sparse 16 MiB raw.img, and copies of new.bin/pattern.bin; in SEGDIR (an extra cpio segment
# for L2's initrd) /bin/pv-disk-rw, /bin/pv-disk-kill (and /bin/pv-disk-lib) and
# /pv/{known.sha256,new.bin,pattern.bin}. The images go to polyvisor with the serials
# pv-rw, pv-ro and pv-raw.
# The L2 scripts print PV-DISK-* markers; `PV-DISK-FAIL: why` on failure.
pv_disk_prepare() {
    local dir="$1" x="$2" img
    mkdir -p "$dir/fs" "$x/bin" "$x/pv"
    head -c 1M /dev/urandom >"$dir/fs/known.bin"
    head -c 256K /dev/urandom >"$x/pv/new.bin"
    head -c 64K /dev/urandom >"$x/pv/pattern.bin"
    sha256sum "$dir/fs/known.bin" | cut -d' ' -f1 >"$x/pv/known.sha256"
    for img in rw ro; do
        rm -f "$dir/$img.img"
        truncate -s 16M "$dir/$img.img"
        mkfs.ext4 -q -F -L "pv-$img" -d "$dir/fs" "$dir/$img.img" \
            || pv_die "mkfs.ext4 -d failed for $dir/$img.img"
    done
    rm -f "$dir/raw.img"
    truncate -s 16M "$dir/raw.img"
    sha256sum "$dir/ro.img" | cut -d' ' -f1 >"$dir/ro.sha256"
    cp -f "$x/pv/new.bin" "$x/pv/pattern.bin" "$dir/"
    # Disks are found by their serial (`--disk ...,serial=pv-rw`, read by the guest through
    # GET_ID): the kernel does not name them in the VMM's order everywhere (s390x's
    # virtio-ccw probe gave subchannel 0 the name vdc).
    cat >"$x/bin/pv-disk-lib" <<'L2'
# Sourced by pv-disk-rw and pv-disk-kill.
fail() { echo "PV-DISK-FAIL: $*"; exit 1; }
# byserial SERIAL: the vdX whose virtio-blk serial is SERIAL.
byserial() {
    for s in /sys/block/vd*; do
        [ "$(cat "$s/serial" 2>/dev/null)" = "$1" ] && { echo "${s##*/}"; return 0; }
    done
    return 1
}
L2
    cat >"$x/bin/pv-disk-rw" <<'L2'
#!/bin/sh
# pv-disk-rw: the disk with serial pv-rw read-write, pv-ro readonly=on (both ext4 holding
# known.bin).
. /bin/pv-disk-lib
rw="$(byserial pv-rw)" || fail "no virtio-blk disk with serial pv-rw (disks: $(ls /sys/block | tr '\n' ' '))"
ro="$(byserial pv-ro)" || fail "no virtio-blk disk with serial pv-ro (disks: $(ls /sys/block | tr '\n' ' '))"
echo "PV-DISK-FOUND pv-rw=$rw sectors=$(cat /sys/block/$rw/size) ro=$(cat /sys/block/$rw/ro) pv-ro=$ro sectors=$(cat /sys/block/$ro/size) ro=$(cat /sys/block/$ro/ro)"
[ "$(cat /sys/block/$rw/ro)" = 0 ] || fail "/sys/block/$rw/ro is not 0"
[ "$(cat /sys/block/$ro/ro)" = 1 ] || fail "/sys/block/$ro/ro is not 1 (readonly=on)"
mkdir -p /mnt/rw /mnt/ro
mount -t ext4 /dev/$rw /mnt/rw || fail "mount /dev/$rw"
sum="$(sha256sum /mnt/rw/known.bin | cut -d' ' -f1)"
[ "$sum" = "$(cat /pv/known.sha256)" ] || fail "known.bin on $rw has sha256 $sum"
cp /pv/new.bin /mnt/rw/newfile || fail "cannot write /newfile on $rw"
sync
umount /mnt/rw || fail "umount /dev/$rw"
echo PV-DISK-RW-OK
mount -t ext4 -o ro /dev/$ro /mnt/ro || fail "mount -o ro /dev/$ro"
grep -q ' /mnt/ro ext4 ro[, ]' /proc/mounts || fail "/dev/$ro is not mounted read-only: $(grep /mnt/ro /proc/mounts)"
sum="$(sha256sum /mnt/ro/known.bin | cut -d' ' -f1)"
[ "$sum" = "$(cat /pv/known.sha256)" ] || fail "known.bin on $ro has sha256 $sum"
if (echo x >/mnt/ro/x) 2>/tmp/err; then fail "a write to the read-only mount succeeded"; fi
grep -q 'Read-only file system' /tmp/err || fail "the write failed otherwise: $(cat /tmp/err)"
echo "PV-DISK-RO-WRITE-REFUSED: $(cat /tmp/err)"
umount /mnt/ro || fail "umount /dev/$ro"
echo PV-DISK-RO-OK
L2
    cat >"$x/bin/pv-disk-kill" <<'L2'
#!/bin/sh
# pv-disk-kill: the pattern at 1 MiB of the disk with serial pv-raw, O_DIRECT and fsync,
# then PV-DISK-FLUSHED; the harness SIGKILLs polyvisor when it sees it.
. /bin/pv-disk-lib
d="$(byserial pv-raw)" || fail "no virtio-blk disk with serial pv-raw (disks: $(ls /sys/block | tr '\n' ' '))"
dd if=/pv/pattern.bin of="/dev/$d" bs=4096 seek=256 oflag=direct conv=fsync,notrunc 2>/tmp/err \
    || fail "dd to /dev/$d: $(cat /tmp/err)"
echo PV-DISK-FLUSHED
L2
    chmod 755 "$x/bin/pv-disk-rw" "$x/bin/pv-disk-kill"
}

# pv_append_cpio ARCHIVE DIR: append DIR's tree to ARCHIVE as an uncompressed newc segment,
# 4-byte aligned (the kernel unpacks concatenated initramfs archives).
pv_append_cpio() {
    local pad
    pad=$(( (4 - $(stat -c %s "$1") % 4) % 4 ))
    head -c "$pad" /dev/zero >>"$1"
    (cd "$2" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >>"$1"
}

# The host's checks of the images that came back: each prints why it fails, or nothing.
# pv_disk_check_rw DISKDIR: /newfile is new.bin, known.bin unchanged, e2fsck -fn clean.
pv_disk_check_rw() {
    local d="$1"
    if ! cmp -s <(debugfs -R 'cat /newfile' "$d/rw.img" 2>/dev/null) "$d/new.bin"; then
        echo "debugfs -R 'cat /newfile' on the image does not give the bytes L2 wrote ($(debugfs -R 'cat /newfile' "$d/rw.img" 2>/dev/null | wc -c) bytes read)"
    elif ! cmp -s <(debugfs -R 'cat /known.bin' "$d/rw.img" 2>/dev/null) "$d/fs/known.bin"; then
        echo "known.bin changed in the read-write image"
    elif ! e2fsck -fn "$d/rw.img" >"$d/e2fsck.out" 2>&1; then
        echo "e2fsck -fn finds the image unclean: $(tail -n 3 "$d/e2fsck.out" | tr '\n' ' ')"
    fi
}
# pv_disk_check_ro DISKDIR: the readonly=on image's sha256 as before the run.
pv_disk_check_ro() {
    [[ "$(sha256sum "$1/ro.img" | cut -d' ' -f1)" == "$(cat "$1/ro.sha256")" ]] \
        || echo "the readonly=on image's sha256 changed"
}
# pv_disk_check_raw DISKDIR: the pattern at 1 MiB of raw.img.
pv_disk_check_raw() {
    cmp -s <(dd if="$1/raw.img" bs=4096 skip=256 count=16 status=none) "$1/pattern.bin" \
        || echo "the pattern L2 wrote with O_DIRECT + fsync is not in the image after SIGKILL"
}
