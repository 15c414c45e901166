// SPDX-License-Identifier: Apache-2.0
//! The code at the PC's BIOS reset vector, F000:FFF0 (physical 0xFFFF0).
//!
//! A PC's firmware has its power-on code there, and operating systems jump to it to reboot
//! through the BIOS. Linux does so by default on this machine: with no `reboot=` option,
//! a hardware-reduced ACPI platform makes it pick `BOOT_EFI` (arch/x86/kernel/reboot.c,
//! `reboot_init`), which does nothing without EFI runtime services, and then `BOOT_BIOS`,
//! `machine_real_restart()`: back to real mode and a far jump to F000:FFF0. It never
//! returns from that jump to try anything else, so whatever sits there decides whether the
//! reboot happens. Polyvisor has no firmware; these few bytes do what a firmware's reset
//! path does, reset the machine, here through the FADT's reset register (which ends the
//! VM with `guest reset`). `reboot=b` takes the same path.

/// Physical address of the reset vector (F000:FFF0).
pub const RESET_VECTOR: u64 = 0xf_fff0;
/// Bytes from the reset vector to the end of the BIOS area (1 MiB).
pub const RESET_VECTOR_LEN: usize = 16;

/// 16-bit real-mode code that writes `value` to I/O `port`, then halts for good:
///
/// ```text
/// mov dx, port    ; BA lo hi
/// mov al, value   ; B0 value
/// out dx, al      ; EE
/// cli             ; FA
/// hlt             ; F4      <- the jmp comes back here
/// jmp short -3    ; EB FD
/// ```
///
/// padded with `hlt` to the end of the BIOS area.
pub fn code(port: u16, value: u8) -> [u8; RESET_VECTOR_LEN] {
    let [lo, hi] = port.to_le_bytes();
    let prog = [0xba, lo, hi, 0xb0, value, 0xee, 0xfa, 0xf4, 0xeb, 0xfd];
    let mut bytes = [0xf4; RESET_VECTOR_LEN];
    bytes[..prog.len()].copy_from_slice(&prog);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ACPI_PM_PORT, ACPI_TABLES_END, HIGH_MEMORY_START};

    #[test]
    fn writes_the_reset_register_and_halts() {
        let c = code(ACPI_PM_PORT + 2, 1);
        assert_eq!(
            &c[..10],
            &[0xba, 0x02, 0x06, 0xb0, 0x01, 0xee, 0xfa, 0xf4, 0xeb, 0xfd]
        );
        assert!(c[10..].iter().all(|&b| b == 0xf4));
        // The short jump (ending at 10, displacement -3) lands on the hlt at 7.
        assert_eq!(c[7], 0xf4);
    }

    #[test]
    fn fills_the_bios_area_after_the_acpi_tables() {
        const { assert!(RESET_VECTOR + RESET_VECTOR_LEN as u64 == HIGH_MEMORY_START) };
        const { assert!(ACPI_TABLES_END <= RESET_VECTOR) };
        // F000:FFF0 in real mode.
        const { assert!((0xf000u64 << 4) + 0xfff0 == RESET_VECTOR) };
    }
}
