//! vCPU threads: run a vCPU, dispatch its exits to the buses, stop when the VM stops.

use std::sync::Arc;
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
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("vcpu{index}"))
        .spawn(move || {
            while control.exit_reason().is_none() {
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
        })
}

/// Stop and join every vCPU thread: signal each until it has left `KVM_RUN` and seen the
/// exit request (a signal sent just before it entered `KVM_RUN` would be missed, hence
/// the repeat). Gives up after `deadline` and returns the names of the threads that did
/// not stop; they are left behind (the process exits without them).
pub fn stop_all(threads: Vec<JoinHandle<()>>, deadline: Duration) -> Vec<String> {
    let start = Instant::now();
    // The vCPU that saw the guest's reset or poweroff is already on its way out: give
    // the threads a moment before signalling.
    for _ in 0..100 {
        if threads.iter().all(JoinHandle::is_finished) {
            break;
        }
        std::thread::yield_now();
    }
    let mut running = threads;
    let mut pause = Duration::from_micros(200);
    loop {
        let (done, left): (Vec<_>, Vec<_>) = running.into_iter().partition(|t| t.is_finished());
        for t in done {
            let _ = t.join();
        }
        running = left;
        if running.is_empty() {
            return Vec::new();
        }
        if start.elapsed() >= deadline {
            return running
                .iter()
                .map(|t| t.thread().name().unwrap_or("vcpu").to_string())
                .collect();
        }
        for t in &running {
            if let Err(e) = t.kill(kick_signal()) {
                log::debug!("kicking {:?}: {e}", t.thread().name());
            }
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

    #[test]
    fn a_thread_that_never_stops_is_left_behind_after_the_deadline() {
        install_kick_handler().unwrap();
        let stuck = std::thread::Builder::new()
            .name("vcpu7".into())
            .spawn(|| std::thread::sleep(Duration::from_secs(30)))
            .unwrap();
        let quick = std::thread::Builder::new()
            .name("vcpu0".into())
            .spawn(|| {})
            .unwrap();
        let t0 = Instant::now();
        let left = stop_all(vec![quick, stuck], Duration::from_millis(300));
        assert_eq!(left, vec!["vcpu7".to_string()]);
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
