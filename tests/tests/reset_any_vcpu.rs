//! Every way an x86 guest asks to reset or power off ends the run (issue 12, item 1), with
//! `guest reset` / `guest powered off` and exit 0 — including the ways Linux's `reboot=`
//! methods use that the other tests do not (the i8042 pulse and the FADT's registers are
//! in console.rs/acpi.rs): a triple fault (`reboot=t`), the PCI reset control register at
//! port 0xcf9 (`reboot=pci`), and requests made by an AP while the BSP keeps running.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{
    flat_data_segments, halt_forever, load_flat_gdt, print, protected_mode_trampoline, pvh_asm,
    pvh_kernel, reset_i8042, start_aps, I8042_COMMAND, SCRATCH, TRAMPOLINE_LEN,
};
use polyvisor_tests::{run_kernel, Asm, Mem, Mode, Reg};

/// SLP_EN | SLP_TYP 5 to the ACPI sleep control register: S5.
const SLEEP_CONTROL_PORT: u16 = 0x600;
const SLEEP_S5: u8 = (1 << 5) | (5 << 2);
/// The PCI reset control register (Intel chipsets; Linux's `reboot=pci`).
const RESET_CONTROL_PORT: u16 = 0xcf9;
/// Where APs start (a free page below 1 MiB).
const TRAMPOLINE: u32 = 0x3_0000;

/// `reboot=t`: an IDT with limit 0, then an exception: the #UD cannot be delivered, nor
/// the #DF that follows, so the CPU shuts down (a triple fault), which a PC turns into a
/// reset. (`ud2`, not `int3`: this host's KVM cannot emulate the delivery of a software
/// interrupt through a broken IDT and reports an internal error instead.)
#[test]
fn triple_fault_resets() {
    polyvisor_tests::require_kvm!();
    let mut a = pvh_asm();
    print(&mut a, "faulting\n");
    a.mov_mem_imm32(Mem::Abs(SCRATCH), 0); // IDT descriptor: limit 0, base 0
    a.mov_mem_imm32(Mem::Abs(SCRATCH + 4), 0);
    a.lidt(Mem::Abs(SCRATCH)); // lidt [SCRATCH]
    a.ud2(); // #UD -> #GP -> #DF -> shutdown
    print(&mut a, "still here\n");
    halt_forever(&mut a);
    let out = run_kernel(&pvh_kernel(a.finish()), &[]);
    out.assert_guest_reset();
    out.assert_stdout_contains("faulting\n");
    assert!(!out.stdout.contains("still here"), "{out}");
}

/// `reboot=pci`, as Linux's `BOOT_CF9_FORCE` does it for a cold reboot: read 0xcf9,
/// write it back with SYS_RST (bit 1) set, then with RST_CPU | FULL_RST (bits 2, 3) too.
#[test]
fn pci_reset_control_register_resets() {
    polyvisor_tests::require_kvm!();
    let mut a = pvh_asm();
    print(&mut a, "cf9\n");
    a.mov_dx(RESET_CONTROL_PORT);
    a.in_al_dx(); // in al, 0xcf9
    a.and_al(!0x0e); // clear the reset bits
    a.mov_rr(Reg::Ebx, Reg::Eax); // keep it
    a.add_al(0x02); // | SYS_RST (bit 1 was clear)
    a.out_dx_al(); // out 0xcf9, al
    a.mov_rr(Reg::Eax, Reg::Ebx);
    a.add_al(0x0e); // | SYS_RST | RST_CPU | FULL_RST
    a.out_dx_al(); // out 0xcf9, al: the reset
    a.mov_imm(Reg::Ecx, 100_000); // give it a moment, as Linux's udelay does
    let wait = a.here_label();
    a.loop_to(wait);
    print(&mut a, "still here\n");
    reset_i8042(&mut a); // end the run anyway (the check above fails the test)
    let out = run_kernel(&pvh_kernel(a.finish()), &[]);
    out.assert_guest_reset();
    assert!(
        !out.stdout.contains("still here"),
        "writing SYS_RST | RST_CPU | FULL_RST to port 0xcf9 did not reset the machine (the \
         guest went on and reset through the i8042)\n{out}"
    );
}

/// A 2-vCPU guest whose AP (still in real mode: ports need no more) runs `ap` while the
/// BSP prints `spinning` and spins forever.
fn ap_ends_the_run(ap: impl FnOnce(&mut Asm)) -> Vec<u8> {
    let mut t = Asm::new(Mode::Real16, 0);
    t.cli();
    ap(&mut t);
    halt_forever(&mut t);
    let tramp_code = t.finish();

    let mut a = pvh_asm();
    let tramp = a.label();
    print(&mut a, "spinning\n");
    start_aps(&mut a, TRAMPOLINE, tramp, tramp_code.len() as u32);
    let spin = a.here_label();
    a.jmp_short(spin); // the BSP never stops by itself
    a.bind(tramp);
    a.bytes(&tramp_code);
    pvh_kernel(a.finish())
}

#[test]
fn i8042_reset_from_an_ap_ends_the_run_while_the_bsp_spins() {
    polyvisor_tests::require_kvm!();
    let kernel = ap_ends_the_run(|t| {
        t.mov_al(0xfe);
        t.out_imm_al(I8042_COMMAND); // out 0x64, 0xfe
    });
    let out = run_kernel(&kernel, &["--cpus", "2"]);
    out.assert_guest_reset();
}

#[test]
fn s5_from_an_ap_ends_the_run_while_the_bsp_spins() {
    polyvisor_tests::require_kvm!();
    let kernel = ap_ends_the_run(|t| {
        t.mov_dx(SLEEP_CONTROL_PORT);
        t.mov_al(SLEEP_S5);
        t.out_dx_al(); // out 0x600, S5
    });
    let out = run_kernel(&kernel, &["--cpus", "2"]);
    out.assert_guest_poweroff();
}

/// The BSP loads the flat GDT, starts the AP in protected mode (real-mode exceptions are
/// emulated on this host's KVM, which cannot deliver them through a broken IVT) and
/// spins; the AP loads an IDT of limit 0 and raises #UD: a triple fault on vCPU 1.
#[test]
fn triple_fault_on_an_ap_ends_the_run_while_the_bsp_spins() {
    polyvisor_tests::require_kvm!();
    const GDT: u32 = SCRATCH + 0x800;
    const GDT_DESC: u32 = SCRATCH + 0x20;
    const IDT_DESC: u32 = SCRATCH + 0x40;
    let mut a = pvh_asm();
    let main = a.label();
    let tramp = a.label();
    a.jmp(main);
    let ap = a.here_label();
    flat_data_segments(&mut a);
    a.lidt(Mem::Abs(IDT_DESC)); // limit 0
    a.ud2(); // #UD -> #GP -> #DF -> shutdown
    halt_forever(&mut a);
    a.bind(main);
    load_flat_gdt(&mut a, GDT, GDT_DESC);
    a.mov_mem_imm32(Mem::Abs(IDT_DESC), 0);
    a.mov_mem_imm32(Mem::Abs(IDT_DESC + 4), 0);
    print(&mut a, "spinning\n");
    start_aps(&mut a, TRAMPOLINE, tramp, TRAMPOLINE_LEN);
    let spin = a.here_label();
    a.jmp_short(spin);
    let entry = a.addr_of(ap) as u32;
    a.bind(tramp);
    a.bytes(&protected_mode_trampoline(GDT, entry));
    let out = run_kernel(&pvh_kernel(a.finish()), &["--cpus", "2"]);
    out.assert_guest_reset();
}
