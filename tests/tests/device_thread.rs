// SPDX-License-Identifier: Apache-2.0
//! Device work runs on the device's worker thread, never on the vCPU that notified it
//! (issue 13): a tiny PVH guest offers virtio-rng one buffer and then keeps notifying
//! queue 0 while it waits for the used ring, printing a dot to COM1 every
//! [`SPINS_PER_DOT`] notifies. A debug build's test hook (`POLYVISOR_TEST_RNG_STALL_MS`,
//! vmm/src/backends.rs) makes the device's entropy source sleep before every read, so the
//! request stays outstanding that long. The guest's vCPU must go on meanwhile: dots (port
//! I/O exits the vCPU thread serves in userspace) while the used ring stays empty, and
//! `vm.counters` shows the notifies never left the kernel (ioeventfd, no MMIO exit).
//! Were the device served on the notifying vCPU's thread, the first notify would block
//! the guest for the whole stall and it would print no dot before the request is used;
//! were QueueNotify not bound to an ioeventfd, every notify would be an MMIO exit.
//!
//! Needs an x86_64 host with /dev/kvm and a debug build of polyvisor (`cargo build -p
//! vmm`); a release build (no hook) is refused with a clear message.
#![cfg(target_arch = "x86_64")]

mod api_common;

use std::time::{Duration, Instant};

use api_common::{get, put, Vmm};
use polyvisor_tests::guest::{
    halt_forever, print, print_hex32, pvh_asm, pvh_kernel, SCRATCH_STACK_TOP,
};
use polyvisor_tests::virtio_mmio::{drive_to_ready, GUEST_QUEUE, QUEUE_NOTIFY};
use polyvisor_tests::{Cond, Mem, Reg};

/// What the guest prints once its request is available, before its first notify (longer
/// than the 8 bytes `Vmm::start_kernel` waits for, so the test sees it at once).
const OFFERED: &str = "request offered\n";
/// How long the hook stalls each request.
const STALL: Duration = Duration::from_millis(1500);
/// Notifies between two dots (a power of two).
const SPINS_PER_DOT: u32 = 1 << 12;
/// The guest gives up (prints `timeout`) after this many notifies.
const MAX_SPINS: u32 = 1 << 26;
/// The fewest dots that count as progress while the request was outstanding.
const MIN_DOTS: usize = 10;
/// The most MMIO exits the guest may take: its bring-up of the device (`drive_to_ready`'s
/// register accesses, 19 today) with room to spare, far below the notifies it makes
/// (about 500 000 in 1.5 s on this 2-core host; 4096 per dot at the least).
const MAX_SETUP_MMIO_EXITS: u64 = 64;

/// The guest: bring the device up, make one request available, then notify and count
/// until the device has used it; report and halt (the test reads `vm.counters` then).
fn notifying_guest() -> Vec<u8> {
    let q = GUEST_QUEUE;
    let mut a = pvh_asm();
    a.cli();
    a.mov_imm(Reg::Esp, SCRATCH_STACK_TOP);
    drive_to_ready(&mut a, &q, &mut |_, _, _| {});
    a.mov_mem_imm32(Mem::Abs(q.avail), 1 << 16); // flags 0, idx 1: descriptor 0 offered
    print(&mut a, OFFERED);
    a.xor_rr(Reg::Ebx, Reg::Ebx); // ebx = notifies so far
    let top = a.here_label();
    let no_dot = a.label();
    let used = a.label();
    let timeout = a.label();
    a.mov_mem_imm32(Mem::Abs(QUEUE_NOTIFY), 0); // notify queue 0
    a.inc(Reg::Ebx);
    a.mov_rr(Reg::Eax, Reg::Ebx);
    a.and_imm(Reg::Eax, SPINS_PER_DOT - 1);
    a.j(Cond::Ne, no_dot);
    print(&mut a, ".");
    a.bind(no_dot);
    a.cmp_imm(Reg::Ebx, MAX_SPINS);
    a.j_near(Cond::E, timeout);
    a.movzx_load16(Reg::Eax, Mem::Abs(q.used + 2)); // eax = used idx
    a.test_rr(Reg::Eax, Reg::Eax);
    a.j_near(Cond::Ne, used);
    a.jmp(top);

    a.bind(timeout);
    print(&mut a, "\ntimeout");
    a.bind(used);
    print(&mut a, "\nnotifies=");
    print_hex32(&mut a, Reg::Ebx);
    print(&mut a, " used_idx=");
    a.movzx_load16(Reg::Edi, Mem::Abs(q.used + 2));
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, " used_len=");
    a.mov_load(Reg::Edi, Mem::Abs(q.used + 8));
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, "\ndone\n");
    halt_forever(&mut a);
    pvh_kernel(a.finish())
}

/// The 8 hex digits after `key` in `text`.
fn hex_after(text: &str, key: &str) -> u64 {
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in the console:\n{text}"));
    let digits = text[at + key.len()..].get(..8).unwrap_or("");
    u64::from_str_radix(digits, 16)
        .unwrap_or_else(|e| panic!("{key}{digits}: {e}; console:\n{text}"))
}

/// Wait until the guest's console shows `text`; fail with what it shows after `within`.
fn wait_for(vmm: &Vmm, text: &str, within: Duration) {
    let start = Instant::now();
    while !vmm.console_text().contains(text) {
        assert!(
            start.elapsed() < within,
            "no {text:?} from the guest within {within:?}; console:\n{}\nstderr:\n{}",
            vmm.console_text(),
            vmm.stderr()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_stalled_device_does_not_stop_the_vcpu_that_notifies_it() {
    if !cfg!(debug_assertions) {
        // The tests' profile is the binary's: a release polyvisor has no stall hook.
        eprintln!("SKIPPED {}: needs a debug build (the hook)", file!());
        return;
    }
    let stall_ms = STALL.as_millis().to_string();
    let Some(mut vmm) = Vmm::start_kernel(
        &[],
        &notifying_guest(),
        &["--rng"],
        &[("POLYVISOR_TEST_RNG_STALL_MS", &stall_ms)],
    ) else {
        return;
    };
    // The hook is armed: the device's worker sleeps before it fills the request.
    assert!(
        vmm.stderr().contains("POLYVISOR_TEST_RNG_STALL_MS"),
        "the stall hook did not take effect (a release polyvisor?); stderr:\n{}",
        vmm.stderr()
    );
    wait_for(&vmm, OFFERED, Duration::from_secs(30));
    let offered = Instant::now();
    wait_for(&vmm, "done\n", Duration::from_secs(60));
    let waited = offered.elapsed();
    let console = vmm.console_text();
    let counters = get(&vmm.socket, "vm.counters");
    assert_eq!(counters.status, 200, "{counters:?}");
    let c = counters.json();
    assert_eq!(put(&vmm.socket, "vmm.shutdown").status, 204);
    assert_eq!(
        vmm.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        vmm.stderr()
    );

    let report = format!("console:\n{console}\ncounters: {c}\nwaited {waited:?}");
    assert!(!console.contains("timeout"), "never used\n{report}");
    assert_eq!(hex_after(&console, "used_idx="), 1, "{report}");
    assert_eq!(hex_after(&console, "used_len="), 64, "{report}");
    // The vCPU went on while the request was outstanding: notifies and dots, each dot a
    // port I/O exit the vCPU thread served in userspace while the worker slept.
    let between = &console[console.find(OFFERED).unwrap()..console.find("\nnotifies=").unwrap()];
    let dots = between.matches('.').count();
    assert!(
        dots >= MIN_DOTS,
        "{dots} dots: the vCPU stalled with the device\n{report}"
    );
    // The request was outstanding for the stall (the guest saw the used ring empty from
    // its first notify, right after OFFERED, until just before "done").
    assert!(
        waited >= STALL / 2,
        "the device answered before its stall ended\n{report}"
    );
    let notifies = hex_after(&console, "notifies=");
    assert!(
        notifies >= u64::from(SPINS_PER_DOT) * dots as u64,
        "{report}"
    );
    let vcpu = &c["vcpu0"];
    let pio = vcpu["pio_exits"].as_u64().expect("vcpu0.pio_exits");
    let mmio = vcpu["mmio_exits"].as_u64().expect("vcpu0.mmio_exits");
    assert!(pio >= dots as u64, "{report}");
    // The notifies were signalled in the kernel (ioeventfd): no MMIO exit each.
    assert!(
        mmio <= MAX_SETUP_MMIO_EXITS,
        "{mmio} MMIO exits for {notifies} notifies: QueueNotify exits to userspace\n{report}"
    );
    eprintln!("{dots} dots, {notifies} notifies, {mmio} MMIO exits in {waited:?} of stall");
}
