// SPDX-License-Identifier: Apache-2.0
//! Polyvisor's VMM: configuration, the VM builder, vCPU threads and the console.
//!
//! Architecture-blind: the backend is chosen once in [`host`], and everything else goes
//! through the `arch` traits.

pub mod api;
pub mod backends;
pub mod cli;
pub mod config;
pub mod console;
pub mod console_input;
pub mod device_manager;
pub mod disks;
pub mod host;
pub mod hotplug;
pub mod logger;
pub mod machine;
pub mod manpage;
pub mod nets;
pub mod remote;
pub mod run_control;
pub mod seccomp;
pub mod signals;
pub mod terminal;
pub mod unix_socket;
mod vcpu_thread;
pub mod vsock;

pub use config::{Config, ConfigError, Field};
pub use machine::{run, run_with, Error, RunOutcome};
pub use run_control::{Answer, CommandError, RunControl, StopKind, VmCommand, VmState};

use std::sync::OnceLock;

/// Exit status when the guest said its kernel panicked (pvpanic on x86_64 and aarch64).
pub const EXIT_GUEST_PANIC: u8 = 3;

/// Exit status when polyvisor itself panicked (a bug): the VM is stopped and the terminal
/// restored first. (70 is `EX_SOFTWARE` of sysexits.h, "internal software error".)
pub const EXIT_PANIC: u8 = 70;

/// What a panic on any thread does: put the terminal back, say on one line which thread
/// failed where, and end the process at once with [`EXIT_PANIC`], which stops the VM. A
/// panicking vCPU or device thread would otherwise leave the VMM waiting forever.
pub fn install_panic_policy() {
    std::panic::set_hook(Box::new(|info| {
        terminal::restore();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = format!(
            "polyvisor: error: internal error: thread '{name}' panicked{place}: {}; stopping the VM (this is a bug)\n",
            what.replace('\n', " ")
        );
        // Straight to fd 2: the panicking thread may hold a lock the logger or std's
        // stderr would need.
        // SAFETY: `line` is a valid buffer of `line.len()` bytes for the call.
        unsafe { libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), line.len()) };
        // SAFETY: _exit ends the process without running anything that could wait on the
        // other threads; the kernel tears down the VM.
        unsafe { libc::_exit(i32::from(EXIT_PANIC)) };
    }));
}
use std::time::Instant;

static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// When this process started, as near as the VMM can tell: the first call wins, so the
/// binary calls it first thing in `main`.
pub fn process_start() -> Instant {
    *PROCESS_START.get_or_init(Instant::now)
}
