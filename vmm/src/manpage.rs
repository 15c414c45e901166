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
         says `guest powered off` or `guest reset`. With --api-socket, also vmm.shutdown. \
         `polyvisor remote`: the call succeeded.",
    ),
    (
        "1",
        "The VMM failed (the hypervisor refused something, a vCPU faulted, a host resource \
         failed); one error line says what. `polyvisor remote`: the call failed (no VMM on \
         the socket, or an error answer: one line with the endpoint, status and message).",
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
        "The default. Each thread (main, vcpuN, each virtio-* worker, console-out, api) \
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
        "I/O",
        "Each disk is served on its own thread, straight between the image and guest memory. \
         With direct=on, reads, writes and flushes are kept in flight with io_uring, up to 64 \
         per disk, and complete in any order, where polyvisor has it (x86_64, aarch64) and \
         the kernel allows it; elsewhere (s390x, an old kernel, io_uring refused by seccomp or \
         the kernel.io_uring_disabled sysctl: said once in the log at info level) and for \
         buffered disks, requests are done one at a time.",
    ),
    (
        "Limits",
        "x86_64 has 8 virtio-mmio slots and aarch64 32, shared by the disks, --net, --rng \
         and --vsock; more disks are refused naming the first that does not fit (exit 2).",
    ),
];

/// The management API (`--api-socket`, `polyvisor remote`), for the man page's MANAGEMENT
/// API section; docs/api.md has every call.
pub const MANAGEMENT_API: &[(&str, &str)] = &[
    (
        "Protocol",
        "Cloud Hypervisor's REST API: HTTP/1.1 over the Unix socket --api-socket PATH (mode \
         0600), JSON bodies, paths under /api/v1/. Served: vmm.ping, vmm.shutdown, \
         vm.create, vm.info, vm.counters, vm.boot, vm.pause, vm.resume, vm.power-button, \
         vm.shutdown, vm.reboot, vm.delete, vm.add-disk, vm.add-net, vm.add-vsock, \
         vm.remove-device. Cloud Hypervisor's other calls (other devices, snapshot, \
         migration, resize) answer 501 naming the call. `polyvisor --api-socket PATH` starts \
         with no VM: vm.create (Cloud Hypervisor's VmConfig) then vm.boot.",
    ),
    (
        "Hotplug",
        "vm.add-disk, vm.add-net, vm.add-vsock (Cloud Hypervisor's DiskConfig, NetConfig, \
         VsockConfig) plug a device into the running or paused VM where the backend can: \
         s390x (virtio-ccw). x86_64 and aarch64 answer 501: virtio-mmio cannot announce a \
         device to a running guest. The host side is opened as --disk, --net, --vsock open \
         theirs (errors: 400 naming the flag and value); the answer is {\"id\", \"bdf\"}, bdf \
         being the CCW bus id on s390x. The device stays in the VM's configuration \
         (vm.info, reboots); vm.remove-device {\"id\"} takes a disk, net or vsock out, \
         plugged in or attached at boot, on s390x (404 for an unknown id; 501 on x86_64 \
         and aarch64).",
    ),
    (
        "Errors",
        "A JSON array of messages: 404 no VM or unknown path, 405 wrong state or verb, 400 \
         malformed HTTP or JSON or a VmConfig field Polyvisor cannot honour (named) or a device that \
         cannot be added as asked, 501 a call the backend cannot carry out, 408 a request not complete within 5 s, 413 a body over \
         256 KiB, 500 the VMM failed, 503 more than 64 connections.",
    ),
    (
        "Life",
        "A guest that powers off, resets or panics ends polyvisor as without the API; after \
         vm.shutdown or vm.delete it serves on until vmm.shutdown or a stop signal.",
    ),
    (
        "polyvisor remote",
        "polyvisor remote --api-socket PATH ping|info|counters|create FILE|boot|pause|resume|\
         power-button|shutdown|reboot|delete|shutdown-vmm|add-disk DISK|add-net NET|\
         add-vsock VSOCK|remove-device ID prints the JSON answer (nothing for 204); DISK, NET \
         and VSOCK take the --disk, --net, --vsock syntax (add-disk \
         path=data.img,readonly=on); an error is one line, exit 1 (a usage error 2).",
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
