// SPDX-License-Identifier: Apache-2.0
//! Stop signals. SIGINT, SIGHUP and SIGQUIT stop the guest at once; SIGTERM first presses the
//! guest's power button, where the machine has one, and waits a bounded time for the guest
//! to power itself off (a second stop signal, or the time running out, stops it at once).
//! Either way the VMM tears down cleanly (vCPU threads joined, terminal restored) instead of
//! dying mid-run.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use devices::{PowerButton, VmControl, VmExitReason};

use crate::console_input::{InputWait, StdinInput};
use crate::run_control::{Answer, CommandError, RunControl, VmCommand};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

/// The signals that stop the VM.
pub const STOP_SIGNALS: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// How long the power button stays pressed.
const PRESS_TIME: Duration = Duration::from_millis(200);
/// Without an exit-request eventfd (the host had none to give), how often the loop looks.
const FALLBACK_POLL: Duration = Duration::from_millis(20);

/// The signalfd the stop signals arrive on (created once, by [`install`]).
static SIGNALS: OnceLock<OwnedFd> = OnceLock::new();

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for both calls; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in STOP_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
    }
    set
}

/// Route the stop signals to [`wait_for_exit`]: block them in the calling thread (every
/// thread started after it inherits the block, so no other thread is interrupted by them)
/// and read them from a signalfd. Call it on the main thread before any other thread
/// starts, and before the terminal goes into raw mode: a stop signal from then on is held
/// until the event loop reads it, and the run ends through the path that restores the
/// terminal. Calling it again only blocks the signals in the calling thread.
pub fn install() -> std::io::Result<()> {
    let set = stop_set();
    // SAFETY: `set` is a valid, initialised sigset_t; the old mask is not asked for.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    if SIGNALS.get().is_none() {
        // SAFETY: `set` is valid; -1 asks for a new signalfd, whose ownership we take.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by signalfd and is owned by nobody else.
        let _ = SIGNALS.set(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(())
}

/// The next pending stop signal, if any.
fn next_signal() -> Option<i32> {
    let fd = SIGNALS.get()?;
    // SAFETY: signalfd_siginfo is plain data; read fills it or fails.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is valid for writes of `size` bytes.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    };
    (n == size as isize).then_some(info.ssi_signo as i32)
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

impl Pressed {
    /// How long until the press needs attention (release, or the time running out).
    fn next_deadline(&self, timeout: Duration) -> Duration {
        let due = if self.released {
            timeout
        } else {
            PRESS_TIME.min(timeout)
        };
        due.saturating_sub(self.at.elapsed())
    }
}

/// What can wake the main loop. Each source's descriptor is registered with its token; a
/// new source is one variant here, one registration in [`EventLoop::new`] (or through
/// [`EventLoop::set`] when its interest changes) and one arm in [`wait_for_exit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// The stop-signal signalfd.
    Signals,
    /// The VM's exit-request eventfd (guest poweroff/reset, a vCPU's error, Ctrl-A x).
    ExitRequest,
    /// Pause/resume requests ([`RunControl`]).
    Commands,
    /// Stdin, while the console device takes input.
    ConsoleIn,
    /// The console device has room again for input that waits.
    ConsoleRoom,
}

impl Token {
    const ALL: [Token; 5] = [
        Token::Signals,
        Token::ExitRequest,
        Token::Commands,
        Token::ConsoleIn,
        Token::ConsoleRoom,
    ];

    fn data(self) -> u64 {
        self as u64 + 1
    }

    fn from_data(data: u64) -> Option<Token> {
        Token::ALL.into_iter().find(|t| t.data() == data)
    }
}

/// Requests to the running VM (pause, resume) and what carries them out.
pub struct Steering<'a> {
    pub requests: &'a RunControl,
    pub handle: &'a mut dyn FnMut(VmCommand) -> Result<Answer, CommandError>,
}

/// The main loop's optional sources, beyond the stop signals and exit requests it always
/// has.
#[derive(Default)]
pub struct Sources<'a> {
    /// Pause/resume requests from another thread (the API).
    pub steering: Option<Steering<'a>>,
    /// Stdin feeding the guest's console.
    pub console: Option<&'a mut StdinInput>,
}

/// The main loop's epoll set and which sources are in it.
struct EventLoop {
    epoll: Epoll,
    registered: [bool; Token::ALL.len()],
}

impl EventLoop {
    /// The loop over the stop signals, the exit requests and `sources`. A console input
    /// the loop cannot watch is turned off (logged), the rest goes on.
    fn new(control: &VmControl, sources: &mut Sources) -> std::io::Result<Self> {
        let mut el = Self {
            epoll: Epoll::new()?,
            registered: [false; Token::ALL.len()],
        };
        let signals = SIGNALS
            .get()
            .ok_or_else(|| std::io::Error::other("the stop signals are not installed"))?;
        el.set(Token::Signals, signals.as_raw_fd(), true)?;
        let exit = control
            .event()
            .ok_or_else(|| std::io::Error::other("no exit-request eventfd"))?;
        el.set(Token::ExitRequest, exit.as_raw_fd(), true)?;
        if let Some(s) = &sources.steering {
            el.set(Token::Commands, s.requests.event().as_raw_fd(), true)?;
        }
        if let Some(input) = sources.console.as_deref() {
            let watched = el
                .set(Token::ConsoleRoom, input.room_fd(), true)
                .and_then(|()| el.sync_console(input));
            if let Err(e) = watched {
                log::warn!("console: watching stdin: {e}; console input off");
                el.drop_console(input);
                sources.console = None;
            }
        }
        Ok(el)
    }

    /// Have `token`'s `fd` in the set (waiting for input) or not.
    fn set(&mut self, token: Token, fd: RawFd, wanted: bool) -> std::io::Result<()> {
        let slot = &mut self.registered[token as usize];
        if *slot == wanted {
            return Ok(());
        }
        let op = if wanted {
            ControlOperation::Add
        } else {
            ControlOperation::Delete
        };
        self.epoll
            .ctl(op, fd, EpollEvent::new(EventSet::IN, token.data()))?;
        *slot = wanted;
        Ok(())
    }

    /// Take console input out of the set for good.
    fn drop_console(&mut self, input: &StdinInput) {
        let _ = self.set(Token::ConsoleIn, input.stdin_fd(), false);
        let _ = self.set(Token::ConsoleRoom, input.room_fd(), false);
    }

    /// Watch stdin only while the console takes input (a full device, EOF or Ctrl-A x
    /// take it out of the set: a readable stdin or one at EOF would wake the loop forever).
    fn sync_console(&mut self, input: &StdinInput) -> std::io::Result<()> {
        let wanted = input.waits_for() == InputWait::Stdin;
        self.set(Token::ConsoleIn, input.stdin_fd(), wanted)
    }
}

/// The main thread's event loop while the guest runs: waits with epoll on the stop-signal
/// signalfd, the VM's exit-request eventfd and `sources` (console input, pause/resume
/// requests), and, while a power-button press is in progress, for its release and
/// deadline, until the guest stops or a stop signal ends the VM. Nothing polls on a timer.
pub fn wait_for_exit(control: &VmControl, graceful: &GracefulStop, mut sources: Sources) -> Ending {
    let mut event_loop = match EventLoop::new(control, &mut sources) {
        Ok(e) => Some(e),
        Err(e) => {
            log::warn!("event loop: {e}; polling instead, console input off");
            None
        }
    };
    let mut events = [EpollEvent::default(); Token::ALL.len()];
    let mut pressed: Option<Pressed> = None;
    // A press asked for through the management API: released after PRESS_TIME, and no
    // forced stop (the guest decides, as with a real button).
    let mut api_press: Option<Instant> = None;
    loop {
        if let (Some(at), Some(button)) = (api_press, graceful.button) {
            if at.elapsed() >= PRESS_TIME {
                button.release();
                api_press = None;
            }
        }
        if let Some(reason) = control.exit_reason() {
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
        if let Some(sig) = next_signal() {
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
            continue;
        }
        let wait = pressed
            .as_ref()
            .map(|p| p.next_deadline(graceful.timeout))
            .into_iter()
            .chain(api_press.map(|at| PRESS_TIME.saturating_sub(at.elapsed())))
            .min();
        match &mut event_loop {
            Some(el) => {
                let ms = wait.map_or(-1, |d| i32::try_from(d.as_millis() + 1).unwrap_or(i32::MAX));
                let n = el.epoll.wait(ms, &mut events).unwrap_or(0);
                for e in &events[..n] {
                    match Token::from_data(e.data()) {
                        Some(Token::ExitRequest) => {
                            if let Some(ev) = control.event() {
                                let _ = ev.read();
                            }
                        }
                        Some(Token::Commands) => {
                            if let Some(s) = sources.steering.as_mut() {
                                serve(s, graceful.button, &mut api_press);
                            }
                        }
                        Some(Token::ConsoleIn) => {
                            if let Some(input) = sources.console.as_deref_mut() {
                                input.on_stdin(control);
                            }
                        }
                        Some(Token::ConsoleRoom) => {
                            if let Some(input) = sources.console.as_deref_mut() {
                                input.on_room();
                            }
                        }
                        // The signalfd is read at the top of the loop.
                        Some(Token::Signals) | None => {}
                    }
                }
                if let Some(input) = sources.console.as_deref() {
                    if let Err(e) = el.sync_console(input) {
                        log::warn!("console: watching stdin: {e}; console input off");
                        el.drop_console(input);
                        sources.console = None;
                    }
                }
            }
            None => {
                let _ = control.wait_timeout(wait.unwrap_or(FALLBACK_POLL).min(FALLBACK_POLL));
                if let Some(s) = sources.steering.as_mut() {
                    serve(s, graceful.button, &mut api_press);
                }
            }
        }
    }
}

/// Carry out the steering requests; a power-button press is served here, where its
/// release is timed.
fn serve(s: &mut Steering, button: Option<&dyn PowerButton>, api_press: &mut Option<Instant>) {
    s.requests.serve(&mut |command| match command {
        VmCommand::PowerButton => {
            let button = button.ok_or(CommandError::NoPowerButton)?;
            if api_press.is_none() {
                log::info!("management API: pressed the guest's {}", button.describe());
                button.press();
                *api_press = Some(Instant::now());
            }
            Ok(Answer::Done)
        }
        other => (s.handle)(other),
    });
}

/// While no VM runs (the management API serves on): wait until a stop signal arrives
/// (returned) or `requests` has something (served with `handle`, then `None`).
pub fn wait_idle(
    requests: &RunControl,
    handle: &mut dyn FnMut(VmCommand) -> Result<Answer, CommandError>,
) -> Option<i32> {
    if let Some(sig) = next_signal() {
        return Some(sig);
    }
    let mut fds = vec![libc::pollfd {
        fd: requests.event().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    if let Some(signals) = SIGNALS.get() {
        fds.push(libc::pollfd {
            fd: signals.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the call.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    if let Some(sig) = next_signal() {
        return Some(sig);
    }
    requests.serve(handle);
    None
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// Tests share the process-wide signalfd: run them one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// Send `sig` to this thread only (blocked here by `install`, so it waits for the
    /// signalfd; other test threads never see it).
    fn raise_here(sig: i32) {
        install().unwrap();
        // SAFETY: pthread_self names this live thread; the signal is blocked in it.
        unsafe { libc::pthread_kill(libc::pthread_self(), sig) };
    }

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
            Sources::default(),
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
        raise_here(libc::SIGTERM);
        let end = wait_for_exit(&control, &no_button(), Sources::default());
        assert_eq!(end.reason, VmExitReason::Signal(libc::SIGTERM));
        assert_eq!(end.waited, None);
        assert_eq!(name(libc::SIGHUP), "SIGHUP");
    }

    #[test]
    fn sigterm_presses_the_button_and_the_guest_powers_off() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let control = Arc::new(VmControl::new());
        let button = Button::default();
        raise_here(libc::SIGTERM);
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
        raise_here(libc::SIGTERM);
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
        raise_here(libc::SIGTERM);
        let end = with_button(&control, &button, Duration::ZERO);
        assert_eq!(end.reason, VmExitReason::Signal(libc::SIGTERM));
        assert_eq!(button.presses.load(Ordering::SeqCst), 0);

        let control = Arc::new(VmControl::new());
        raise_here(libc::SIGTERM);
        // SAFETY: pthread_self names this live thread, which outlives the helper below.
        let me = unsafe { libc::pthread_self() };
        let again = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: `me` is the test thread, alive until it has joined this one; the
            // signal is blocked there and waits for the signalfd.
            unsafe { libc::pthread_kill(me, libc::SIGINT) };
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
        raise_here(libc::SIGINT);
        let end = with_button(&control, &button, Duration::from_secs(30));
        assert_eq!(end.reason, VmExitReason::Signal(libc::SIGINT));
        assert_eq!(button.presses.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_api_presses_and_releases_the_button_without_a_forced_stop() {
        use crate::run_control::{StopKind, VmState};
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        install().unwrap();
        let control = Arc::new(VmControl::new());
        let button = Arc::new(Button::default());
        let rc = Arc::new(RunControl::new().unwrap());
        let asker = {
            let (rc, button) = (rc.clone(), button.clone());
            std::thread::spawn(move || {
                let t = Duration::from_secs(10);
                assert_eq!(rc.request(VmCommand::PowerButton, t), Ok(Answer::Done));
                assert_eq!(button.presses.load(Ordering::SeqCst), 1);
                // Released after PRESS_TIME; with a 300 ms timeout, no forced stop either.
                std::thread::sleep(Duration::from_millis(600));
                assert_eq!(button.releases.load(Ordering::SeqCst), 1);
                let state = rc.request(VmCommand::State, t);
                assert_eq!(state, Ok(Answer::State(VmState::Running)));
                rc.request(VmCommand::Stop(StopKind::Shutdown), t)
            })
        };
        let mut handle = |c: VmCommand| match c {
            VmCommand::Stop(_) => {
                control.request_exit(VmExitReason::Poweroff);
                Ok(Answer::Done)
            }
            _ => Ok(Answer::State(VmState::Running)),
        };
        let end = wait_for_exit(
            &control,
            &GracefulStop {
                button: Some(button.as_ref()),
                timeout: Duration::from_millis(300),
            },
            Sources {
                steering: Some(Steering {
                    requests: &rc,
                    handle: &mut handle,
                }),
                console: None,
            },
        );
        assert_eq!(asker.join().unwrap(), Ok(Answer::Done));
        assert_eq!(end.reason, VmExitReason::Poweroff);
        assert_eq!(end.waited, None);
        // Without a button the press is refused (then a stop ends the loop).
        let asker = {
            let rc = rc.clone();
            std::thread::spawn(move || {
                let t = Duration::from_secs(10);
                let press = rc.request(VmCommand::PowerButton, t);
                rc.request(VmCommand::Stop(StopKind::Shutdown), t).unwrap();
                press
            })
        };
        let control = VmControl::new();
        let mut handle = |c: VmCommand| {
            if matches!(c, VmCommand::Stop(_)) {
                control.request_exit(VmExitReason::Poweroff);
            }
            Ok(Answer::Done)
        };
        let end = wait_for_exit(
            &control,
            &no_button(),
            Sources {
                steering: Some(Steering {
                    requests: &rc,
                    handle: &mut handle,
                }),
                console: None,
            },
        );
        assert_eq!(asker.join().unwrap(), Err(CommandError::NoPowerButton));
        assert_eq!(end.reason, VmExitReason::Poweroff);
    }

    #[test]
    fn idle_waits_serve_requests_and_end_on_a_stop_signal() {
        use crate::run_control::VmState;
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        install().unwrap();
        let rc = Arc::new(RunControl::new().unwrap());
        let asker = {
            let rc = rc.clone();
            std::thread::spawn(move || rc.request(VmCommand::State, Duration::from_secs(10)))
        };
        let served = std::cell::Cell::new(0);
        let mut handle = |_| {
            served.set(served.get() + 1);
            Ok(Answer::State(VmState::Created))
        };
        while served.get() == 0 {
            assert_eq!(wait_idle(&rc, &mut handle), None);
        }
        assert_eq!(asker.join().unwrap(), Ok(Answer::State(VmState::Created)));
        raise_here(libc::SIGHUP);
        assert_eq!(wait_idle(&rc, &mut handle), Some(libc::SIGHUP));
    }

    /// The CPU time the calling thread has used.
    fn thread_cpu() -> Duration {
        // SAFETY: timespec is plain data that clock_gettime fills.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: `ts` is valid for writes.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    #[test]
    fn console_input_reaches_a_slow_guest_through_the_loop_without_spinning() {
        use crate::console_input::tests::{pipe, write_all, Fifo};
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        install().unwrap();
        let (r, w) = pipe();
        let fifo = Fifo::new(512);
        let mut input = StdinInput::new(r, false, fifo.clone()).unwrap();
        // More than one read's worth, so stdin stays readable while the device is full.
        let data: Vec<u8> = (0..3 * crate::console_input::READ_CHUNK as u32 + 77)
            .map(|i| (i % 251) as u8)
            .collect();
        write_all(&w, &data);
        let control = Arc::new(VmControl::new());
        let guest = {
            let (control, fifo, want) = (control.clone(), fifo.clone(), data.len());
            std::thread::spawn(move || {
                // A guest that reads nothing for a while (its FIFO full), then everything.
                std::thread::sleep(Duration::from_millis(500));
                let mut got = Vec::new();
                let t0 = Instant::now();
                while got.len() < want && t0.elapsed() < Duration::from_secs(10) {
                    got.extend(fifo.drain());
                    std::thread::sleep(Duration::from_millis(1));
                }
                control.request_exit(VmExitReason::Poweroff);
                got
            })
        };
        let cpu = thread_cpu();
        let end = wait_for_exit(
            &control,
            &no_button(),
            Sources {
                steering: None,
                console: Some(&mut input),
            },
        );
        let used = thread_cpu() - cpu;
        assert_eq!(end.reason, VmExitReason::Poweroff);
        assert_eq!(guest.join().unwrap(), data, "every byte, in order");
        assert!(
            used < Duration::from_millis(200),
            "the loop spun while the device was full: {used:?} of CPU"
        );
        // EOF takes stdin out of the loop; the loop still ends on a request.
        drop(w);
        let control = VmControl::new();
        control.request_exit(VmExitReason::Reset);
        let end = wait_for_exit(
            &control,
            &no_button(),
            Sources {
                steering: None,
                console: Some(&mut input),
            },
        );
        assert_eq!(end.reason, VmExitReason::Reset);
    }
}
