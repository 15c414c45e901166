//! vCPU threads: run a vCPU, dispatch its exits to the buses, stop when the VM stops.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arch::{Vcpu, VcpuExit};
use devices::{Bus, VmControl, VmExitReason};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

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
                    Ok(VcpuExit::IoIn { port, data }) => {
                        buses.pio.read(u64::from(port), data);
                    }
                    Ok(VcpuExit::IoOut { port, data }) => {
                        buses.pio.write(u64::from(port), data);
                    }
                    Ok(VcpuExit::MmioRead { addr, data }) => {
                        buses.mmio.read(addr, data);
                    }
                    Ok(VcpuExit::MmioWrite { addr, data }) => {
                        buses.mmio.write(addr, data);
                    }
                    Ok(VcpuExit::Poweroff) => control.request_exit(VmExitReason::Poweroff),
                    Ok(VcpuExit::Reset) => control.request_exit(VmExitReason::Reset),
                    Ok(VcpuExit::Interrupted | VcpuExit::Handled) => {}
                    Err(e) => control.request_exit(VmExitReason::Error(e.to_string())),
                }
            }
        })
}

/// Stop and join every vCPU thread: signal each until it has left `KVM_RUN` and seen the
/// exit request (a signal sent just before it entered `KVM_RUN` would be missed, hence
/// the repeat).
pub fn stop_all(threads: Vec<JoinHandle<()>>) {
    for t in threads {
        // The vCPU that saw the guest's reset or poweroff is already on its way out: give
        // it a moment before signalling.
        for _ in 0..100 {
            if t.is_finished() {
                break;
            }
            std::thread::yield_now();
        }
        while !t.is_finished() {
            if let Err(e) = t.kill(kick_signal()) {
                log::debug!("kicking {:?}: {e}", t.thread().name());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = t.join();
    }
}
