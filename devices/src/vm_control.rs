//! How a device or a vCPU tells the VMM that the guest wants to stop.

use std::sync::{Condvar, Mutex};

/// Why the guest stopped running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExitReason {
    /// The guest powered itself off (ACPI S5, PSCI SYSTEM_OFF, s390x stop of the last CPU).
    Poweroff,
    /// The guest asked for a reset (i8042 CPU reset, triple fault, PSCI SYSTEM_RESET).
    Reset,
    /// The VMM failed; the string says what went wrong.
    Error(String),
}

/// Shared between devices, vCPU threads and the main thread: the first exit request wins.
#[derive(Default)]
pub struct VmControl {
    reason: Mutex<Option<VmExitReason>>,
    changed: Condvar,
}

impl VmControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the VM to stop. Later requests do not overwrite the first one.
    pub fn request_exit(&self, reason: VmExitReason) {
        let mut guard = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(reason);
        }
        self.changed.notify_all();
    }

    /// The exit reason, if one was requested.
    pub fn exit_reason(&self) -> Option<VmExitReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Block until an exit is requested.
    pub fn wait(&self) -> VmExitReason {
        let mut guard = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(reason) = guard.as_ref() {
                return reason.clone();
            }
            guard = self.changed.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
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
        c.request_exit(VmExitReason::Reset);
        c.request_exit(VmExitReason::Poweroff);
        assert_eq!(c.exit_reason(), Some(VmExitReason::Reset));
        assert_eq!(c.wait(), VmExitReason::Reset);
    }

    #[test]
    fn wait_wakes_on_request_from_another_thread() {
        let c = Arc::new(VmControl::new());
        let c2 = c.clone();
        let t = std::thread::spawn(move || c2.request_exit(VmExitReason::Poweroff));
        assert_eq!(c.wait(), VmExitReason::Poweroff);
        t.join().unwrap();
    }
}
