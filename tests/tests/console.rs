// SPDX-License-Identifier: Apache-2.0
//! The serial console (16550 at COM1): `--console off`, `--console file=PATH`, and input
//! from stdin reaching the guest's receive register.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{
    print, pvh_asm, pvh_kernel, pvh_print_and_reset, reset_i8042, COM1, SCRATCH,
};
use polyvisor_tests::{Cond, Mem, Polyvisor, Reg, TempDir};

/// 16550 line status register and its "data ready" bit.
const COM1_LSR: u16 = COM1 + 5;
const LSR_DATA_READY: u8 = 1;
/// Polls of the line status register before the guest gives up (~7 instructions each).
const RX_SPINS: u32 = 2_000_000;

#[test]
fn console_off_hides_guest_output() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let k = dir.write("k.elf", &pvh_print_and_reset("this must not be seen\n"));
    let out = Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&k)
        .args(["--console", "off"])
        .run();
    out.assert_guest_reset();
    assert!(
        !out.stdout.contains("this must not be seen"),
        "`--console off` still printed the guest's output\n{out}"
    );
}

#[test]
fn console_file_receives_guest_output() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let k = dir.write("k.elf", &pvh_print_and_reset("written to a file\n"));
    let log = dir.path().join("console.log");
    let out = Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&k)
        .arg("--console")
        .arg(format!("file={}", log.display()))
        .run();
    out.assert_guest_reset();
    assert!(
        !out.stdout.contains("written to a file"),
        "`--console file=` also printed to stdout\n{out}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("written to a file\n"),
        "console file holds {text:?}\n{out}"
    );
}

/// Polls COM1 for up to 4 received bytes (bounded), then prints `got=[<bytes>]`.
fn echo_guest() -> Vec<u8> {
    echo_guest_of(4, 0)
}

/// Spins `delay` times without looking at COM1 (its FIFO fills), then polls it for up to
/// `want` received bytes (bounded), then prints `got=[<bytes>]`.
fn echo_guest_of(want: u32, delay: u32) -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "ready\n");
    if delay > 0 {
        a.mov_imm(Reg::Ecx, delay); // ecx = delay
        let spin = a.here_label();
        a.loop_to(spin); // loop spin: no exits, the FIFO is not read
    }
    a.xor_rr(Reg::Ebx, Reg::Ebx); // ebx = bytes received
    a.mov_imm(Reg::Ecx, RX_SPINS); // ecx = poll budget
    let poll = a.here_label();
    let next = a.label();
    let done = a.label();
    a.mov_dx(COM1_LSR); // mov dx, LSR
    a.in_al_dx(); // in al, dx
    a.test_al(LSR_DATA_READY); // data ready?
    a.j(Cond::E, next); // jz next
    a.mov_dx(COM1); // mov dx, RBR
    a.in_al_dx(); // in al, dx: the byte
    a.mov_store8(Mem::Base(Reg::Ebx, SCRATCH as i32), Reg::Eax); // buf[ebx] = al
    a.inc(Reg::Ebx); // ebx += 1
    a.cmp_imm(Reg::Ebx, want); // all bytes?
    a.j(Cond::Ae, done); // jae done
    a.bind(next);
    a.loop_to(poll); // loop poll
    a.bind(done);
    print(&mut a, "got=[");
    let empty = a.label();
    a.test_rr(Reg::Ebx, Reg::Ebx); // nothing received?
    a.j(Cond::E, empty); // jz empty (loop with ecx = 0 would run 2^32 times)
    a.mov_imm(Reg::Esi, SCRATCH); // esi = buf
    a.mov_rr(Reg::Ecx, Reg::Ebx); // ecx = count
    let each = a.here_label();
    a.lodsb(); // al = [esi++]
    a.out_dx_al(); // out dx, al
    a.loop_to(each); // loop each
    a.bind(empty);
    print(&mut a, "]\n");
    reset_i8042(&mut a);
    pvh_kernel(a.finish())
}

#[test]
fn stdin_reaches_the_guest_serial_port() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let k = dir.write("k.elf", &echo_guest());
    let out = Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&k)
        .stdin_bytes(b"ping")
        .run();
    out.assert_guest_reset();
    out.assert_stdout_contains("got=[ping]\n");
}

/// A guest that reads nothing while more input than its FIFO holds arrives: the input
/// waits (nothing dropped) and reaches it once it reads, in order.
#[test]
fn input_waits_for_a_guest_whose_fifo_is_full() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let k = dir.write("k.elf", &echo_guest_of(300, 1_000_000));
    let data: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&k)
        .stdin_bytes(&data)
        .run();
    out.assert_guest_reset();
    let mut want = b"got=[".to_vec();
    want.extend_from_slice(&data);
    want.extend_from_slice(b"]\n");
    out.assert_stdout_contains(std::str::from_utf8(&want).unwrap());
}
