// SPDX-License-Identifier: Apache-2.0
//! A virtio queue driven by a small guest loop: a tiny PVH guest finds the virtio-rng
//! device `--rng` adds (virtio-mmio at 0xd000_0000, I/O APIC pin 16), negotiates
//! VERSION_1, sets up a split queue in its own memory, offers one 64-byte buffer,
//! notifies, takes the interrupt, and reports what the used ring says.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{
    load_flat_gdt, print, print_hex32, pvh_asm, pvh_kernel, reset_i8042, FLAT_CODE32, SCRATCH,
    SCRATCH_STACK_TOP,
};
use polyvisor_tests::virtio_mmio::{
    drive_to_ready, GuestQueue, GUEST_QUEUE, INTERRUPT_ACK, INTERRUPT_STATUS, MAGIC, QUEUE_NOTIFY,
};
use polyvisor_tests::{run_kernel, Asm, Cond, Mem, Reg};

/// The slot's I/O APIC pin.
const GSI: u32 = 16;

/// The guest's queue and buffer.
const Q: GuestQueue = GUEST_QUEUE;
const USED: u32 = Q.used;
const BUF: u32 = Q.buf;
const BUF_LEN: u32 = Q.buf_len;

/// Scratch (0x1000..0x5fff): interrupt bookkeeping, descriptor tables.
const IRQ_COUNT: u32 = SCRATCH;
const IRQ_STATUS: u32 = SCRATCH + 4;
const IDT_DESC: u32 = SCRATCH + 0x10;
const GDT_DESC: u32 = SCRATCH + 0x20;
const GDT: u32 = SCRATCH + 0x800;
const IDT: u32 = SCRATCH + 0x1000;
const VECTOR: u32 = 0x41;
const IOAPIC_REGSEL: u32 = 0xfec0_0000;
const IOAPIC_WIN: u32 = 0xfec0_0010;
const LAPIC_SVR: u32 = 0xfee0_00f0;
const LAPIC_EOI: u32 = 0xfee0_00b0;
/// Bounded wait for the interrupt (3-instruction loop).
const IRQ_SPINS: u32 = 1_000_000;

/// Prints `name=<hex of the dword at addr> `. Clobbers eax, ecx, edx, edi.
fn show(a: &mut Asm, name: &str, addr: u32) {
    print(a, name);
    a.mov_load(Reg::Edi, Mem::Abs(addr)); // edi = [addr]
    print_hex32(a, Reg::Edi);
    print(a, " ");
}

fn reg(a: &mut Asm, addr: u32, value: u32) {
    a.mov_mem_imm32(Mem::Abs(addr), value); // mov dword [addr], value
}

fn rng_driver_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    let handler = a.label();
    let main = a.label();
    a.jmp(main);

    // --- interrupt handler: reads and acknowledges the interrupt status, EOI, and goes
    // on to the report (no iretd: an emulation failure on this host's software KVM) ---
    let report = a.label();
    a.align(16);
    a.bind(handler);
    a.lock_inc_mem32(Mem::Abs(IRQ_COUNT));
    a.mov_load(Reg::Eax, Mem::Abs(INTERRUPT_STATUS)); // eax = InterruptStatus
    a.mov_store(Mem::Abs(IRQ_STATUS), Reg::Eax);
    a.mov_store(Mem::Abs(INTERRUPT_ACK), Reg::Eax); // acknowledge what was seen
    reg(&mut a, LAPIC_EOI, 0);
    a.jmp(report);

    // --- main: find the device, negotiate, set up queue 0, offer the buffer ---
    a.bind(main);
    a.cli();
    a.mov_imm(Reg::Esp, SCRATCH_STACK_TOP);
    drive_to_ready(&mut a, &Q, &mut show);
    reg(&mut a, Q.avail, 1 << 16); // flags 0, idx 1: descriptor 0 is available

    // --- interrupts: own GDT and IDT, I/O APIC pin 16 -> VECTOR, edge, active high ---
    a.mov_mem_imm32(Mem::Abs(IRQ_COUNT), 0);
    a.mov_al(0xff);
    a.out_imm_al(0x21); // mask both 8259 PICs: only the I/O APIC delivers
    a.out_imm_al(0xa1);
    load_flat_gdt(&mut a, GDT, GDT_DESC);
    let handler_addr = a.addr_of(handler) as u32;
    let gate_lo = (u32::from(FLAT_CODE32) << 16) | (handler_addr & 0xffff);
    let gate_hi = (handler_addr & 0xffff_0000) | 0x8e00;
    reg(&mut a, IDT + VECTOR * 8, gate_lo);
    reg(&mut a, IDT + VECTOR * 8 + 4, gate_hi);
    reg(&mut a, IDT_DESC, (IDT << 16) | (VECTOR * 8 + 7));
    reg(&mut a, IDT_DESC + 4, IDT >> 16);
    a.lidt(Mem::Abs(IDT_DESC));
    reg(&mut a, LAPIC_SVR, 0x1ff);
    let redir = 0x10 + 2 * GSI;
    reg(&mut a, IOAPIC_REGSEL, redir + 1);
    reg(&mut a, IOAPIC_WIN, 0); // destination APIC id 0
    reg(&mut a, IOAPIC_REGSEL, redir);
    reg(&mut a, IOAPIC_WIN, VECTOR); // fixed, physical, edge, high, unmasked

    // --- notify with interrupts off, then wait (bounded) for the used-ring interrupt ---
    reg(&mut a, QUEUE_NOTIFY, 0);
    a.sti();
    a.mov_imm(Reg::Ecx, IRQ_SPINS);
    let wait = a.here_label();
    let got = a.label();
    a.cmp_mem_imm32(Mem::Abs(IRQ_COUNT), 0);
    a.j(Cond::Ne, got);
    a.loop_to(wait);
    a.bind(got);
    a.cli();
    a.bind(report);
    show(&mut a, "irqs=", IRQ_COUNT);
    show(&mut a, "isr=", IRQ_STATUS);
    show(&mut a, "isr_after_ack=", INTERRUPT_STATUS);
    show(&mut a, "used_flags_idx=", USED);
    show(&mut a, "used_id=", USED + 4);
    show(&mut a, "used_len=", USED + 8);
    show(&mut a, "buf0=", BUF);
    show(&mut a, "buf1=", BUF + 4);
    show(&mut a, "past=", BUF + BUF_LEN);
    print(&mut a, "\n");
    reset_i8042(&mut a);
    pvh_kernel(a.finish())
}

#[test]
fn guest_driver_gets_entropy_through_a_virtio_mmio_queue() {
    polyvisor_tests::require_kvm!();
    let out = run_kernel(&rng_driver_guest(), &["--rng"]);
    out.assert_guest_reset();
    assert_eq!(out.hex_field("magic="), 0x7472_6976, "\"virt\"\n{out}");
    assert_eq!(out.hex_field("device="), 4, "virtio-rng\n{out}");
    assert_eq!(out.hex_field("features_hi="), 1, "VERSION_1\n{out}");
    assert_eq!(out.hex_field("num_max="), 256, "{out}");
    assert_eq!(
        out.hex_field("irqs="),
        1,
        "one used-ring interrupt on pin 16\n{out}"
    );
    assert_eq!(out.hex_field("isr="), 1, "used-ring bit\n{out}");
    assert_eq!(out.hex_field("isr_after_ack="), 0, "{out}");
    assert_eq!(
        out.hex_field("used_flags_idx="),
        1 << 16,
        "used idx 1\n{out}"
    );
    assert_eq!(out.hex_field("used_id="), 0, "{out}");
    assert_eq!(out.hex_field("used_len="), 64, "{out}");
    assert_ne!(
        (out.hex_field("buf0="), out.hex_field("buf1=")),
        (0, 0),
        "the buffer was filled\n{out}"
    );
    assert_eq!(out.hex_field("past="), 0, "nothing written past it\n{out}");
    assert!(
        out.stdout
            .contains("status=0000000b num_max=00000100 status=0000000f "),
        "FEATURES_OK, then DRIVER_OK accepted\n{out}"
    );
}

#[test]
fn without_rng_the_slot_is_unclaimed() {
    polyvisor_tests::require_kvm!();
    let mut a = pvh_asm();
    show(&mut a, "magic=", MAGIC);
    print(&mut a, "\n");
    reset_i8042(&mut a);
    let out = run_kernel(&pvh_kernel(a.finish()), &[]);
    out.assert_guest_reset();
    assert_eq!(out.hex_field("magic="), 0xffff_ffff, "{out}");
}
