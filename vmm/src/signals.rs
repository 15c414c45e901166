//! Stop signals: SIGTERM, SIGINT and SIGHUP stop the guest and let the VMM tear down
//! cleanly (vCPU threads joined, terminal restored) instead of dying mid-run.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use devices::{VmControl, VmExitReason};
use vmm_sys_util::signal::register_signal_handler;

/// The last stop signal received, 0 for none. Written by the handler (an atomic store is
/// async-signal-safe), read by [`wait_for_exit`].
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The signals that stop the VM.
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

extern "C" fn note_signal(num: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    RECEIVED.store(num, Ordering::SeqCst);
}

/// Route the stop signals to [`wait_for_exit`].
pub fn install() -> std::io::Result<()> {
    for sig in STOP_SIGNALS {
        register_signal_handler(sig, note_signal).map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// Wait until the guest stops or a stop signal arrives (checked every 20 ms).
pub fn wait_for_exit(control: &VmControl) -> VmExitReason {
    loop {
        if let Some(reason) = control.wait_timeout(Duration::from_millis(20)) {
            return reason;
        }
        let sig = RECEIVED.swap(0, Ordering::SeqCst);
        if sig != 0 {
            control.request_exit(VmExitReason::Signal(sig));
        }
    }
}

/// The conventional name of a stop signal.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noted_signal_becomes_the_exit_reason() {
        let control = VmControl::new();
        RECEIVED.store(libc::SIGTERM, Ordering::SeqCst);
        assert_eq!(wait_for_exit(&control), VmExitReason::Signal(libc::SIGTERM));
        assert_eq!(name(libc::SIGHUP), "SIGHUP");
    }
}
