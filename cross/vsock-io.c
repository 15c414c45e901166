// SPDX-License-Identifier: Apache-2.0
/*
 * vsock-io: the two ends of cross/nested's vsock check (busybox has no vsock and no Unix
 * socket client).
 *   vsock-io serve-vsock PORT CMD   listen on vsock PORT (any CID), accept one connection,
 *                                   run `sh -c CMD` with it as stdin and stdout
 *   vsock-io serve-unix PATH CMD    the same on the Unix socket PATH (removed first)
 *   vsock-io connect-vsock CID PORT connect to vsock CID:PORT
 *   vsock-io connect-unix PATH PORT connect to PATH, say `CONNECT PORT\n`, expect `OK ...\n`
 *                                   (Firecracker's and Polyvisor's host side of vsock)
 * The connect modes copy stdin to the socket (then shut its write side down) and the
 * socket to stdout until it ends; exit 0 when both ends were reached, 1 otherwise.
 *
 * Built statically by cross/nested for L1 and L2: `cc -static -O2 -o vsock-io vsock-io.c`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
/* After sys/socket.h: older copies use struct sockaddr without including it. */
#include <linux/vm_sockets.h>

static void die(const char *what) {
    fprintf(stderr, "vsock-io: %s: %s\n", what, strerror(errno));
    exit(1);
}

static struct sockaddr_un unix_addr(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path)) {
        fprintf(stderr, "vsock-io: path too long: %s\n", path);
        exit(1);
    }
    strcpy(a.sun_path, path);
    return a;
}

static struct sockaddr_vm vsock_addr(unsigned cid, unsigned port) {
    struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    return a;
}

static void serve(int fam, const struct sockaddr *a, socklen_t len, const char *cmd) {
    int s = socket(fam, SOCK_STREAM, 0);
    if (s < 0) die("socket");
    if (bind(s, a, len) < 0) die("bind");
    if (listen(s, 1) < 0) die("listen");
    int c = accept(s, NULL, NULL);
    if (c < 0) die("accept");
    close(s);
    if (dup2(c, 0) < 0 || dup2(c, 1) < 0) die("dup2");
    close(c);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    die("exec /bin/sh");
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* stdin -> s (then SHUT_WR), s -> stdout, until both are done. */
static int pump(int s) {
    static char buf[65536];
    int in_open = 1, out_open = 1;
    while (out_open) {
        struct pollfd p[2] = {{.fd = s, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
        if (poll(p, in_open ? 2 : 1, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (p[0].revents) {
            ssize_t n = read(s, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) die("read socket");
            if (n == 0) out_open = 0;
            else if (write_all(1, buf, (size_t)n) < 0) die("write stdout");
        }
        if (in_open && p[1].revents) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) die("read stdin");
            if (n == 0) {
                in_open = 0;
                shutdown(s, SHUT_WR);
            } else if (write_all(s, buf, (size_t)n) < 0) {
                die("write socket");
            }
        }
    }
    if (in_open) {
        fprintf(stderr, "vsock-io: the peer closed before taking all of stdin\n");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: vsock-io serve-vsock PORT CMD | serve-unix PATH CMD | "
                        "connect-vsock CID PORT | connect-unix PATH PORT\n");
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "serve-vsock") == 0) {
        struct sockaddr_vm a = vsock_addr(VMADDR_CID_ANY, (unsigned)atoi(argv[2]));
        serve(AF_VSOCK, (struct sockaddr *)&a, sizeof a, argv[3]);
    } else if (strcmp(mode, "serve-unix") == 0) {
        struct sockaddr_un a = unix_addr(argv[2]);
        unlink(argv[2]);
        serve(AF_UNIX, (struct sockaddr *)&a, sizeof a, argv[3]);
    } else if (strcmp(mode, "connect-vsock") == 0) {
        struct sockaddr_vm a = vsock_addr((unsigned)atoi(argv[2]), (unsigned)atoi(argv[3]));
        int s = socket(AF_VSOCK, SOCK_STREAM, 0);
        if (s < 0) die("socket");
        if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
        return pump(s);
    } else if (strcmp(mode, "connect-unix") == 0) {
        struct sockaddr_un a = unix_addr(argv[2]);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (s < 0) die("socket");
        if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
        char line[64];
        int n = snprintf(line, sizeof line, "CONNECT %s\n", argv[3]);
        if (write_all(s, line, (size_t)n) < 0) die("write CONNECT");
        /* The answer, a byte at a time: what follows it is the stream. */
        size_t got = 0;
        while (got < sizeof line - 1) {
            ssize_t r = read(s, line + got, 1);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            if (line[got++] == '\n') break;
        }
        line[got] = 0;
        if (strncmp(line, "OK ", 3) != 0 || line[got ? got - 1 : 0] != '\n') {
            fprintf(stderr, "vsock-io: no OK from %s (got \"%s\")\n", argv[2], line);
            return 1;
        }
        return pump(s);
    } else {
        fprintf(stderr, "vsock-io: unknown mode %s\n", mode);
        return 2;
    }
    return 1;
}
