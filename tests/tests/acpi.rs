//! Hardware-reduced ACPI: the RSDP where a guest looks for it (the BIOS area, and the PVH
//! start info's `rsdp_paddr`), and the FADT's sleep control and reset registers ending
//! the VM the way Linux writes them.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{halt_forever, print, pvh_asm, pvh_kernel, start_info};
use polyvisor_tests::{run_kernel, Asm, Cond, Mem, Reg};

const RSDP_ADDR: u32 = 0xe_0000;
/// Sleep control register (FADT SLEEP_CONTROL_REG) and reset register (RESET_REG).
const SLEEP_CONTROL_PORT: u16 = 0x600;
const RESET_PORT: u16 = 0x602;
/// SLP_EN | SLP_TYP 5 (the DSDT's `\_S5`), as Linux's acpi_hw_extended_sleep writes it.
const SLEEP_S5: u8 = (1 << 5) | (5 << 2);
const RESET_VALUE: u8 = 1;

/// Prints `rsdp ok` when the signature is at 0xe0000 and the start info points there.
fn check_rsdp(a: &mut Asm) {
    let bad = a.label();
    a.cmp_mem_imm32(Mem::Abs(RSDP_ADDR), u32::from_le_bytes(*b"RSD ")); // cmp [0xe0000], "RSD "
    a.j_near(Cond::Ne, bad); // jne bad
    a.cmp_mem_imm32(Mem::Abs(RSDP_ADDR + 4), u32::from_le_bytes(*b"PTR ")); // cmp [0xe0004], "PTR "
    a.j_near(Cond::Ne, bad); // jne bad
    a.cmp_mem_imm32(Mem::Base(Reg::Ebx, start_info::RSDP_PADDR), RSDP_ADDR); // cmp [ebx+32], 0xe0000
    a.j_near(Cond::Ne, bad); // jne bad
    print(a, "rsdp ok\n");
    a.bind(bad);
}

/// A guest that checks the RSDP, then writes `value` to `port` and halts.
fn guest(port: u16, value: u8) -> Vec<u8> {
    let mut a = pvh_asm();
    check_rsdp(&mut a);
    a.mov_dx(port); // mov dx, port
    a.mov_al(value); // mov al, value
    a.out_dx_al(); // out dx, al
    halt_forever(&mut a); // only the VMM ends this
    a.finish()
}

#[test]
fn s5_through_the_sleep_control_register_powers_off() {
    polyvisor_tests::require_kvm!();
    let out = run_kernel(&pvh_kernel(guest(SLEEP_CONTROL_PORT, SLEEP_S5)), &[]);
    out.assert_guest_poweroff();
    out.assert_stdout_contains("rsdp ok\n");
}

#[test]
fn reset_register_resets() {
    polyvisor_tests::require_kvm!();
    let out = run_kernel(&pvh_kernel(guest(RESET_PORT, RESET_VALUE)), &[]);
    out.assert_guest_reset();
    out.assert_stdout_contains("rsdp ok\n");
}
