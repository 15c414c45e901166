// SPDX-License-Identifier: Apache-2.0
/*
 * blk-bench DEV MIB RANDOM: the disk figures of cross/bench, measured inside an L2 guest
 * (its busybox has no fio). On the block device DEV, with O_DIRECT (no guest page cache):
 *   1. sequential write: MIB MiB of a non-zero pattern in 1 MiB writes from offset 0, then
 *      fdatasync (a FLUSH request), timed together;
 *   2. sequential read: the same MIB MiB back in 1 MiB reads (checked against the pattern);
 *   3. random read: RANDOM reads of 4 KiB at 4 KiB-aligned offsets inside those MIB MiB,
 *      one at a time (queue depth 1), from a fixed-seed generator.
 * Prints one line: `PV-BLK-BENCH seq_write_MBps=W seq_read_MBps=R rand_read_iops=I`
 * (MB = 10^6 bytes), or `PV-BLK-BENCH-FAIL: why` and exits 1.
 * Built statically by cross/nested for L2: `cc -static -O2 -o blk-bench blk-bench.c`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024 * 1024)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what)
{
    printf("PV-BLK-BENCH-FAIL: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: blk-bench DEV MIB RANDOM\n");
        return 2;
    }
    long mib = strtol(argv[2], NULL, 10), random_reads = strtol(argv[3], NULL, 10);
    if (mib < 1 || random_reads < 1) {
        fprintf(stderr, "blk-bench: MIB and RANDOM must be positive\n");
        return 2;
    }
    int fd = open(argv[1], O_RDWR | O_DIRECT);
    if (fd < 0)
        return fail("open");
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < (off_t)mib * MIB) {
        errno = ENOSPC;
        return fail("the device is smaller than MIB MiB");
    }
    unsigned char *buf;
    if (posix_memalign((void **)&buf, 4096, MIB) != 0)
        return fail("posix_memalign");
    for (long i = 0; i < MIB; i++)
        buf[i] = (unsigned char)(i * 7 + 1);

    double t0 = now();
    for (long i = 0; i < mib; i++) {
        buf[0] = (unsigned char)i;
        if (pwrite(fd, buf, MIB, (off_t)i * MIB) != MIB)
            return fail("sequential write");
    }
    if (fdatasync(fd) != 0)
        return fail("fdatasync");
    double write_s = now() - t0;

    t0 = now();
    for (long i = 0; i < mib; i++) {
        if (pread(fd, buf, MIB, (off_t)i * MIB) != MIB)
            return fail("sequential read");
        if (buf[0] != (unsigned char)i || buf[MIB - 1] != (unsigned char)((MIB - 1) * 7 + 1)) {
            errno = EIO;
            return fail("sequential read: the data read back differs from what was written");
        }
    }
    double read_s = now() - t0;

    uint64_t x = 0x9e3779b97f4a7c15ull, blocks = (uint64_t)mib * (MIB / 4096);
    t0 = now();
    for (long i = 0; i < random_reads; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (pread(fd, buf, 4096, (off_t)((x % blocks) * 4096)) != 4096)
            return fail("random read");
    }
    double rand_s = now() - t0;

    printf("PV-BLK-BENCH seq_write_MBps=%.1f seq_read_MBps=%.1f rand_read_iops=%.0f\n",
           (double)mib * MIB / 1e6 / write_s, (double)mib * MIB / 1e6 / read_s,
           (double)random_reads / rand_s);
    return 0;
}
