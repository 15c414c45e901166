// SPDX-License-Identifier: Apache-2.0
/*
 * pty-run SECS CMD [ARG...]: run CMD the way a person at a terminal runs it, with a new
 * pseudo-terminal as its controlling terminal and as its stdin, stdout and stderr; copy
 * what it writes to our stdout; exit with its exit status (128+N when signal N ended it).
 * Nothing is typed into the terminal. SIGTERM, SIGINT and SIGHUP sent to pty-run are passed
 * on to the child. After SECS seconds the child gets SIGKILL and pty-run exits 124 saying
 * so.
 *
 * Built statically by cross/nested for L1 (its busybox has no `script`), and by cross/demo
 * for a native run: `cc -static -O2 -o pty-run pty-run.c`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t pending_signal;

static void on_signal(int sig) { pending_signal = sig; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Copy what the master has to stdout; returns 0 once the slave side is gone. */
static int pump(int master, int wait_ms)
{
    struct pollfd p = { .fd = master, .events = POLLIN };
    char buf[4096];
    int r = poll(&p, 1, wait_ms);
    if (r <= 0)
        return 1;
    ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0)
        return n < 0 && errno == EINTR;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(STDOUT_FILENO, buf + off, (size_t)(n - off));
        if (w < 0 && errno != EINTR)
            break;
        if (w > 0)
            off += w;
    }
    return 1;
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3 || atoi(argv[1]) <= 0) {
        fprintf(stderr, "usage: pty-run SECS CMD [ARG...]\n");
        return 2;
    }
    double deadline = now() + atoi(argv[1]);
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) {
        perror("pty-run: posix_openpt");
        return 1;
    }
    const char *slave_name = ptsname(master);
    if (!slave_name) {
        perror("pty-run: ptsname");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    pid_t pid = fork();
    if (pid < 0) {
        perror("pty-run: fork");
        return 1;
    }
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        setsid();
        int slave = open(slave_name, O_RDWR);
        if (slave < 0 || ioctl(slave, TIOCSCTTY, 0) < 0) {
            perror("pty-run: opening the terminal");
            _exit(127);
        }
        dup2(slave, 0);
        dup2(slave, 1);
        dup2(slave, 2);
        if (slave > 2)
            close(slave);
        close(master);
        execvp(argv[2], argv + 2);
        perror("pty-run: exec");
        _exit(127);
    }

    int st = 0;
    for (;;) {
        pid_t done = waitpid(pid, &st, WNOHANG);
        if (done == pid) {
            while (pump(master, 50)) /* what the child wrote last */
                ;
            return status_code(st);
        }
        if (pending_signal) {
            kill(pid, pending_signal);
            pending_signal = 0;
        }
        if (now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            while (pump(master, 0))
                ;
            fprintf(stderr, "pty-run: time is up: %s still running: killed\n", argv[2]);
            return 124;
        }
        if (!pump(master, 200))
            usleep(200 * 1000); /* slave closed; wait for the exit */
    }
}
