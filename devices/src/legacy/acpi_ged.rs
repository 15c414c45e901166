// SPDX-License-Identifier: Apache-2.0
//! ACPI Generic Event Device (ACPI 6.5 §5.6.9): how a hardware-reduced ACPI machine tells
//! the guest about a button press. The DSDT describes a `ACPI0013` device with this
//! device's interrupt and an `_EVT` method that reads [`GED_EVENTS`] and, for
//! [`EVENT_POWER_BUTTON`], does `Notify (\_SB.PWRB, 0x80)` on the `PNP0C0C` power button;
//! Linux's ACPI button driver turns that into `KEY_POWER`, which acpid or systemd-logind
//! answer with an orderly poweroff. [`AcpiGedPowerButton`] is the VMM's side
//! ([`crate::PowerButton`]); hotplug events will add bits.
//!
//! Nothing in rust-vmm models a GED (Cloud Hypervisor's lives inside its VMM), hence this
//! one: a single 32-bit event register, read-to-clear, and an edge-triggered interrupt.

use std::sync::{Arc, Mutex};

use crate::bus::BusDevice;
use crate::interrupt::InterruptLine;
use crate::PowerButton;

/// Size of the GED's register window.
pub const GED_WINDOW: u64 = 4;
/// Offset of the event register: the events since the last read, cleared by the read.
pub const GED_EVENTS: u64 = 0;
/// Event bit: the power button was pressed.
pub const EVENT_POWER_BUTTON: u32 = 1 << 0;

/// The GED's state.
pub struct AcpiGed {
    pending: u32,
    line: Arc<dyn InterruptLine>,
}

impl AcpiGed {
    pub fn new(line: Arc<dyn InterruptLine>) -> Self {
        Self { pending: 0, line }
    }

    /// Latch `events` and interrupt the guest.
    pub fn signal(&mut self, events: u32) {
        self.pending |= events;
        if let Err(e) = self.line.trigger() {
            log::warn!("acpi ged: raising the interrupt failed: {e}");
        }
    }
}

impl BusDevice for AcpiGed {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset == GED_EVENTS && data.len() == 4 {
            data.copy_from_slice(&self.pending.to_le_bytes());
            self.pending = 0;
        } else {
            log::debug!("acpi ged: {}-byte read at {offset:#x} ignored", data.len());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        log::debug!("acpi ged: {}-byte write at {offset:#x} ignored", data.len());
    }
}

/// The ACPI power button, signalled through a GED.
pub struct AcpiGedPowerButton(pub Arc<Mutex<AcpiGed>>);

impl PowerButton for AcpiGedPowerButton {
    fn press(&self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .signal(EVENT_POWER_BUTTON);
    }

    /// An ACPI power button press is one notification; there is nothing to let go of.
    fn release(&self) {}

    fn describe(&self) -> &'static str {
        "ACPI power button"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::CountingLine;

    fn read32(ged: &mut AcpiGed, offset: u64) -> u32 {
        let mut b = [0xaau8; 4];
        ged.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn a_press_interrupts_and_the_read_clears_it() {
        let line = Arc::new(CountingLine::default());
        let ged = Arc::new(Mutex::new(AcpiGed::new(line.clone())));
        let button = AcpiGedPowerButton(ged.clone());
        assert_eq!(read32(&mut ged.lock().unwrap(), GED_EVENTS), 0);
        button.press();
        button.release();
        assert_eq!(line.count(), 1);
        assert_eq!(
            read32(&mut ged.lock().unwrap(), GED_EVENTS),
            EVENT_POWER_BUTTON
        );
        assert_eq!(
            read32(&mut ged.lock().unwrap(), GED_EVENTS),
            0,
            "read to clear"
        );
        assert_eq!(button.describe(), "ACPI power button");
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let line = Arc::new(CountingLine::default());
        let mut ged = AcpiGed::new(line.clone());
        ged.signal(EVENT_POWER_BUTTON);
        let mut b = [0xaau8; 2];
        ged.read(GED_EVENTS, &mut b);
        assert_eq!(b, [0, 0]);
        ged.read(u64::MAX, &mut [0u8; 4]);
        ged.write(GED_EVENTS, &[0xff; 4]);
        assert_eq!(
            read32(&mut ged, GED_EVENTS),
            EVENT_POWER_BUTTON,
            "still pending"
        );
    }
}
