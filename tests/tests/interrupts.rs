//! Interrupt delivery: the 16550's IRQ 4, routed by the in-kernel IOAPIC to the BSP's
//! local APIC, reaches an IDT handler in the guest.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{
    load_flat_gdt, print, print_hex32, pvh_asm, pvh_kernel, reset_i8042, COM1, FLAT_CODE32,
    SCRATCH, SCRATCH_STACK_TOP,
};
use polyvisor_tests::{run_kernel, Cond, Mem, Reg};

/// Guest scratch layout (all in the guest-free 0x1000–0x5fff).
const IRQ_COUNT: u32 = SCRATCH; // u32 incremented by the handler
const IDT_DESC: u32 = SCRATCH + 0x10; // limit u16 + base u32 for lidt
const IDT: u32 = SCRATCH + 0x1000; // 0x2000: the IDT
const GDT_DESC: u32 = SCRATCH + 0x20; // limit u16 + base u32 for lgdt
const GDT: u32 = SCRATCH + 0x800; // the guest's own GDT
/// The guest's code selector.
const CODE32: u16 = FLAT_CODE32;
/// Vector the IOAPIC delivers the serial IRQ on.
const VECTOR: u32 = 0x40;
/// Serial IRQ line = IOAPIC pin.
const SERIAL_IRQ: u32 = 4;
const IOAPIC_REGSEL: u32 = 0xfec0_0000;
const IOAPIC_WIN: u32 = 0xfec0_0010;
const LAPIC_SVR: u32 = 0xfee0_00f0;
const LAPIC_EOI: u32 = 0xfee0_00b0;
/// 16550 registers.
const COM1_IER: u16 = COM1 + 1;
const COM1_IIR: u16 = COM1 + 2;
const COM1_MCR: u16 = COM1 + 4;
const IER_THRE: u8 = 0x02;
const MCR_DTR_RTS_OUT2: u8 = 0x0b;
/// Bounded wait for the interrupt (3-instruction loop).
const IRQ_SPINS: u32 = 1_000_000;

fn load_own_gdt(a: &mut polyvisor_tests::Asm) {
    load_flat_gdt(a, GDT, GDT_DESC);
}

/// Sets up an IDT gate for [`VECTOR`], routes IOAPIC pin 4 there, enables the UART's
/// "transmitter empty" interrupt (which fires at once), waits (bounded) with interrupts on,
/// and prints `irqs=<count>`. The handler counts, acks the UART, masks IER, sends EOI and
/// jumps to the report.
fn serial_irq_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    let handler = a.label();
    let main = a.label();
    a.jmp(main); // jmp main

    // --- interrupt handler: it never returns (`iretd` in 32-bit protected mode is an
    // emulation failure on this host's software KVM), it goes on to the report ---
    let report = a.label();
    a.align(16);
    a.bind(handler);
    a.lock_inc_mem32(Mem::Abs(IRQ_COUNT)); // lock inc dword [IRQ_COUNT]
    a.mov_dx(COM1_IIR); // mov dx, IIR
    a.in_al_dx(); // in al, dx: read the interrupt identification (acks THRE)
    a.mov_dx(COM1_IER); // mov dx, IER
    a.mov_al(0); // mov al, 0
    a.out_dx_al(); // out dx, al: no more UART interrupts
    a.mov_mem_imm32(Mem::Abs(LAPIC_EOI), 0); // LAPIC EOI
    a.jmp(report); // jmp report (interrupts stay off: IF was cleared by the gate)

    // --- main ---
    a.bind(main);
    a.cli(); // cli
    a.mov_imm(Reg::Esp, SCRATCH_STACK_TOP); // a stack for the interrupt frame
    a.mov_mem_imm32(Mem::Abs(IRQ_COUNT), 0); // count = 0
    a.mov_al(0xff); // mov al, 0xff
    a.out_imm_al(0x21); // mask every line of the master 8259 PIC ...
    a.out_imm_al(0xa1); // ... and of the slave: only the IOAPIC delivers
    load_own_gdt(&mut a);
    // IDT gate for VECTOR: offset 15:0 | selector << 16, then offset 31:16 | P, 32-bit int gate.
    let handler_addr = a.addr_of(handler) as u32;
    let gate_lo = (u32::from(CODE32) << 16) | (handler_addr & 0xffff);
    let gate_hi = (handler_addr & 0xffff_0000) | 0x8e00;
    a.mov_mem_imm32(Mem::Abs(IDT + VECTOR * 8), gate_lo); // gate low dword
    a.mov_mem_imm32(Mem::Abs(IDT + VECTOR * 8 + 4), gate_hi); // gate high dword
    a.mov_mem_imm32(Mem::Abs(IDT_DESC), (IDT << 16) | (VECTOR * 8 + 7)); // limit, base 15:0
    a.mov_mem_imm32(Mem::Abs(IDT_DESC + 4), IDT >> 16); // base 31:16
    a.lidt(Mem::Abs(IDT_DESC)); // lidt [IDT_DESC]
    a.mov_mem_imm32(Mem::Abs(LAPIC_SVR), 0x1ff); // LAPIC software-enabled
    let redir = 0x10 + 2 * SERIAL_IRQ;
    a.mov_mem_imm32(Mem::Abs(IOAPIC_REGSEL), redir + 1); // redirection entry 4, high dword
    a.mov_mem_imm32(Mem::Abs(IOAPIC_WIN), 0); // destination APIC id 0
    a.mov_mem_imm32(Mem::Abs(IOAPIC_REGSEL), redir); // redirection entry 4, low dword
    a.mov_mem_imm32(Mem::Abs(IOAPIC_WIN), VECTOR); // fixed, physical, edge, high, unmasked
    a.mov_dx(COM1_MCR); // mov dx, MCR
    a.mov_al(MCR_DTR_RTS_OUT2); // OUT2 gates the IRQ on a PC
    a.out_dx_al(); // out dx, al
    a.mov_dx(COM1_IER); // mov dx, IER
    a.mov_al(IER_THRE); // THR-empty interrupt: pending at once
    a.out_dx_al(); // out dx, al
    a.sti(); // sti
    a.mov_imm(Reg::Ecx, IRQ_SPINS); // bounded wait
    let wait = a.here_label();
    let got = a.label();
    a.cmp_mem_imm32(Mem::Abs(IRQ_COUNT), 0); // any interrupt yet?
    a.j(Cond::Ne, got); // jne got
    a.loop_to(wait); // loop wait
    a.bind(got);
    a.cli(); // cli
    a.bind(report);
    print(&mut a, "irqs=");
    a.mov_load(Reg::Edi, Mem::Abs(IRQ_COUNT)); // edi = count
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, "\n");
    reset_i8042(&mut a);
    pvh_kernel(a.finish())
}

#[test]
fn serial_irq_reaches_the_guest_through_the_ioapic() {
    polyvisor_tests::require_kvm!();
    let out = run_kernel(&serial_irq_guest(), &[]);
    out.assert_guest_reset();
    let irqs = out.hex_field("irqs=");
    assert!(
        irqs >= 1,
        "the UART's THRE interrupt (IRQ 4 -> IOAPIC pin 4 -> vector 0x40) never arrived\n{out}"
    );
}
