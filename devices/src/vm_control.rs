// SPDX-License-Identifier: Apache-2.0
//! How a device or a vCPU tells the VMM that the guest wants to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Why the guest stopped running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExitReason {
    /// The guest powered itself off (ACPI S5, PSCI SYSTEM_OFF, s390x stop of the last CPU).
    Poweroff,
    /// The guest asked for a reset (i8042 CPU reset, triple fault, PSCI SYSTEM_RESET).
    Reset,
    /// The guest said its kernel panicked (pvpanic; on s390x the panic's disabled wait).
    GuestPanic,
    /// The VMM process was asked to stop by a signal (SIGTERM, SIGINT, SIGHUP).
    Signal(i32),
    /// The VMM failed; the string says what went wrong.
    Error(String),
}

/// Shared between devices, vCPU threads and the main thread: the first exit request wins.
/// The main thread's event loop waits on [`VmControl::event`]; other threads may block in
/// [`VmControl::wait_timeout`].
pub struct VmControl {
    reason: Mutex<Option<VmExitReason>>,
    /// `reason.is_some()`, readable without the lock: vCPU threads check it before every
    /// `KVM_RUN`, on every exit.
    requested: AtomicBool,
    changed: Condvar,
    /// Written on every exit request (`None` if the host had no eventfd to give).
    event: Option<EventFd>,
}

impl Default for VmControl {
    fn default() -> Self {
        Self::new()
    }
}

impl VmControl {
    pub fn new() -> Self {
        let event = EventFd::new(EFD_NONBLOCK)
            .map_err(|e| log::warn!("no eventfd for exit requests ({e}); the VMM will poll"))
            .ok();
        Self {
            reason: Mutex::new(None),
            requested: AtomicBool::new(false),
            changed: Condvar::new(),
            event,
        }
    }

    /// An `EventFd` that becomes readable when an exit is requested, for an event loop.
    pub fn event(&self) -> Option<&EventFd> {
        self.event.as_ref()
    }

    /// Ask the VM to stop. Later requests do not overwrite the first one.
    pub fn request_exit(&self, reason: VmExitReason) {
        let mut guard = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(reason);
            self.requested.store(true, Ordering::Release);
        }
        self.changed.notify_all();
        if let Some(event) = &self.event {
            let _ = event.write(1);
        }
    }

    /// Whether an exit was requested: one atomic load, no lock (the vCPU loop's check).
    pub fn exit_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// The exit reason, if one was requested.
    pub fn exit_reason(&self) -> Option<VmExitReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Block until an exit is requested or `timeout` passes.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> Option<VmExitReason> {
        let guard = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |r| r.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_request_wins() {
        let c = VmControl::new();
        assert_eq!(c.exit_reason(), None);
        assert!(!c.exit_requested());
        c.request_exit(VmExitReason::Reset);
        c.request_exit(VmExitReason::Poweroff);
        assert_eq!(c.exit_reason(), Some(VmExitReason::Reset));
        assert!(c.exit_requested());
    }

    #[test]
    fn wait_timeout_returns_none_until_requested() {
        let c = VmControl::new();
        assert_eq!(c.wait_timeout(std::time::Duration::from_millis(5)), None);
        c.request_exit(VmExitReason::Signal(15));
        assert_eq!(
            c.wait_timeout(std::time::Duration::from_millis(5)),
            Some(VmExitReason::Signal(15))
        );
    }

    #[test]
    fn wait_wakes_on_request_from_another_thread() {
        let c = Arc::new(VmControl::new());
        let c2 = c.clone();
        let t = std::thread::spawn(move || c2.request_exit(VmExitReason::Poweroff));
        assert_eq!(
            c.wait_timeout(std::time::Duration::from_secs(60)),
            Some(VmExitReason::Poweroff)
        );
        t.join().unwrap();
    }
}
