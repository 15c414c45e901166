// SPDX-License-Identifier: Apache-2.0
//! Why a vCPU came back to the VMM.

/// A vCPU exit in the VMM's words. Borrowed data points into the backend's shared run
/// structure and must be filled (reads) before the next `run`.
#[derive(Debug)]
pub enum VcpuExit<'a> {
    /// Port input: fill `data` from the device at `port`, `size` bytes (1, 2 or 4) per
    /// access; a string instruction (`rep insb`) brings several elements at once.
    IoIn {
        port: u16,
        size: usize,
        data: &'a mut [u8],
    },
    /// Port output of `data` to `port`, `size` bytes per access.
    IoOut {
        port: u16,
        size: usize,
        data: &'a [u8],
    },
    /// MMIO read: fill `data` from the device at `addr`.
    MmioRead { addr: u64, data: &'a mut [u8] },
    /// MMIO write of `data` to `addr`.
    MmioWrite { addr: u64, data: &'a [u8] },
    /// The guest powered the machine off.
    Poweroff,
    /// The guest reset the machine (or faulted in a way real hardware resets on).
    Reset,
    /// The guest's kernel panicked and said so the architecture's way (s390x: the
    /// disabled wait Linux loads on a panic).
    GuestPanic,
    /// The run was cut short by a signal or `set_immediate_exit`; nothing to do.
    Interrupted,
    /// The backend handled an architecture-specific exit itself; run again.
    Handled,
    /// The vCPU is in its architecture's stopped state (s390x: it stopped itself or was
    /// stopped with SIGP STOP, or has not been started yet): the VMM parks its thread,
    /// without spinning, until [`VcpuExit::Wake`] names it, a pause or the end, then runs
    /// it again (the backend takes the orders left for it, and says `Stopped` again if it
    /// is still stopped).
    Stopped,
    /// The backend handled an exit that left an order for vCPU `vcpu` (s390x: SIGP START,
    /// RESTART, a reset, SET PREFIX, STORE STATUS): the VMM wakes that vCPU's thread if
    /// it is parked stopped; this one runs again.
    Wake { vcpu: u32 },
}
