// SPDX-License-Identifier: Apache-2.0
//! The PC's reset control register at I/O port 0xCF9 (Intel ICH/PIIX `RST_CNT`), which
//! Linux's `reboot=p` (when the chipset is known to have it) and `reboot=q` write:
//! `inb(0xcf9)`, then the value with `SYS_RST` (bit 1) set, then with `RST_CPU` (bit 2)
//! and `FULL_RST` (bit 3) added. A write with `RST_CPU` set resets the machine, which
//! ends the VM; the other bits are kept and read back, as the chipset does.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::vm_control::{VmControl, VmExitReason};

/// The register's port on a PC.
pub const PORT: u64 = 0xcf9;
/// Ports the device decodes (the one register).
pub const WINDOW: u64 = 1;

/// `SYS_RST`: the reset `RST_CPU` starts is a hard one.
const SYS_RST: u8 = 1 << 1;
/// `RST_CPU`: writing it set resets the CPU (and, with `SYS_RST`, the platform).
pub const RST_CPU: u8 = 1 << 2;
/// `FULL_RST`: power-cycle the platform on a hard reset.
const FULL_RST: u8 = 1 << 3;

/// The reset control register.
pub struct ResetControl {
    control: Arc<VmControl>,
    value: u8,
}

impl ResetControl {
    /// A register whose reset requests go to `control`.
    pub fn new(control: Arc<VmControl>) -> Self {
        Self { control, value: 0 }
    }
}

impl BusDevice for ResetControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = self.value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        if offset != 0 {
            return;
        }
        if value & RST_CPU != 0 {
            let kind = if value & SYS_RST != 0 { "hard" } else { "soft" };
            log::debug!("reset control: {value:#x} written, {kind} reset");
            self.control.request_exit(VmExitReason::Reset);
        } else {
            self.value = value & (SYS_RST | FULL_RST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> (ResetControl, Arc<VmControl>) {
        let control = Arc::new(VmControl::new());
        (ResetControl::new(control.clone()), control)
    }

    fn read(d: &mut ResetControl) -> u8 {
        let mut b = [0xffu8];
        d.read(0, &mut b);
        b[0]
    }

    #[test]
    fn linux_cf9_sequence_resets() {
        // arch/x86/kernel/reboot.c, BOOT_CF9_SAFE with a cold reboot (reboot code 0x0e).
        let (mut d, c) = device();
        let cf9 = read(&mut d) & !0x0e;
        d.write(0, &[cf9 | SYS_RST]);
        assert_eq!(c.exit_reason(), None, "SYS_RST alone only selects the kind");
        assert_eq!(read(&mut d), SYS_RST);
        d.write(0, &[cf9 | 0x0e]);
        assert_eq!(c.exit_reason(), Some(VmExitReason::Reset));
    }

    #[test]
    fn warm_reset_and_rst_cpu_alone_reset() {
        for value in [0x06, RST_CPU, 0xff] {
            let (mut d, c) = device();
            d.write(0, &[value]);
            assert_eq!(c.exit_reason(), Some(VmExitReason::Reset), "{value:#x}");
        }
    }

    #[test]
    fn other_writes_are_kept_or_ignored() {
        let (mut d, c) = device();
        d.write(0, &[0xf3]); // no RST_CPU: SYS_RST kept, the rest reserved
        assert_eq!(read(&mut d), SYS_RST);
        d.write(0, &[FULL_RST]);
        assert_eq!(read(&mut d), FULL_RST);
        d.write(0, &[]);
        d.write(1, &[0xff]);
        let mut wide = [0xffu8; 4];
        d.read(0, &mut wide);
        assert_eq!(wide, [FULL_RST, 0, 0, 0]);
        assert_eq!(c.exit_reason(), None);
    }
}
