//! Stop signals. SIGINT, SIGHUP and SIGQUIT stop the guest at once; SIGTERM first presses the
//! guest's power button, where the machine has one, and waits a bounded time for the guest
//! to power itself off (a second stop signal, or the time running out, stops it at once).
//! Either way the VMM tears down cleanly (vCPU threads joined, terminal restored) instead of
//! dying mid-run.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use devices::{PowerButton, VmControl, VmExitReason};
use vmm_sys_util::signal::register_signal_handler;

/// The last stop signal received, 0 for none. Written by the handler (an atomic store is
/// async-signal-safe), read by [`wait_for_exit`].
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The signals that stop the VM.
pub const STOP_SIGNALS: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// How long the power button stays pressed.
const PRESS_TIME: Duration = Duration::from_millis(200);
/// How often the main thread looks at the signals.
const POLL: Duration = Duration::from_millis(20);

extern "C" fn note_signal(num: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    RECEIVED.store(num, Ordering::SeqCst);
}

/// Route the stop signals to [`wait_for_exit`]. Called before the terminal goes into raw
/// mode, so no stop signal can end the process with the terminal left raw.
pub fn install() -> std::io::Result<()> {
    for sig in STOP_SIGNALS {
        register_signal_handler(sig, note_signal).map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// How SIGTERM asks the guest to shut down.
pub struct GracefulStop<'a> {
    /// The guest's power button, if the machine has one.
    pub button: Option<&'a dyn PowerButton>,
    /// How long to wait for the guest after pressing it; zero stops at once.
    pub timeout: Duration,
}

/// How the VM ended, as the main thread saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ending {
    pub reason: VmExitReason,
    /// When a stop signal ended the VM after its power button was pressed: how long the
    /// guest was given.
    pub waited: Option<Duration>,
}

/// A power-button press in progress.
struct Pressed {
    at: Instant,
    released: bool,
}

/// Wait until the guest stops or a stop signal ends the VM (checked every 20 ms).
pub fn wait_for_exit(control: &VmControl, graceful: &GracefulStop) -> Ending {
    let mut pressed: Option<Pressed> = None;
    loop {
        if let Some(reason) = control.wait_timeout(POLL) {
            let waited = pressed.as_ref().map(|p| p.at.elapsed());
            if let (Some(w), VmExitReason::Poweroff | VmExitReason::Reset) = (waited, &reason) {
                log::info!(
                    "the guest answered its power button after {:.1} s",
                    w.as_secs_f64()
                );
            }
            let waited = match reason {
                VmExitReason::Signal(_) => waited,
                _ => None,
            };
            return Ending { reason, waited };
        }
        if let (Some(p), Some(button)) = (pressed.as_mut(), graceful.button) {
            if !p.released && p.at.elapsed() >= PRESS_TIME {
                button.release();
                p.released = true;
            }
            if p.at.elapsed() >= graceful.timeout {
                control.request_exit(VmExitReason::Signal(libc::SIGTERM));
                continue;
            }
        }
        let sig = RECEIVED.swap(0, Ordering::SeqCst);
        if sig == 0 {
            continue;
        }
        match graceful.button {
            Some(button)
                if sig == libc::SIGTERM && pressed.is_none() && !graceful.timeout.is_zero() =>
            {
                log::info!(
                    "SIGTERM: pressed the guest's {}; waiting up to {} s for it to power off \
                     (another SIGTERM stops it at once)",
                    button.describe(),
                    graceful.timeout.as_secs()
                );
                button.press();
                pressed = Some(Pressed {
                    at: Instant::now(),
                    released: false,
                });
            }
            _ => control.request_exit(VmExitReason::Signal(sig)),
        }
    }
}

/// The conventional name of a stop signal.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};

    /// Tests share the process-wide RECEIVED: run them one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[derive(Default)]
    struct Button {
        presses: AtomicUsize,
        releases: AtomicUsize,
    }

    impl PowerButton for Button {
        fn press(&self) {
            self.presses.fetch_add(1, Ordering::SeqCst);
        }
        fn release(&self) {
            self.releases.fetch_add(1, Ordering::SeqCst);
        }
        fn describe(&self) -> &'static str {
            "test button"
        }
    }

    fn with_button(control: &VmControl, button: &Button, timeout: Duration) -> Ending {
        wait_for_exit(
            control,
            &GracefulStop {
                button: Some(button),
                timeout,
            },
        )
    }

    fn no_button() -> GracefulStop<'static> {
        GracefulStop {
            button: None,
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_noted_signal_becomes_the_exit_reason() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let control = VmControl::new();
        RECEIVED.store(libc::SIGTERM, Ordering::SeqCst);
        let end = wait_for_exit(&control, &no_button());
        assert_eq!(end.reason, VmExitReason::Signal(libc::SIGTERM));
        assert_eq!(end.waited, None);
        assert_eq!(name(libc::SIGHUP), "SIGHUP");
    }

    #[test]
    fn sigterm_presses_the_button_and_the_guest_powers_off() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let control = Arc::new(VmControl::new());
        let button = Button::default();
        RECEIVED.store(libc::SIGTERM, Ordering::SeqCst);
        let guest = {
            let control = control.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(400));
                control.request_exit(VmExitReason::Poweroff);
            })
        };
        let end = with_button(&control, &button, Duration::from_secs(30));
        guest.join().unwrap();
        assert_eq!(end.reason, VmExitReason::Poweroff);
        assert_eq!(button.presses.load(Ordering::SeqCst), 1);
        assert_eq!(
            button.releases.load(Ordering::SeqCst),
            1,
            "released after 200 ms"
        );
    }

    #[test]
    fn a_guest_that_ignores_the_button_is_stopped_after_the_timeout() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let control = VmControl::new();
        let button = Button::default();
        RECEIVED.store(libc::SIGTERM, Ordering::SeqCst);
        let t0 = Instant::now();
        let end = with_button(&control, &button, Duration::from_millis(300));
        assert_eq!(end.reason, VmExitReason::Signal(libc::SIGTERM));
        assert!(end.waited.unwrap() >= Duration::from_millis(300));
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(button.presses.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_second_signal_or_a_zero_timeout_stops_at_once() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let button = Button::default();
        let control = VmControl::new();
        RECEIVED.store(libc::SIGTERM, Ordering::SeqCst);
        let end = with_button(&control, &button, Duration::ZERO);
        assert_eq!(end.reason, VmExitReason::Signal(libc::SIGTERM));
        assert_eq!(button.presses.load(Ordering::SeqCst), 0);

        let control = Arc::new(VmControl::new());
        RECEIVED.store(libc::SIGTERM, Ordering::SeqCst);
        let again = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            RECEIVED.store(libc::SIGINT, Ordering::SeqCst);
        });
        let end = with_button(&control, &button, Duration::from_secs(30));
        again.join().unwrap();
        assert_eq!(end.reason, VmExitReason::Signal(libc::SIGINT));
        assert!(end.waited.is_some());
        assert_eq!(button.presses.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn sigint_never_waits_for_the_guest() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let button = Button::default();
        let control = VmControl::new();
        RECEIVED.store(libc::SIGINT, Ordering::SeqCst);
        let end = with_button(&control, &button, Duration::from_secs(30));
        assert_eq!(end.reason, VmExitReason::Signal(libc::SIGINT));
        assert_eq!(button.presses.load(Ordering::SeqCst), 0);
    }
}
