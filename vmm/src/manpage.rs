// SPDX-License-Identifier: Apache-2.0
//! The CLI contract users and scripts rely on, in one place: the exit statuses, the
//! signals and the environment, as `--help` shows them and as the man page's EXIT STATUS,
//! SIGNALS and ENVIRONMENT sections print them. The roff itself (and the shell
//! completions) are rendered by `polyvisor-gen` (gen/), not by the VMM binary: the
//! generators would otherwise be resident in every running VM.

/// Every exit status `polyvisor run` can end with, and what it means.
pub const EXIT_STATUSES: &[(&str, &str)] = &[
    (
        "0",
        "The guest powered off, or reset (with the default --on-reset exit); stderr's last line \
         says `guest powered off` or `guest reset`.",
    ),
    (
        "1",
        "The VMM failed (the hypervisor refused something, a vCPU faulted, a host resource \
         failed); one error line says what.",
    ),
    (
        "2",
        "Invalid command line or configuration: one error line names the flag, the value or \
         the file.",
    ),
    (
        "3",
        "The guest's kernel panicked and said so: through the pvpanic device (x86_64, \
         aarch64; the guest needs Linux's pvpanic-mmio driver, a module in Debian's kernels), \
         or on s390x by stopping in a disabled wait anywhere but the signal-quiesce address \
         0xfff; stderr's last line says `guest panicked`.",
    ),
    (
        "70",
        "Polyvisor itself panicked (a bug): the VM was stopped at once and the terminal \
         restored; one error line names the thread and the place.",
    ),
    (
        "128+N",
        "Signal N stopped the VM without the guest powering off: 143 SIGTERM (after the power \
         button press and --shutdown-timeout), 130 SIGINT, 129 SIGHUP, 131 SIGQUIT.",
    ),
    (
        "159",
        "Killed by SIGSYS (128+31): a polyvisor thread made a system call its seccomp filter \
         forbids (--seccomp true). The kernel's log (audit type=1326) names the call and \
         thread; this is a bug in the filters or an attack: report it (SECURITY.md).",
    ),
];

/// How polyvisor answers signals.
pub const SIGNALS: &[(&str, &str)] = &[
    (
        "SIGTERM",
        "Presses the guest's power button (x86_64: ACPI power button; arm64: GPIO power key; \
         s390x: SCLP signal quiesce) and waits --shutdown-timeout seconds for the guest to \
         power off; a second SIGTERM, or the time running out, stops it at once.",
    ),
    (
        "SIGINT, SIGHUP, SIGQUIT",
        "Stop the VM at once. After any stop the vCPU threads get 3 seconds to leave; one \
         blocked outside the guest is named in an error line and left behind.",
    ),
];

/// The environment polyvisor reads.
pub const ENVIRONMENT: &[(&str, &str)] = &[(
    "POLYVISOR_LOG",
    "Log level: off, error, warn, info (default), debug or trace. --log-level overrides it.",
)];

/// The sandbox, for the man page's SANDBOX section.
pub const SANDBOX: &[(&str, &str)] = &[
    (
        "--seccomp true",
        "The default. Each thread (main, vcpuN, each virtio-* worker, console-in, console-out) \
         installs an allow-list seccomp filter for its kind before the guest runs; any other \
         system call kills the process (SIGSYS, exit 159). /proc/PID/task/*/status shows \
         Seccomp: 2 for every thread.",
    ),
    (
        "--seccomp log",
        "The same filters, but a forbidden call is made and logged by the kernel (audit \
         type=1326 in dmesg or the audit log): for finding what a new setup needs.",
    ),
    (
        "--seccomp false",
        "No filters. Every mode sets no_new_privs (NoNewPrivs: 1) and keeps guest RAM out of \
         core dumps (MADV_DONTDUMP).",
    ),
];

/// What `--disk` does with an image, for the man page's DISK IMAGES section.
pub const DISK_IMAGES: &[(&str, &str)] = &[
    (
        "Images",
        "Raw images only: a regular file or a host block device whose size is a whole number \
         of 512-byte sectors. Anything else (a directory, FIFO, character device, socket) is \
         refused before it is opened.",
    ),
    (
        "Locking",
        "The image is locked with an open-file-description lock on the whole file \
         (F_OFD_SETLK) from before the guest starts until polyvisor exits, across --on-reset \
         restart: shared with readonly=on, exclusive otherwise. A second polyvisor, or QEMU, \
         cannot open it for writing meanwhile; an image locked elsewhere is refused (exit 2). \
         The same image given twice is refused unless readonly=on both times, whatever paths \
         name it.",
    ),
    (
        "Guest view",
        "One virtio-blk device per --disk, attached in flag order before the other virtio \
         devices: on x86_64 and aarch64 Linux names them /dev/vda, /dev/vdb, ... in that \
         order; on s390x it names virtio-ccw disks in its own probe order, so find them by \
         serial (/dev/disk/by-id/virtio-S). serial=S is what the guest reads as the serial. A read-only disk answers writes, discards and write-zeroes with an I/O \
         error and the file is untouched. A flush completes after fdatasync(2) of the image.",
    ),
    (
        "Limits",
        "x86_64 has 8 virtio-mmio slots and aarch64 32, shared by the disks, --net, --rng \
         and --vsock; more disks are refused naming the first that does not fit (exit 2).",
    ),
];

/// `--help`'s closing text.
pub fn after_help() -> String {
    let mut text = String::from("Exit status:\n");
    for (code, meaning) in EXIT_STATUSES {
        text.push_str(&format!("  {code:<6} {meaning}\n"));
    }
    text.push_str("Signals:\n");
    for (sig, meaning) in SIGNALS {
        text.push_str(&format!("  {sig}: {meaning}\n"));
    }
    text.push_str(
        "Logs go to stderr (or --log-file), one line each; a message site is limited to 10 \
         lines a second, the rest counted. The guest's console goes to stdout.\n\
         Environment: POLYVISOR_LOG sets the log level.",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_exit_status() {
        let help = after_help();
        for (code, _) in EXIT_STATUSES {
            assert!(help.contains(code), "{code}");
        }
    }
}
