// SPDX-License-Identifier: Apache-2.0
//! The fixed registers of a hardware-reduced ACPI platform that end a VM: the ACPI sleep
//! control register, the sleep status register and the reset register, three byte-wide
//! I/O ports the firmware's FADT points at (`SLEEP_CONTROL_REG`, `SLEEP_STATUS_REG`,
//! `RESET_REG`).
//!
//! A guest powers off by writing `SLP_EN | SLP_TYP` to the sleep control register, with
//! `SLP_TYP` the value its `\_S5` package names (ACPI 6.5, 4.8.3.7); it resets by writing
//! the FADT's `RESET_VALUE` to the reset register. Anything else (other sleep states,
//! clearing `WAK_STS`) is logged at debug level and ignored: this machine does not sleep.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::vm_control::{VmControl, VmExitReason};

/// Offset of the sleep control register in the device's window.
pub const SLEEP_CONTROL: u64 = 0;
/// Offset of the sleep status register (reads 0: `WAK_STS` never set, nothing sleeps).
pub const SLEEP_STATUS: u64 = 1;
/// Offset of the reset register.
pub const RESET: u64 = 2;
/// Ports the device decodes.
pub const WINDOW: u64 = 3;
/// What the guest writes to [`RESET`] to reset the machine (the FADT's `RESET_VALUE`).
pub const RESET_VALUE: u8 = 0x01;
/// `SLP_TYP` of S5 (soft off), as the DSDT's `\_S5` package announces it.
pub const SLP_TYP_S5: u8 = 5;

/// Sleep control register: `SLP_EN` starts the transition to the state in `SLP_TYP`.
const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0b111;

/// ACPI sleep control register (with the sleep status and reset registers beside it).
pub struct AcpiPm {
    control: Arc<VmControl>,
}

impl AcpiPm {
    /// Registers that end the VM through `control`.
    pub fn new(control: Arc<VmControl>) -> Self {
        Self { control }
    }

    fn write_sleep_control(&self, value: u8) {
        let slp_typ = (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
        if value & SLP_EN == 0 {
            log::debug!("acpi: sleep control write {value:#x} without SLP_EN ignored");
        } else if slp_typ == SLP_TYP_S5 {
            log::debug!("acpi: sleep control: S5, powering off");
            self.control.request_exit(VmExitReason::Poweroff);
        } else {
            log::debug!("acpi: sleep control: SLP_TYP {slp_typ} is no state this machine has");
        }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        match offset {
            SLEEP_CONTROL => self.write_sleep_control(value),
            RESET if value == RESET_VALUE => {
                log::debug!("acpi: reset register written");
                self.control.request_exit(VmExitReason::Reset);
            }
            _ => log::debug!("acpi: write {value:#x} at offset {offset} ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> (AcpiPm, Arc<VmControl>) {
        let control = Arc::new(VmControl::new());
        (AcpiPm::new(control.clone()), control)
    }

    #[test]
    fn s5_with_slp_en_powers_off() {
        let (mut d, c) = device();
        // What Linux's acpi_hw_extended_sleep writes for SLP_TYP 5: 5 << 2 | 1 << 5.
        d.write(SLEEP_CONTROL, &[0x34]);
        assert_eq!(c.exit_reason(), Some(VmExitReason::Poweroff));
    }

    #[test]
    fn reset_value_resets() {
        let (mut d, c) = device();
        d.write(RESET, &[RESET_VALUE]);
        assert_eq!(c.exit_reason(), Some(VmExitReason::Reset));
    }

    #[test]
    fn other_writes_are_ignored() {
        let (mut d, c) = device();
        d.write(SLEEP_CONTROL, &[SLP_TYP_S5 << 2]); // no SLP_EN
        d.write(SLEEP_CONTROL, &[SLP_EN | 3 << 2]); // S3
        d.write(SLEEP_CONTROL, &[SLP_EN]); // S0
        d.write(SLEEP_STATUS, &[0x80]); // clearing WAK_STS
        d.write(RESET, &[0x06]);
        d.write(RESET, &[]);
        d.write(7, &[0x34]);
        assert_eq!(c.exit_reason(), None);
    }

    #[test]
    fn registers_read_zero() {
        let (mut d, c) = device();
        for offset in [SLEEP_CONTROL, SLEEP_STATUS, RESET] {
            let mut b = [0xffu8; 2];
            d.read(offset, &mut b);
            assert_eq!(b, [0, 0]);
        }
        assert_eq!(c.exit_reason(), None);
    }
}
