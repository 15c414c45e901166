//! Every way an x86 Linux guest resets the machine ends the run with `guest reset` and exit
//! 0, each done the way arch/x86/kernel/reboot.c does it: the FADT's reset register as the
//! guest finds it in the tables (`reboot=a`), the i8042 pulse after waiting for its input
//! buffer (`reboot=k`), the reset control register at 0xCF9 (`reboot=p`/`q`), and the BIOS
//! reset vector F000:FFF0 reached in real mode (`reboot=b`, and where Linux's default
//! order ends on this hardware-reduced ACPI machine: EFI, which does nothing without EFI,
//! then BIOS). Triple faults are in `pvh.rs`.
//!
//! Each run has `POLYVISOR_LOG=debug`, so the test can tell which device saw the reset
//! (a guest that went astray would triple-fault, which also ends in `guest reset`).
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{
    halt_forever, print, print_hex32, pvh_asm, pvh_kernel, I8042_COMMAND, SCRATCH,
};
use polyvisor_tests::{Cond, Mem, Polyvisor, Reg, RunOutput, TempDir};

const RSDP_ADDR: u32 = 0xe_0000;
/// Offsets in the RSDP and the FADT (ACPI 6.5, 5.2.5.3 and 5.2.9).
const RSDP_XSDT_ADDRESS: i32 = 24;
const SDT_ENTRIES: i32 = 36;
const FADT_FLAGS: i32 = 112;
const FADT_RESET_REG_SPACE: i32 = 116;
const FADT_RESET_REG_ADDRESS: i32 = 120;
const FADT_RESET_VALUE: i32 = 128;
const FADT_RESET_REG_SUP: u32 = 1 << 10;
const SPACE_SYSTEM_IO: u8 = 1;
const RESET_CONTROL_PORT: u16 = 0xcf9;

/// Runs `code` (PVH) with debug logging, checks it reset the machine and printed `text`,
/// and that polyvisor's debug log has `device_line`.
fn assert_resets_through(code: Vec<u8>, text: &str, device_line: &str) -> RunOutput {
    let dir = TempDir::new();
    let kernel = dir.write("kernel.elf", &pvh_kernel(code));
    let out = Polyvisor::new()
        .args(["run", "--kernel"])
        .arg(&kernel)
        .env("POLYVISOR_LOG", "debug")
        .run();
    out.assert_guest_reset();
    out.assert_stdout_contains(text);
    assert!(
        out.stderr.contains(device_line),
        "expected {device_line:?} in polyvisor's log\n{out}"
    );
    assert!(!out.stdout.contains("returned"), "{out}");
    out
}

/// The guest reads the FADT as Linux's `acpi_reboot()` does (RSDP → XSDT → its first
/// entry, the FADT: `RESET_REG_SUP`, a system I/O reset register) and writes
/// `RESET_VALUE` to `RESET_REG`.
#[test]
fn fadt_reset_register_as_the_guest_finds_it() {
    polyvisor_tests::require_kvm!();
    let mut a = pvh_asm();
    let bad = a.label();
    a.mov_load(Reg::Ebx, Mem::Abs(RSDP_ADDR + RSDP_XSDT_ADDRESS as u32)); // ebx = XSDT
    a.mov_load(Reg::Ebx, Mem::Base(Reg::Ebx, SDT_ENTRIES)); // ebx = XSDT entry 0
    a.cmp_mem_imm32(Mem::Base(Reg::Ebx, 0), u32::from_le_bytes(*b"FACP"));
    a.j_near(Cond::Ne, bad);
    a.mov_load(Reg::Eax, Mem::Base(Reg::Ebx, FADT_FLAGS)); // eax = FADT flags
    a.test_eax_imm(FADT_RESET_REG_SUP);
    a.j_near(Cond::E, bad);
    a.cmp_mem_imm8(Mem::Base(Reg::Ebx, FADT_RESET_REG_SPACE), SPACE_SYSTEM_IO);
    a.j_near(Cond::Ne, bad);
    a.mov_load(Reg::Esi, Mem::Base(Reg::Ebx, FADT_RESET_REG_ADDRESS)); // esi = port
    print(&mut a, "reset register ");
    print_hex32(&mut a, Reg::Esi);
    print(&mut a, "\n");
    a.mov_rr(Reg::Edx, Reg::Esi); // dx = port
    a.movzx_load8(Reg::Eax, Mem::Base(Reg::Ebx, FADT_RESET_VALUE)); // al = RESET_VALUE
    a.out_dx_al(); // out dx, al
    print(&mut a, "returned\n");
    halt_forever(&mut a);
    a.bind(bad);
    print(&mut a, "bad FADT\n");
    halt_forever(&mut a);
    assert_resets_through(
        a.finish(),
        "reset register 00000602\n",
        "acpi: reset register written",
    );
}

/// `reboot=k`: wait until the controller's input buffer is empty, then command 0xFE.
#[test]
fn i8042_pulse_after_kb_wait() {
    polyvisor_tests::require_kvm!();
    let mut a = pvh_asm();
    print(&mut a, "kbd\n");
    let wait = a.here_label();
    a.in_al_imm(I8042_COMMAND); // in al, 0x64
    a.test_al(0x02); // input buffer full?
    a.j(Cond::Ne, wait);
    a.mov_al(0xfe); // pulse the reset line
    a.out_imm_al(I8042_COMMAND); // out 0x64, al
    print(&mut a, "returned\n");
    halt_forever(&mut a);
    assert_resets_through(a.finish(), "kbd\n", "i8042: command 0xfe: CPU reset");
}

/// `reboot=p`/`q`: `cf9 = inb(0xcf9) & ~0x0e; outb(cf9 | 2); outb(cf9 | 0x0e)`. The
/// first write only selects a hard reset.
#[test]
fn reset_control_register_at_cf9() {
    polyvisor_tests::require_kvm!();
    let mut a = pvh_asm();
    a.mov_dx(RESET_CONTROL_PORT); // mov dx, 0xcf9
    a.in_al_dx(); // in al, dx
    a.and_al(!0x0e); // and al, ~0x0e
    a.mov_rr(Reg::Ebx, Reg::Eax); // ebx = cf9
    a.or_imm(Reg::Eax, 0x02); // SYS_RST
    a.out_dx_al(); // out dx, al
    a.in_al_dx(); // in al, dx
    a.mov_rr(Reg::Esi, Reg::Eax);
    a.and_imm(Reg::Esi, 0xff);
    print(&mut a, "cf9 ");
    print_hex32(&mut a, Reg::Esi);
    print(&mut a, "\n");
    a.mov_rr(Reg::Eax, Reg::Ebx);
    a.or_imm(Reg::Eax, 0x0e); // SYS_RST | RST_CPU | FULL_RST
    a.mov_dx(RESET_CONTROL_PORT);
    a.out_dx_al(); // out dx, al
    print(&mut a, "returned\n");
    halt_forever(&mut a);
    assert_resets_through(a.finish(), "cf9 00000002\n", "reset control: 0xe written");
}

/// 16-bit code at [`REAL_MODE_CODE`]: 16-bit data segments, protection off, then a far
/// jump to the BIOS reset vector, as `machine_real_restart(MRR_BIOS)` ends.
const REAL_MODE_CODE: u32 = SCRATCH + 0x1000;
const TO_RESET_VECTOR: [u8; 24] = [
    0xb8, 0x20, 0x00, // mov ax, 0x20 (16-bit data, base 0, limit 0xffff)
    0x8e, 0xd8, // mov ds, ax
    0x8e, 0xc0, // mov es, ax
    0x8e, 0xd0, // mov ss, ax
    0x0f, 0x20, 0xc0, // mov eax, cr0
    0x24, 0xfe, // and al, 0xfe: PE off
    0x0f, 0x22, 0xc0, // mov cr0, eax
    0xea, 0xf0, 0xff, 0x00, 0xf0, // jmp 0xf000:0xfff0
    0xf4, 0xf4, // hlt (never reached)
];

/// `reboot=b` and Linux's default order here: real mode, then F000:FFF0, where the VMM's
/// reset-vector code writes the FADT's reset register.
#[test]
fn bios_reset_vector_in_real_mode() {
    polyvisor_tests::require_kvm!();
    let mut a = pvh_asm();
    print(&mut a, "to the reset vector\n");
    a.cli();
    // GDT at SCRATCH: null, 0x08 flat code32, 0x10 flat data32, 0x18 code16, 0x20 data16.
    let gdt = SCRATCH;
    let entries: [(u32, u32); 5] = [
        (0, 0),
        (0x0000_ffff, 0x00cf_9b00),
        (0x0000_ffff, 0x00cf_9300),
        (0x0000_ffff, 0x0000_9b00),
        (0x0000_ffff, 0x0000_9300),
    ];
    for (i, (lo, hi)) in entries.iter().enumerate() {
        a.mov_mem_imm32(Mem::Abs(gdt + 8 * i as u32), *lo);
        a.mov_mem_imm32(Mem::Abs(gdt + 8 * i as u32 + 4), *hi);
    }
    let desc = gdt + 0x100;
    a.mov_mem_imm32(Mem::Abs(desc), (gdt << 16) | 39); // limit 39, base 15:0
    a.mov_mem_imm32(Mem::Abs(desc + 4), gdt >> 16); // base 31:16
    a.lgdt(Mem::Abs(desc));
    for (i, chunk) in TO_RESET_VECTOR.chunks(4).enumerate() {
        let word = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        a.mov_mem_imm32(Mem::Abs(REAL_MODE_CODE + 4 * i as u32), word);
    }
    // jmp 0x18:REAL_MODE_CODE (ptr16:32)
    a.bytes(&[0xea]);
    a.bytes(&REAL_MODE_CODE.to_le_bytes());
    a.bytes(&0x18u16.to_le_bytes());
    print(&mut a, "returned\n");
    halt_forever(&mut a);
    assert_resets_through(
        a.finish(),
        "to the reset vector\n",
        "acpi: reset register written",
    );
}
