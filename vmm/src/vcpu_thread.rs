// SPDX-License-Identifier: Apache-2.0
//! vCPU threads: run a vCPU, dispatch its exits to the buses, pause and resume when asked,
//! stop when the VM stops.
//!
//! Each thread is steered through its [`Steering`]: the VMM stores what it wants (Run,
//! Pause, Exit) and kicks the vCPU once — [`arch::VcpuKicker::kick`] sets KVM's
//! `immediate_exit`, so a `KVM_RUN` the thread enters after the request returns at once,
//! and one `SIGRTMIN` gets a `KVM_RUN` already in the guest out. The thread looks at what
//! is wanted before every run and after every interruption (the backend clears the kick
//! before it reports it, so a request is never missed and never needs a second kick). A
//! paused thread waits on its condvar, outside the guest; each thread reports where it is
//! (Running, Paused, Exited) under the same lock, which the VMM waits on with a deadline.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arch::{Vcpu, VcpuExit, VcpuKicker};
use devices::{Bus, VmControl, VmExitReason};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// How long the VMM waits for its vCPU threads after a stop request before it leaves
/// without them (a thread blocked outside `KVM_RUN`, e.g. in a write nobody reads).
pub const STOP_DEADLINE: Duration = Duration::from_secs(3);

/// The buses a vCPU's exits go to.
pub struct Buses {
    pub pio: Bus,
    pub mmio: Bus,
}

/// Signal used to knock a vCPU thread out of `KVM_RUN`.
fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn ignore_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Install the (empty) handler for the kick signal, so it interrupts `KVM_RUN` instead of
/// killing the process.
pub fn install_kick_handler() -> std::io::Result<()> {
    register_signal_handler(kick_signal(), ignore_signal).map_err(std::io::Error::from)
}

/// Where a vCPU thread is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuState {
    Running,
    Paused,
    Exited,
}

/// What the VMM wants of a vCPU thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Wanted {
    Run = 0,
    Pause = 1,
    Exit = 2,
}

/// The channel between the VMM and one vCPU thread: what is wanted (read by the thread
/// without a lock before every run), where the thread is, and the condvar both wait on.
struct Steering {
    wanted: AtomicU8,
    state: Mutex<VcpuState>,
    changed: Condvar,
}

impl Steering {
    fn new() -> Self {
        Self {
            wanted: AtomicU8::new(Wanted::Run as u8),
            state: Mutex::new(VcpuState::Running),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VcpuState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read with `SeqCst`, after the backend cleared a kick with `SeqCst`: either this sees
    /// the request, or the request's kick came after the clear and stays set.
    fn wanted(&self) -> Wanted {
        match self.wanted.load(Ordering::SeqCst) {
            0 => Wanted::Run,
            1 => Wanted::Pause,
            _ => Wanted::Exit,
        }
    }

    /// Ask for `wanted` (an exit request is never taken back).
    fn want(&self, wanted: Wanted) {
        let _state = self.lock();
        if self.wanted() != Wanted::Exit {
            self.wanted.store(wanted as u8, Ordering::SeqCst);
        }
        self.changed.notify_all();
    }

    fn report(&self, state: VcpuState) {
        *self.lock() = state;
        self.changed.notify_all();
    }

    /// Wait until `done(state)` or `deadline`; `true` when `done`.
    fn wait_for(&self, deadline: Instant, done: impl Fn(VcpuState) -> bool) -> bool {
        let mut state = self.lock();
        loop {
            if done(*state) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Reports the thread Exited however it ends (a panic included).
struct ExitReport(Arc<Steering>);

impl Drop for ExitReport {
    fn drop(&mut self) {
        self.0.report(VcpuState::Exited);
    }
}

/// A running vCPU thread and the handle to steer it.
pub struct VcpuThread {
    handle: JoinHandle<()>,
    steering: Arc<Steering>,
    kicker: Arc<dyn VcpuKicker>,
}

impl VcpuThread {
    fn name(&self) -> String {
        self.handle.thread().name().unwrap_or("vcpu").to_string()
    }

    /// Ask for `wanted` and kick the thread once: out of the guest, or out of its next
    /// `KVM_RUN` before it enters the guest.
    fn steer(&self, wanted: Wanted) {
        self.steering.want(wanted);
        self.kicker.kick();
        if !self.handle.is_finished() {
            if let Err(e) = self.handle.kill(kick_signal()) {
                log::debug!("kicking {}: {e}", self.name());
            }
        }
    }
}

/// Names of the threads not yet in a state `done` accepts by `deadline`.
fn wait_all(
    threads: &[VcpuThread],
    deadline: Instant,
    done: impl Fn(VcpuState) -> bool + Copy,
) -> Result<(), Vec<String>> {
    let late: Vec<String> = threads
        .iter()
        .filter(|t| !t.steering.wait_for(deadline, done))
        .map(VcpuThread::name)
        .collect();
    if late.is_empty() {
        Ok(())
    } else {
        Err(late)
    }
}

/// Pause every vCPU: each leaves the guest and waits. Returns when all are paused (or
/// have exited), or with the names of those that did not pause within `deadline` (they
/// pause as soon as they can; [`resume_all`] undoes it either way).
pub fn pause_all(threads: &[VcpuThread], deadline: Duration) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + deadline;
    for t in threads {
        t.steer(Wanted::Pause);
    }
    wait_all(threads, deadline, |s| s != VcpuState::Running)
}

/// Let every paused vCPU run the guest again. Returns when each has left its pause (or
/// exited), or with the names of those that did not within `deadline`.
pub fn resume_all(threads: &[VcpuThread], deadline: Duration) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + deadline;
    for t in threads {
        t.steering.want(Wanted::Run);
    }
    wait_all(threads, deadline, |s| s != VcpuState::Paused)
}

/// Port I/O of `size`-byte elements: a string instruction (`rep insb`, `rep outsw`) exits
/// once with all its elements; each is its own access to the device.
fn port_elements(size: usize, data_len: usize) -> usize {
    if size == 0 || size > data_len {
        data_len.max(1)
    } else {
        size
    }
}

/// Run `vcpu` on a new thread until the VM is asked to stop.
pub fn spawn<V: Vcpu + 'static>(
    index: u32,
    mut vcpu: V,
    buses: Arc<Buses>,
    control: Arc<VmControl>,
) -> std::io::Result<VcpuThread> {
    let steering = Arc::new(Steering::new());
    let kicker = vcpu.kicker();
    let steer = steering.clone();
    // The vCPU filter is in place before the thread's first KVM_RUN.
    let handle = crate::seccomp::spawn(
        format!("vcpu{index}"),
        crate::seccomp::ThreadKind::Vcpu,
        move || {
            let _report = ExitReport(steer.clone());
            loop {
                match steer.wanted() {
                    Wanted::Exit => break,
                    Wanted::Pause => {
                        wait_while_paused(&steer);
                        continue;
                    }
                    Wanted::Run => {}
                }
                if control.exit_reason().is_some() {
                    break;
                }
                match vcpu.run() {
                    Ok(VcpuExit::IoIn { port, size, data }) => {
                        let step = port_elements(size, data.len());
                        for element in data.chunks_mut(step) {
                            buses.pio.read(u64::from(port), element);
                        }
                    }
                    Ok(VcpuExit::IoOut { port, size, data }) => {
                        test_hook::maybe_panic(port);
                        let step = port_elements(size, data.len());
                        for element in data.chunks(step) {
                            buses.pio.write(u64::from(port), element);
                        }
                    }
                    Ok(VcpuExit::MmioRead { addr, data }) => {
                        buses.mmio.read(addr, data);
                    }
                    Ok(VcpuExit::MmioWrite { addr, data }) => {
                        buses.mmio.write(addr, data);
                    }
                    Ok(VcpuExit::Poweroff) => control.request_exit(VmExitReason::Poweroff),
                    Ok(VcpuExit::Reset) => control.request_exit(VmExitReason::Reset),
                    Ok(VcpuExit::GuestPanic) => control.request_exit(VmExitReason::GuestPanic),
                    Ok(VcpuExit::Interrupted | VcpuExit::Handled) => {}
                    Err(e) => control.request_exit(VmExitReason::Error(e.to_string())),
                }
            }
        },
    )?;
    Ok(VcpuThread {
        handle,
        steering,
        kicker,
    })
}

/// Out of the guest until resumed or told to exit.
fn wait_while_paused(steer: &Steering) {
    let mut state = steer.lock();
    *state = VcpuState::Paused;
    steer.changed.notify_all();
    while steer.wanted() == Wanted::Pause {
        state = steer.changed.wait(state).unwrap_or_else(|e| e.into_inner());
    }
    *state = VcpuState::Running;
    steer.changed.notify_all();
}

/// Stop and join every vCPU thread (the VM's exit must already be requested): each is told
/// to exit and kicked once; paused ones wake up. Gives up after `deadline` and returns the
/// names of the threads that did not stop; they are left behind (the process exits
/// without them).
pub fn stop_all(threads: Vec<VcpuThread>, deadline: Duration) -> Vec<String> {
    let deadline = Instant::now() + deadline;
    for t in &threads {
        t.steer(Wanted::Exit);
    }
    let mut stuck = Vec::new();
    for t in threads {
        if t.steering.wait_for(deadline, |s| s == VcpuState::Exited) {
            // Exited is reported as the thread's last act: the join is immediate.
            let _ = t.handle.join();
        } else {
            stuck.push(t.name());
        }
    }
    stuck
}

/// A way for the tests of the panic policy to make a vCPU thread panic: in debug builds
/// only, `POLYVISOR_TEST_PANIC_ON_PORT=N` panics the vCPU that writes to port N. Release
/// builds have no such hook.
mod test_hook {
    #[cfg(debug_assertions)]
    pub fn maybe_panic(port: u16) {
        static PORT: std::sync::OnceLock<Option<u16>> = std::sync::OnceLock::new();
        let armed = PORT.get_or_init(|| {
            std::env::var("POLYVISOR_TEST_PANIC_ON_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
        });
        if *armed == Some(port) {
            panic!("test panic: the guest wrote to port {port} (POLYVISOR_TEST_PANIC_ON_PORT)");
        }
    }

    #[cfg(not(debug_assertions))]
    pub fn maybe_panic(_port: u16) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_port_io_is_split_into_elements() {
        assert_eq!(port_elements(1, 4), 1);
        assert_eq!(port_elements(2, 8), 2);
        assert_eq!(port_elements(4, 4), 4);
        // A size the exit cannot hold, or none: one access of everything.
        assert_eq!(port_elements(0, 4), 4);
        assert_eq!(port_elements(8, 4), 4);
        assert_eq!(port_elements(1, 0), 1);
    }

    struct NoKick;
    impl VcpuKicker for NoKick {
        fn kick(&self) {}
    }

    fn fake(name: &str, body: impl FnOnce() + Send + 'static) -> VcpuThread {
        let steering = Arc::new(Steering::new());
        let report = ExitReport(steering.clone());
        VcpuThread {
            handle: std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let _report = report;
                    body()
                })
                .unwrap(),
            steering,
            kicker: Arc::new(NoKick),
        }
    }

    /// A vCPU whose `run` blocks (as `KVM_RUN` in a halted guest does) until it is kicked,
    /// and which forgets the kick when it reports it, as the backends do.
    struct Sleeper(Arc<Bell>);

    #[derive(Default)]
    struct Bell {
        rung: Mutex<bool>,
        wake: Condvar,
    }

    impl VcpuKicker for Bell {
        fn kick(&self) {
            *self.rung.lock().unwrap() = true;
            self.wake.notify_all();
        }
    }

    impl Vcpu for Sleeper {
        fn run(&mut self) -> arch::Result<VcpuExit<'_>> {
            let mut rung = self.0.rung.lock().unwrap();
            while !*rung {
                rung = self.0.wake.wait(rung).unwrap();
            }
            *rung = false;
            Ok(VcpuExit::Interrupted)
        }
        fn kicker(&self) -> Arc<dyn VcpuKicker> {
            self.0.clone()
        }
    }

    #[test]
    fn one_kick_each_pauses_resumes_and_stops_vcpus_that_sit_in_run() {
        install_kick_handler().unwrap();
        let buses = Arc::new(Buses {
            pio: Bus::new(),
            mmio: Bus::new(),
        });
        let control = Arc::new(VmControl::new());
        let threads: Vec<VcpuThread> = (0..4)
            .map(|i| {
                let vcpu = Sleeper(Arc::new(Bell::default()));
                spawn(i, vcpu, buses.clone(), control.clone()).unwrap()
            })
            .collect();
        let t0 = Instant::now();
        for _ in 0..100 {
            pause_all(&threads, Duration::from_secs(5)).unwrap();
            assert!(threads
                .iter()
                .all(|t| *t.steering.lock() == VcpuState::Paused));
            resume_all(&threads, Duration::from_secs(5)).unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(20));
        control.request_exit(VmExitReason::Poweroff);
        assert!(stop_all(threads, Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn a_thread_that_never_stops_is_left_behind_after_the_deadline() {
        install_kick_handler().unwrap();
        let stuck = fake("vcpu7", || std::thread::sleep(Duration::from_secs(30)));
        let quick = fake("vcpu0", || {});
        let t0 = Instant::now();
        let left = stop_all(vec![quick, stuck], Duration::from_millis(300));
        assert_eq!(left, vec!["vcpu7".to_string()]);
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
