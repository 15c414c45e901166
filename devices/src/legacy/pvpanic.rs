// SPDX-License-Identifier: Apache-2.0
//! pvpanic: the one-register device a guest writes to when its kernel panics (QEMU's
//! `pvpanic` ISA/MMIO device, which crosvm also offers; Linux's `pvpanic-mmio` driver binds
//! it from ACPI `QEMU0001` on x86 or the device-tree compatible `qemu,pvpanic-mmio` on arm64).
//!
//! Guest interface (QEMU's docs/specs/pvpanic.rst): a byte register. Reading it returns the
//! events the device supports; writing bit 0 (`PVPANIC_PANICKED`) says the guest panicked,
//! bit 1 (`PVPANIC_CRASH_LOADED`) that it is about to run a crash kernel. A panic ends the
//! run, so a script can tell a crashed guest from one that powered off or reset; a crash
//! kernel being loaded is logged and the guest goes on.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::vm_control::{VmControl, VmExitReason};

/// The guest kernel panicked.
pub const PANICKED: u8 = 1 << 0;
/// The guest is about to run its crash kernel (kdump).
pub const CRASH_LOADED: u8 = 1 << 1;
/// Size of the register window (one byte register; an MMIO window is a page).
pub const WINDOW: u64 = 1;

/// A pvpanic device that ends the VM through `control` when the guest panics.
pub struct PvPanic {
    control: Arc<VmControl>,
    crash_loaded: bool,
}

impl PvPanic {
    pub fn new(control: Arc<VmControl>) -> Self {
        Self {
            control,
            crash_loaded: false,
        }
    }
}

impl BusDevice for PvPanic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (0, Some(first)) = (offset, data.first_mut()) {
            *first = PANICKED | CRASH_LOADED;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (0, Some(&value)) = (offset, data.first()) else {
            return;
        };
        if value & PANICKED != 0 {
            self.control.request_exit(VmExitReason::GuestPanic);
        } else if value & CRASH_LOADED != 0 && !self.crash_loaded {
            self.crash_loaded = true;
            log::warn!("pvpanic: the guest panicked and is running its crash kernel");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_its_events_and_ends_the_vm_on_a_panic() {
        let control = Arc::new(VmControl::new());
        let mut dev = PvPanic::new(control.clone());
        let mut b = [0xffu8; 4];
        dev.read(0, &mut b);
        assert_eq!(b, [PANICKED | CRASH_LOADED, 0, 0, 0]);
        dev.write(0, &[CRASH_LOADED]);
        dev.write(1, &[PANICKED]); // not the register
        dev.write(0, &[]);
        assert_eq!(control.exit_reason(), None);
        dev.write(0, &[PANICKED]);
        assert_eq!(control.exit_reason(), Some(VmExitReason::GuestPanic));
    }
}
