//! A guest that says it panicked (pvpanic, QEMU0001 at port 0x505) ends the run with exit
//! 3 and `guest panicked`, told apart from a poweroff or reset; a guest that only reads
//! the register sees the events it supports and goes on.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{halt_forever, print, print_hex32, pvh_asm, pvh_kernel, reset_i8042};
use polyvisor_tests::{run_kernel, Reg};

const PVPANIC_PORT: u16 = 0x505;

#[test]
fn a_guest_panic_ends_the_run_with_exit_3() {
    let mut a = pvh_asm();
    print(&mut a, "panicking\n");
    a.mov_dx(PVPANIC_PORT);
    a.mov_al(1); // PVPANIC_PANICKED
    a.out_dx_al();
    print(&mut a, "still here\n");
    halt_forever(&mut a);
    let out = run_kernel(&pvh_kernel(a.finish()), &[]);
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stderr.contains("guest panicked"), "{out}");
    assert!(!out.stderr.contains("guest reset"), "{out}");
}

#[test]
fn reading_the_register_shows_its_events_and_changes_nothing() {
    let mut a = pvh_asm();
    a.mov_imm(Reg::Eax, 0);
    a.mov_dx(PVPANIC_PORT);
    a.in_al_dx(); // in al, dx
    a.mov_rr(Reg::Ebx, Reg::Eax);
    print(&mut a, "events=");
    print_hex32(&mut a, Reg::Ebx);
    print(&mut a, "\n");
    reset_i8042(&mut a);
    let out = run_kernel(&pvh_kernel(a.finish()), &[]);
    out.assert_guest_reset();
    // PANICKED | CRASH_LOADED.
    out.assert_stdout_contains("events=00000003\n");
}
