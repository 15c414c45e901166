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
//! (Running, Paused, Stopped, Exited) under the same lock, which the VMM waits on with a
//! deadline.
//!
//! Stopped is the guest's own state for a vCPU (s390x: SIGP STOP, or a secondary CPU not
//! started yet; `arch::VcpuExit::Stopped`): the thread parks on the same condvar until
//! another vCPU leaves it an order (`arch::VcpuExit::Wake` names it: [`Peers::wake`]), or
//! the VMM wants a pause or the end. A pause of a stopped vCPU pauses its thread; resumed,
//! it is stopped again until started.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
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

impl Buses {
    /// What the management API's `vm.counters` reports: the guest's accesses that no
    /// device claimed, per bus.
    pub fn counters(&self) -> crate::run_control::Counters {
        let one = |n: u64| {
            [("unclaimed_accesses".to_string(), n)]
                .into_iter()
                .collect()
        };
        [
            ("pio".to_string(), one(self.pio.unclaimed_accesses())),
            ("mmio".to_string(), one(self.mmio.unclaimed_accesses())),
        ]
        .into_iter()
        .collect()
    }
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
    /// Parked in the guest's stopped state, waiting for another vCPU to start it.
    Stopped,
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
    /// Exits from the guest: port I/O, MMIO, the rest (for `vm.counters`).
    exits: [AtomicU64; 3],
    /// Another vCPU left this one an order (set under `state`'s lock, so a parked thread
    /// never misses it).
    woken: AtomicBool,
}

impl Steering {
    fn new() -> Self {
        Self {
            wanted: AtomicU8::new(Wanted::Run as u8),
            state: Mutex::new(VcpuState::Running),
            changed: Condvar::new(),
            exits: Default::default(),
            woken: AtomicBool::new(false),
        }
    }

    /// Wake the thread if it is parked stopped (or make its next park return at once).
    fn wake(&self) {
        let _state = self.lock();
        self.woken.store(true, Ordering::SeqCst);
        self.changed.notify_all();
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

/// The steering of every vCPU of one VM, so that one vCPU can wake another.
pub struct Peers(Vec<Arc<Steering>>);

impl Peers {
    /// Steering for `count` vCPU threads.
    pub fn new(count: usize) -> Arc<Self> {
        Arc::new(Self(
            (0..count).map(|_| Arc::new(Steering::new())).collect(),
        ))
    }

    /// Wake vCPU `index`'s thread if it is parked stopped (an index the VM does not have
    /// is ignored: it comes from the backend, which checked it).
    fn wake(&self, index: u32) {
        if let Some(s) = self.0.get(index as usize) {
            s.wake();
        }
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
    wait_all(threads, deadline, |s| {
        matches!(s, VcpuState::Paused | VcpuState::Exited)
    })
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

/// Run `vcpu` on a new thread until the VM is asked to stop; it is steered through
/// `peers`' entry `index` and wakes the others through `peers`.
pub fn spawn<V: Vcpu + 'static>(
    index: u32,
    mut vcpu: V,
    buses: Arc<Buses>,
    control: Arc<VmControl>,
    peers: &Arc<Peers>,
) -> std::io::Result<VcpuThread> {
    let steering = peers
        .0
        .get(index as usize)
        .cloned()
        .ok_or_else(|| std::io::Error::other(format!("no steering for vCPU {index}")))?;
    let peers = peers.clone();
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
                if control.exit_requested() {
                    break;
                }
                let exit = vcpu.run();
                let kind = match &exit {
                    Ok(VcpuExit::IoIn { .. } | VcpuExit::IoOut { .. }) => 0,
                    Ok(VcpuExit::MmioRead { .. } | VcpuExit::MmioWrite { .. }) => 1,
                    _ => 2,
                };
                steer.exits[kind].fetch_add(1, Ordering::Relaxed);
                match exit {
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
                    Ok(VcpuExit::Stopped) => wait_while_stopped(&steer),
                    Ok(VcpuExit::Wake { vcpu }) => peers.wake(vcpu),
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

/// Each vCPU's exits by kind, for `vm.counters` (`vcpu0`: `pio_exits`, `mmio_exits`,
/// `other_exits`).
pub fn counters(threads: &[VcpuThread]) -> crate::run_control::Counters {
    threads
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let names = ["pio_exits", "mmio_exits", "other_exits"];
            let counts = names
                .iter()
                .zip(&t.steering.exits)
                .map(|(n, c)| (n.to_string(), c.load(Ordering::Relaxed)))
                .collect();
            (format!("vcpu{i}"), counts)
        })
        .collect()
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

/// Parked in the guest's stopped state until another vCPU leaves an order or the VMM
/// wants something else (a pause, the end); then the caller runs the vCPU again, which
/// takes its orders (or says Stopped again).
fn wait_while_stopped(steer: &Steering) {
    let mut state = steer.lock();
    if steer.woken.swap(false, Ordering::SeqCst) {
        return;
    }
    *state = VcpuState::Stopped;
    steer.changed.notify_all();
    while steer.wanted() == Wanted::Run && !steer.woken.swap(false, Ordering::SeqCst) {
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
        let peers = Peers::new(4);
        let threads: Vec<VcpuThread> = (0..4)
            .map(|i| {
                let vcpu = Sleeper(Arc::new(Bell::default()));
                spawn(i, vcpu, buses.clone(), control.clone(), &peers).unwrap()
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

    /// A vCPU stopped until `started` (counting its runs), and one that starts it when
    /// told to (then sits in `run` as a halted guest does).
    struct StoppedCpu {
        started: Arc<AtomicBool>,
        runs: Arc<std::sync::atomic::AtomicUsize>,
        bell: Arc<Bell>,
    }

    impl Vcpu for StoppedCpu {
        fn run(&mut self) -> arch::Result<VcpuExit<'_>> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            if !self.started.load(Ordering::SeqCst) {
                return Ok(VcpuExit::Stopped);
            }
            Sleeper(self.bell.clone())
                .run()
                .map(|_| VcpuExit::Interrupted)
        }
        fn kicker(&self) -> Arc<dyn VcpuKicker> {
            self.bell.clone()
        }
    }

    struct Starter {
        go: Arc<AtomicBool>,
        target: Arc<AtomicBool>,
        bell: Arc<Bell>,
    }

    impl Vcpu for Starter {
        fn run(&mut self) -> arch::Result<VcpuExit<'_>> {
            if self.go.swap(false, Ordering::SeqCst) {
                self.target.store(true, Ordering::SeqCst);
                return Ok(VcpuExit::Wake { vcpu: 1 });
            }
            let mut rung = self.bell.rung.lock().unwrap();
            // A short sleep stands for the guest running: it looks at `go` again.
            if !*rung {
                rung = self
                    .bell
                    .wake
                    .wait_timeout(rung, Duration::from_millis(5))
                    .unwrap()
                    .0;
            }
            *rung = false;
            Ok(VcpuExit::Interrupted)
        }
        fn kicker(&self) -> Arc<dyn VcpuKicker> {
            self.bell.clone()
        }
    }

    #[test]
    fn a_stopped_vcpu_parks_pauses_with_the_rest_and_is_woken_by_another() {
        install_kick_handler().unwrap();
        let buses = Arc::new(Buses {
            pio: Bus::new(),
            mmio: Bus::new(),
        });
        let control = Arc::new(VmControl::new());
        let peers = Peers::new(2);
        let (go, started) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let starter = Starter {
            go: go.clone(),
            target: started.clone(),
            bell: Arc::new(Bell::default()),
        };
        let stopped = StoppedCpu {
            started: started.clone(),
            runs: runs.clone(),
            bell: Arc::new(Bell::default()),
        };
        let threads = vec![
            spawn(0, starter, buses.clone(), control.clone(), &peers).unwrap(),
            spawn(1, stopped, buses.clone(), control.clone(), &peers).unwrap(),
        ];
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(threads[1]
            .steering
            .wait_for(deadline, |s| s == VcpuState::Stopped));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "parked: no spinning through run"
        );
        // Pause and resume with a stopped vCPU: it pauses, then is stopped again.
        pause_all(&threads, Duration::from_secs(5)).unwrap();
        assert!(threads
            .iter()
            .all(|t| *t.steering.lock() == VcpuState::Paused));
        resume_all(&threads, Duration::from_secs(5)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(threads[1]
            .steering
            .wait_for(deadline, |s| s == VcpuState::Stopped));
        let before = runs.load(Ordering::SeqCst);
        // vCPU 0 starts vCPU 1 (SIGP START): it runs again.
        go.store(true, Ordering::SeqCst);
        let t0 = Instant::now();
        while runs.load(Ordering::SeqCst) == before {
            assert!(t0.elapsed() < Duration::from_secs(5), "never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(threads[1]
            .steering
            .wait_for(deadline, |s| s == VcpuState::Running));
        control.request_exit(VmExitReason::Poweroff);
        assert!(stop_all(threads, Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn a_vcpu_stopped_for_good_still_ends_with_the_vm() {
        install_kick_handler().unwrap();
        let buses = Arc::new(Buses {
            pio: Bus::new(),
            mmio: Bus::new(),
        });
        let control = Arc::new(VmControl::new());
        let peers = Peers::new(1);
        let vcpu = StoppedCpu {
            started: Arc::new(AtomicBool::new(false)),
            runs: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            bell: Arc::new(Bell::default()),
        };
        let threads = vec![spawn(0, vcpu, buses, control.clone(), &peers).unwrap()];
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(threads[0]
            .steering
            .wait_for(deadline, |s| s == VcpuState::Stopped));
        control.request_exit(VmExitReason::Poweroff);
        let t0 = Instant::now();
        assert!(stop_all(threads, Duration::from_secs(5)).is_empty());
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
