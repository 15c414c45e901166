// SPDX-License-Identifier: Apache-2.0
//! Which system calls each thread kind may make, by name (`libc::SYS_*`, so each
//! architecture gets its own numbers) with who needs each.
//!
//! Found by running the tiny-guest tests and the nested real-guest boots under `strace -f`
//! and `--seccomp log` (docs/architecture.md "Threads and their filters"). Rust's std and
//! glibc pick the modern call where the kernel has it (`openat`, `ppoll`, `epoll_pwait`,
//! `clone3`, `statx`); the legacy ones some of them still use on x86_64 and s390x are
//! listed under `legacy` and do not exist on aarch64.

use crate::ThreadKind;

/// An allowed system call: its number on this architecture, its name and who needs it.
#[derive(Clone, Copy, Debug)]
pub struct Sys {
    pub nr: libc::c_long,
    pub name: &'static str,
    pub why: &'static str,
}

macro_rules! sys {
    ($name:ident, $why:expr) => {
        Sys {
            nr: libc::$name,
            name: stringify!($name),
            why: $why,
        }
    };
}

/// What every thread does in Rust's std and glibc once it runs: locks, memory, logging,
/// sleeping, ending.
const EVERY_THREAD: &[Sys] = &[
    sys!(SYS_futex, "Mutex, Condvar, channels, thread join (std)"),
    sys!(
        SYS_write,
        "log lines to stderr or --log-file; eventfd kicks"
    ),
    sys!(SYS_mmap, "malloc arenas and large allocations (glibc)"),
    sys!(
        SYS_munmap,
        "freeing large allocations, thread stacks at join"
    ),
    sys!(SYS_mprotect, "malloc arena growth (glibc)"),
    sys!(
        SYS_madvise,
        "malloc trimming freed memory (glibc MADV_DONTNEED)"
    ),
    sys!(SYS_brk, "malloc's main heap (glibc)"),
    sys!(
        SYS_mremap,
        "realloc of large buffers (glibc), e.g. console output pushed by a vCPU"
    ),
    sys!(SYS_sched_yield, "spin-then-park in std's locks"),
    sys!(SYS_clock_gettime, "Instant::now when the vDSO is not used"),
    sys!(
        SYS_clock_nanosleep,
        "thread::sleep (deadline polls while stopping)"
    ),
    sys!(SYS_nanosleep, "thread::sleep on older glibc"),
    sys!(
        SYS_rt_sigprocmask,
        "glibc masks signals around thread exit and abort"
    ),
    sys!(
        SYS_rt_sigreturn,
        "return from the vCPU kick signal handler (SIGRTMIN)"
    ),
    sys!(
        SYS_sigaltstack,
        "std removes the thread's signal stack when it ends"
    ),
    sys!(SYS_exit, "thread end"),
    sys!(
        SYS_exit_group,
        "process exit (also the panic policy's _exit)"
    ),
    sys!(SYS_getpid, "glibc's raise/abort, log lines"),
    sys!(SYS_gettid, "glibc's raise/abort"),
    sys!(SYS_tgkill, "glibc's abort (a panic in a no-unwind path)"),
    sys!(SYS_tkill, "musl's raise/abort (the static release build)"),
    sys!(SYS_close, "dropping fds (eventfds, files, sockets)"),
    sys!(
        SYS_fcntl,
        "EventFd::try_clone, O_NONBLOCK on the console fds"
    ),
    sys!(SYS_getrandom, "std HashMap keys (RandomState)"),
];

/// Starting a thread (std::thread::Builder::spawn) and the new thread's own set-up.
const SPAWN_THREAD: &[Sys] = &[
    sys!(SYS_clone, "thread creation (glibc without clone3)"),
    sys!(SYS_clone3, "thread creation (glibc)"),
    sys!(SYS_set_robust_list, "new thread set-up (glibc)"),
    sys!(SYS_rseq, "new thread set-up (glibc 2.35+)"),
    sys!(
        SYS_prctl,
        "thread name (PR_SET_NAME), no_new_privs before its filter"
    ),
    sys!(SYS_seccomp, "the new thread installs its own filter"),
    sys!(SYS_sched_getaffinity, "std's available_parallelism"),
    sys!(SYS_getrandom, "std's HashMap keys in a new thread"),
];

/// A virtio device worker's loop (devices::virtio::worker): epoll on eventfds.
const WORKER_LOOP: &[Sys] = &[
    sys!(
        SYS_epoll_ctl,
        "WorkerFds: registering the device's host fds"
    ),
    sys!(SYS_epoll_pwait, "the worker's wait (glibc on aarch64)"),
    sys!(SYS_read, "eventfd kick/stop, /dev/urandom, tap frames"),
    sys!(
        SYS_ioctl,
        "KVM_S390_INTERRUPT / KVM_IRQ_LINE-free injection paths, tap"
    ),
];

const RNG: &[Sys] = &[];

const BLK: &[Sys] = &[
    sys!(SYS_preadv, "block-io: reading into guest memory"),
    sys!(SYS_pwritev, "block-io: writing from guest memory"),
    sys!(SYS_pread64, "block-io: single-segment reads"),
    sys!(SYS_pwrite64, "block-io: single-segment writes"),
    sys!(SYS_fsync, "VIRTIO_BLK_T_FLUSH"),
    sys!(SYS_fdatasync, "VIRTIO_BLK_T_FLUSH"),
    sys!(SYS_fallocate, "discard and write-zeroes on regular files"),
    sys!(SYS_lseek, "disk size"),
    sys!(SYS_fstat, "disk size"),
    sys!(SYS_newfstatat, "std's File::metadata"),
    sys!(SYS_statx, "std's File::metadata"),
    sys!(
        SYS_io_uring_setup,
        "block-io: the direct=on disk's ring (at attach, on the worker)"
    ),
    sys!(
        SYS_io_uring_enter,
        "block-io: submitting and reaping requests"
    ),
    sys!(
        SYS_io_uring_register,
        "block-io: the ring's completion eventfd"
    ),
    sys!(SYS_eventfd2, "block-io: the ring's completion eventfd"),
    sys!(
        SYS_ppoll,
        "block-io: draining the ring at reset (bounded wait)"
    ),
];

const NET: &[Sys] = &[
    sys!(SYS_readv, "tap: receiving a frame"),
    sys!(SYS_writev, "tap: sending a frame from guest memory"),
];

const VSOCK: &[Sys] = &[
    sys!(SYS_accept4, "host connections to the vsock Unix socket"),
    sys!(SYS_recvfrom, "host socket data"),
    sys!(SYS_sendto, "data to host sockets"),
    sys!(SYS_recvmsg, "host socket data"),
    sys!(SYS_sendmsg, "data to host sockets"),
    sys!(SYS_shutdown, "guest or host closing one direction"),
    sys!(SYS_timerfd_create, "CONNECT deadline timer"),
    sys!(SYS_timerfd_settime, "CONNECT deadline timer"),
    sys!(SYS_fcntl, "non-blocking accepted sockets"),
    sys!(SYS_getsockopt, "socket errors"),
    sys!(
        SYS_socket,
        "a guest connecting to host port P: a Unix stream socket to PATH_P"
    ),
    sys!(SYS_connect, "a guest connecting to host port P: PATH_P"),
];

/// What a vCPU thread does itself.
const VCPU: &[Sys] = &[
    sys!(
        SYS_ioctl,
        "KVM_RUN and the exit paths' KVM ioctls (ioeventfd/irqfd binding, \
                     s390x interrupts, MP state)"
    ),
    sys!(SYS_read, "eventfds"),
    sys!(
        SYS_eventfd2,
        "virtio worker stop/kick eventfds at activation"
    ),
    sys!(SYS_epoll_create1, "virtio worker epoll at activation"),
    sys!(SYS_epoll_ctl, "virtio worker epoll at activation"),
    sys!(SYS_dup, "ioeventfd binding clones an EventFd"),
    sys!(SYS_fcntl, "EventFd::try_clone (F_DUPFD_CLOEXEC)"),
];

/// What the main thread needs to build a machine again (`--on-reset restart`) under its
/// filter: open the kernel, initrd and /dev/kvm, create the VM and its vCPUs, map guest
/// RAM, set up eventfds, epoll and the console input.
const REBUILD: &[Sys] = &[
    sys!(SYS_openat, "/dev/kvm, the kernel and initrd on a restart"),
    sys!(SYS_newfstatat, "std's File::metadata (kernel, initrd)"),
    sys!(SYS_statx, "std's File::metadata (kernel, initrd)"),
    sys!(SYS_fstat, "file sizes"),
    sys!(SYS_lseek, "file sizes"),
    sys!(SYS_pread64, "loaders reading the kernel"),
    sys!(SYS_read, "loaders reading the kernel"),
    sys!(SYS_eventfd2, "the new machine's eventfds"),
    sys!(SYS_epoll_create1, "the event loop of the new machine"),
    sys!(SYS_signalfd4, "the stop-signal signalfd"),
    sys!(SYS_rt_sigaction, "signal handlers"),
    sys!(SYS_fcntl, "EventFd::try_clone (F_DUPFD_CLOEXEC)"),
    sys!(SYS_dup, "fd clones"),
    sys!(
        SYS_socket,
        "a guest booted again (API vm.boot, --on-reset restart): the vsock socket, \
                     a tap's address (SIOCSIFADDR)"
    ),
    sys!(SYS_bind, "the vsock listening socket of a VM booted again"),
    sys!(
        SYS_listen,
        "the vsock listening socket of a VM booted again"
    ),
    sys!(
        SYS_connect,
        "is an existing vsock socket path stale? (a VM booted again)"
    ),
];

/// What the main thread needs to plug a device into the running guest (`vm.add-disk`,
/// `vm.add-net`, `vm.add-vsock`, `vm.remove-device`, vmm/src/hotplug.rs): open its host
/// side as `--disk`, `--net`, `--vsock` do, and let the backend wire it to the VM.
const HOTPLUG: &[Sys] = &[
    sys!(
        SYS_openat,
        "hotplug: the disk image (O_DIRECT too), /dev/net/tun for a tap"
    ),
    sys!(
        SYS_newfstatat,
        "hotplug: the image's checks and identity, a vsock path's stale check"
    ),
    sys!(
        SYS_statx,
        "hotplug: the image's checks and identity (std's metadata)"
    ),
    sys!(SYS_fstat, "hotplug: the opened image's type and size"),
    sys!(SYS_lseek, "hotplug: a block device image's size"),
    sys!(
        SYS_fcntl,
        "hotplug: the image's OFD lock (F_OFD_SETLK), clearing O_NONBLOCK"
    ),
    sys!(
        SYS_ioctl,
        "hotplug: BLKSSZGET (direct=on), TUNSETIFF/TUNSETOFFLOAD/TUNSETVNETHDRSZ, \
                     SIOCSIFADDR/SIOCSIFNETMASK/SIOCSIFFLAGS on a tap; the backend's \
                     KVM_IOEVENTFD, KVM_IRQFD, KVM_SET_GSI_ROUTING and \
                     KVM_S390_INTERRUPT (s390x: the channel report word) on the VM fd"
    ),
    sys!(
        SYS_socket,
        "hotplug: the vsock listening socket, a tap's address (AF_INET ioctl socket)"
    ),
    sys!(SYS_bind, "hotplug: the vsock listening socket"),
    sys!(SYS_listen, "hotplug: the vsock listening socket"),
    sys!(
        SYS_connect,
        "hotplug: is an existing vsock socket path stale?"
    ),
    sys!(
        SYS_unlinkat,
        "hotplug: a stale vsock socket; the socket of a vsock taken out"
    ),
    sys!(
        SYS_eventfd2,
        "hotplug: the new device's ioeventfds and irqfds"
    ),
];

const MAIN: &[Sys] = &[
    sys!(SYS_epoll_pwait, "the event loop (signals::wait_for_exit)"),
    sys!(SYS_read, "signalfd, eventfds"),
    sys!(
        SYS_ioctl,
        "terminal restore (TCSETS), KVM on the power button and teardown"
    ),
    sys!(
        SYS_tgkill,
        "the SIGRTMIN kick that gets a vCPU out of KVM_RUN"
    ),
    sys!(SYS_tkill, "the same kick through musl's pthread_kill"),
    sys!(SYS_unlinkat, "removing the vsock socket at exit"),
    sys!(SYS_fsync, "disk flush at teardown"),
    sys!(SYS_timerfd_settime, "power-button press deadline"),
    sys!(SYS_rt_sigtimedwait, "stop signals"),
    sys!(SYS_sigaltstack, "teardown"),
];

/// Console input, which the main thread's event loop reads (there is no console-input
/// thread).
const CONSOLE_IN: &[Sys] = &[
    sys!(SYS_ppoll, "waiting on stdin and the stop eventfd"),
    sys!(SYS_read, "stdin"),
    sys!(SYS_ioctl, "terminal attributes"),
];

const CONSOLE_OUT: &[Sys] = &[sys!(SYS_ioctl, "isatty on the sink")];

const API: &[Sys] = &[
    sys!(SYS_accept4, "API connections on the Unix socket"),
    sys!(SYS_read, "requests"),
    sys!(SYS_recvfrom, "requests"),
    sys!(SYS_sendto, "responses"),
    sys!(SYS_recvmsg, "requests"),
    sys!(SYS_sendmsg, "responses"),
    sys!(SYS_writev, "responses"),
    sys!(SYS_epoll_create1, "the API's event loop"),
    sys!(SYS_epoll_ctl, "the API's event loop"),
    sys!(SYS_epoll_pwait, "the API's event loop"),
    sys!(SYS_eventfd2, "requests to the VMM and its answers"),
    sys!(SYS_fcntl, "non-blocking sockets"),
    sys!(SYS_shutdown, "closing connections"),
    sys!(SYS_getsockopt, "peer credentials (SO_PEERCRED)"),
    sys!(SYS_unlinkat, "removing the API socket at exit"),
    sys!(SYS_ioctl, "FIONBIO on accepted connections"),
    sys!(SYS_setsockopt, "SO_SNDTIMEO on accepted connections"),
    sys!(
        SYS_openat,
        "vm.create checks the files a VmConfig names (kernel, initrd, disks), \
                     as the command line's checks do"
    ),
    sys!(SYS_newfstatat, "vm.create's file checks (std's metadata)"),
    sys!(SYS_statx, "vm.create's file checks (std's metadata)"),
    sys!(SYS_fstat, "vm.create's file checks"),
    sys!(SYS_lseek, "vm.create's file checks (sizes)"),
    sys!(SYS_pread64, "vm.create's file checks (a kernel's header)"),
];

/// The calls that exist on x86_64 and s390x but not on aarch64, for the kinds that
/// use them (glibc and std still choose them there).
#[cfg(any(target_arch = "x86_64", target_arch = "s390x"))]
fn legacy(kind: ThreadKind) -> Vec<Sys> {
    use ThreadKind::*;
    let mut v = vec![];
    match kind {
        Main | Api | Vcpu | VirtioRng | VirtioBlk | VirtioNet | VirtioVsock => {
            v.push(sys!(
                SYS_epoll_wait,
                "epoll waits (glibc on x86_64 and s390x)"
            ));
            v.push(sys!(SYS_unlink, "removing sockets at exit"));
            v.push(sys!(
                SYS_poll,
                "block-io draining its ring; the idle API wait (libc::poll)"
            ));
        }
        ConsoleOut => {}
    }
    // musl (the static release build) opens and stats paths with the legacy calls
    // where they exist, and std has no statx path on musl.
    if matches!(kind, Main | Api) {
        v.push(sys!(SYS_open, "File::open on musl (kernel, initrd, disks)"));
        v.push(sys!(SYS_stat, "std's metadata on musl"));
        v.push(sys!(
            SYS_lstat,
            "std's symlink_metadata on musl (socket paths)"
        ));
    }
    v
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "s390x")))]
fn legacy(_kind: ThreadKind) -> Vec<Sys> {
    vec![]
}

/// s390x: glibc built for kernels older than 4.3 (Debian's) reaches the socket calls
/// (`socket`, `connect`, `accept4`, `sendto`, `recvfrom`, `setsockopt`, ...) through
/// `socketcall(2)`, whose operation the filter does not look into: the kinds that use
/// sockets (the vsock worker, the API thread) and those they inherit from get it.
#[cfg(target_arch = "s390x")]
fn socketcall(kind: ThreadKind) -> Vec<Sys> {
    use ThreadKind::*;
    match kind {
        Main | Api | Vcpu | VirtioVsock => vec![sys!(
            SYS_socketcall,
            "socket calls through glibc's socketcall (s390x)"
        )],
        _ => vec![],
    }
}

#[cfg(not(target_arch = "s390x"))]
fn socketcall(_kind: ThreadKind) -> Vec<Sys> {
    vec![]
}

/// Every system call `kind` may make on this architecture, sorted by number, once each.
pub fn allowed(kind: ThreadKind) -> Vec<Sys> {
    use ThreadKind::*;
    let mut parts: Vec<&[Sys]> = vec![EVERY_THREAD];
    let mut extra = Vec::new();
    match kind {
        // The main thread starts the other threads, plugs devices in (HOTPLUG), and on
        // `--on-reset restart` builds a new machine and starts its threads after its own
        // filter is in place: a thread inherits its parent's filter, so the main list
        // holds every other kind's.
        Main => {
            parts.extend([
                MAIN,
                REBUILD,
                HOTPLUG,
                SPAWN_THREAD,
                CONSOLE_IN,
                CONSOLE_OUT,
                API,
            ]);
            for other in [Vcpu, ConsoleOut, Api] {
                extra.extend(allowed(other));
            }
        }
        // A vCPU thread starts the worker of each device the guest activates: the worker
        // inherits the vCPU's filter, so what workers need is allowed here too (each
        // worker then narrows it to its own device's list).
        Vcpu => parts.extend([VCPU, SPAWN_THREAD, WORKER_LOOP, RNG, BLK, NET, VSOCK]),
        VirtioRng => parts.extend([WORKER_LOOP, RNG]),
        VirtioBlk => parts.extend([WORKER_LOOP, BLK]),
        VirtioNet => parts.extend([WORKER_LOOP, NET]),
        VirtioVsock => parts.extend([WORKER_LOOP, VSOCK]),
        ConsoleOut => parts.push(CONSOLE_OUT),
        Api => parts.push(API),
    }
    let mut all: Vec<Sys> = parts.concat();
    all.extend(extra);
    all.extend(legacy(kind));
    all.extend(socketcall(kind));
    all.sort_by_key(|s| s.nr);
    all.dedup_by_key(|s| s.nr);
    all
}
