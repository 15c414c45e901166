// SPDX-License-Identifier: Apache-2.0
//! vCPU threads: run a vCPU, dispatch its exits to the buses, pause and resume when asked,
//! stop when the VM stops.
//!
//! Each thread has a state (Running, Paused, Exited) that the VMM drives: it sets what it
//! wants under the thread's lock and kicks the thread out of `KVM_RUN` with `SIGRTMIN`,
//! repeating the kick until the thread reports the state (a kick that lands just before
//! `KVM_RUN` is entered would otherwise be missed). A paused thread waits on its condvar,
//! outside the guest, until it is resumed or the VM stops.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arch::{Vcpu, VcpuExit};
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

/// What the VMM wants of a vCPU thread, and where the thread is.
struct Steering {
    pause: bool,
    state: VcpuState,
}

struct Shared {
    steering: Mutex<Steering>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Steering> {
        self.steering.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: VcpuState) {
        self.lock().state = state;
        self.changed.notify_all();
    }
}

/// A running vCPU thread and the handle to steer it.
pub struct VcpuThread {
    handle: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl VcpuThread {
    fn name(&self) -> String {
        self.handle.thread().name().unwrap_or("vcpu").to_string()
    }

    fn kick(&self) {
        if let Err(e) = self.handle.kill(kick_signal()) {
            log::debug!("kicking {}: {e}", self.name());
        }
    }

    /// The thread's state.
    pub fn state(&self) -> VcpuState {
        if self.handle.is_finished() {
            return VcpuState::Exited;
        }
        self.shared.lock().state
    }
}

/// Pause every vCPU: each leaves the guest and waits. Returns when all are paused (or
/// have exited), or with the names of those that did not pause within `deadline` (they
/// pause as soon as they can; [`resume_all`] undoes it either way).
pub fn pause_all(threads: &[VcpuThread], deadline: Duration) -> Result<(), Vec<String>> {
    for t in threads {
        t.shared.lock().pause = true;
    }
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        let running: Vec<&VcpuThread> = threads
            .iter()
            .filter(|t| t.state() == VcpuState::Running)
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= deadline {
            return Err(running.iter().map(|t| t.name()).collect());
        }
        for t in &running {
            t.kick();
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Let every paused vCPU run the guest again.
pub fn resume_all(threads: &[VcpuThread]) {
    for t in threads {
        t.shared.lock().pause = false;
        t.shared.changed.notify_all();
    }
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
    let shared = Arc::new(Shared {
        steering: Mutex::new(Steering {
            pause: false,
            state: VcpuState::Running,
        }),
        changed: Condvar::new(),
    });
    let steer = shared.clone();
    let handle = std::thread::Builder::new()
        .name(format!("vcpu{index}"))
        .spawn(move || {
            while control.exit_reason().is_none() {
                if steer.lock().pause {
                    wait_while_paused(&steer, &control);
                    continue;
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
            steer.set_state(VcpuState::Exited);
        })?;
    Ok(VcpuThread { handle, shared })
}

/// Out of the guest until resumed or the VM stops.
fn wait_while_paused(steer: &Shared, control: &VmControl) {
    let mut s = steer.lock();
    s.state = VcpuState::Paused;
    steer.changed.notify_all();
    while s.pause && control.exit_reason().is_none() {
        s = steer.changed.wait(s).unwrap_or_else(|e| e.into_inner());
    }
    s.state = VcpuState::Running;
    steer.changed.notify_all();
}

/// Stop and join every vCPU thread (the VM's exit must already be requested): wake the
/// paused ones and kick the rest out of `KVM_RUN` until they have seen the request (a
/// signal sent just before a thread entered `KVM_RUN` would be missed, hence the repeat).
/// Gives up after `deadline` and returns the names of the threads that did not stop; they
/// are left behind (the process exits without them).
pub fn stop_all(threads: Vec<VcpuThread>, deadline: Duration) -> Vec<String> {
    let start = Instant::now();
    for t in &threads {
        t.shared.changed.notify_all();
    }
    // The vCPU that saw the guest's reset or poweroff is already on its way out: give
    // the threads a moment before signalling.
    for _ in 0..100 {
        if threads.iter().all(|t| t.handle.is_finished()) {
            break;
        }
        std::thread::yield_now();
    }
    let mut running = threads;
    let mut pause = Duration::from_micros(200);
    loop {
        let (done, left): (Vec<_>, Vec<_>) =
            running.into_iter().partition(|t| t.handle.is_finished());
        for t in done {
            let _ = t.handle.join();
        }
        running = left;
        if running.is_empty() {
            return Vec::new();
        }
        if start.elapsed() >= deadline {
            return running.iter().map(VcpuThread::name).collect();
        }
        for t in &running {
            t.shared.changed.notify_all();
            t.kick();
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
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

    fn fake(name: &str, body: impl FnOnce() + Send + 'static) -> VcpuThread {
        VcpuThread {
            handle: std::thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .unwrap(),
            shared: Arc::new(Shared {
                steering: Mutex::new(Steering {
                    pause: false,
                    state: VcpuState::Running,
                }),
                changed: Condvar::new(),
            }),
        }
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
