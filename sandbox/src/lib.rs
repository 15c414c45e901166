// SPDX-License-Identifier: Apache-2.0
//! Polyvisor's sandbox: a seccomp filter per thread kind, `no_new_privs`, and guest RAM
//! kept out of core dumps.
//!
//! Each thread installs its kind's filter itself, first thing, before it handles anything
//! a guest controls (vCPU threads: before their first `KVM_RUN`). The filter is an
//! allow-list of system calls, numbered for the architecture this crate is built for
//! (`tables`, from `libc::SYS_*`); a call outside it kills the whole process
//! ([`Mode::Kill`], `SECCOMP_RET_KILL_PROCESS`, the kernel logs it to the audit log /
//! kmsg) or is allowed and logged ([`Mode::Log`], `SECCOMP_RET_LOG`).
//!
//! Why not the `seccompiler` crate: 0.5 compiles to nothing on big-endian targets
//! (`#![cfg(target_endian = "little")]`) and its `TargetArch` has no s390x (only x86_64,
//! aarch64, riscv64); an allow-list needs no argument checks, and the few dozen lines of
//! BPF in `bpf` are the same on all three architectures and are tested on each.

mod bpf;
mod tables;

use std::fmt;
use std::io;
use std::str::FromStr;

pub use tables::{allowed, Sys};

/// What a forbidden system call does (`--seccomp true|log|false`, Cloud Hypervisor's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// `true`: the process is killed (`SECCOMP_RET_KILL_PROCESS`, SIGSYS).
    #[default]
    Kill,
    /// `log`: the call is made and the kernel logs it (`SECCOMP_RET_LOG`).
    Log,
    /// `false`: no filter (`no_new_privs` is still set).
    Off,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "true" => Ok(Mode::Kill),
            "log" => Ok(Mode::Log),
            "false" => Ok(Mode::Off),
            _ => Err(format!("{s:?} is not one of true, log, false")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Kill => "true",
            Mode::Log => "log",
            Mode::Off => "false",
        })
    }
}

/// The kinds of thread Polyvisor runs, each with its own filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThreadKind {
    /// Builds the machine, then runs the event loop (signals, pause/resume, teardown).
    Main,
    /// `vcpuN`: `KVM_RUN` and the exits' device emulation.
    Vcpu,
    /// The virtio device workers (`virtio-rng`, `virtio-blk`, `virtio-net`, `virtio-vsock`).
    VirtioRng,
    VirtioBlk,
    VirtioNet,
    VirtioVsock,
    /// `console-out`: writes the guest console's output.
    ConsoleOut,
    /// The HTTP API over a Unix socket.
    Api,
}

impl ThreadKind {
    /// Every kind, for the tests and the docs. (Console input has no thread: the main
    /// thread's event loop reads stdin, under the main filter, which holds `CONSOLE_IN`.)
    pub const ALL: [ThreadKind; 8] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::VirtioRng,
        ThreadKind::VirtioBlk,
        ThreadKind::VirtioNet,
        ThreadKind::VirtioVsock,
        ThreadKind::ConsoleOut,
        ThreadKind::Api,
    ];

    /// The kind of a virtio worker thread from its name (`virtio-blk`...).
    pub fn of_worker(thread_name: &str) -> Option<ThreadKind> {
        match thread_name {
            "virtio-rng" => Some(ThreadKind::VirtioRng),
            "virtio-blk" => Some(ThreadKind::VirtioBlk),
            "virtio-net" => Some(ThreadKind::VirtioNet),
            "virtio-vsock" => Some(ThreadKind::VirtioVsock),
            _ => None,
        }
    }
}

/// The audit architecture the filter checks (linux/audit.h `AUDIT_ARCH_*`).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e; // EM_X86_64 | 64BIT | LE
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7; // EM_AARCH64 | 64BIT | LE
#[cfg(target_arch = "s390x")]
const AUDIT_ARCH: u32 = 0x8000_0016; // EM_S390 | 64BIT (big-endian)

/// Errors installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(#[source] io::Error),
    #[error("installing the {kind:?} thread's seccomp filter: {source}")]
    Install {
        kind: ThreadKind,
        #[source]
        source: io::Error,
    },
}

/// Set `no_new_privs` on the calling thread; threads it starts inherit it. Polyvisor does
/// this first, whatever `--seccomp` says.
pub fn no_new_privs() -> Result<(), Error> {
    bpf::set_no_new_privs().map_err(Error::NoNewPrivs)
}

/// The BPF program of `kind`'s filter in `mode` (`None` for [`Mode::Off`]).
fn program(kind: ThreadKind, mode: Mode) -> Option<Vec<bpf::Insn>> {
    let otherwise = match mode {
        Mode::Kill => bpf::RET_KILL_PROCESS,
        Mode::Log => bpf::RET_LOG,
        Mode::Off => return None,
    };
    let numbers: Vec<libc::c_long> = allowed(kind).iter().map(|s| s.nr).collect();
    Some(bpf::program(AUDIT_ARCH, &numbers, otherwise))
}

/// Install `kind`'s filter on the calling thread (nothing for [`Mode::Off`]). Threads the
/// caller starts afterwards inherit it.
pub fn install(kind: ThreadKind, mode: Mode) -> Result<(), Error> {
    match program(kind, mode) {
        Some(p) => bpf::install(&p).map_err(|source| Error::Install { kind, source }),
        None => no_new_privs(),
    }
}

/// Tell the kernel not to put `len` bytes at `addr` (guest RAM) into core dumps.
///
/// # Safety
/// `addr..addr + len` must be a mapping the caller owns (madvise only changes its flags).
pub unsafe fn dont_dump(addr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller vouches for the range; MADV_DONTDUMP changes no contents.
    let r = unsafe { libc::madvise(addr.cast(), len, libc::MADV_DONTDUMP) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests;
