// SPDX-License-Identifier: Apache-2.0
//! Building blocks for test guests: serial output, hex printing, i8042 reset, and the two
//! kernel images polyvisor boots (PVH ELF entered in 32-bit protected mode, plain ELF64
//! entered in 64-bit long mode).
//!
//! Guest memory rules (from the VMM's layout): code lives at 1 MiB and up; guests may use
//! 0x1000–0x5fff and 0x30000–0x9efff as scratch; everything else below 1 MiB is the VMM's.

use crate::asm::{Asm, Label, Mode, Reg};
use crate::elf::{ElfBuilder, PvhNote};

/// I/O port of the 16550 COM1 transmit register.
pub const COM1: u16 = 0x3f8;
/// i8042 command port; writing 0xFE pulses the CPU reset line.
pub const I8042_COMMAND: u8 = 0x64;
/// Where every test kernel is loaded (`p_paddr` of its one `PT_LOAD`).
pub const LOAD_ADDR: u64 = 0x10_0000;
/// The PVH entry point of [`pvh_kernel`] (the PVH note's address), 256 bytes into the image.
pub const PVH_ENTRY: u64 = LOAD_ADDR + 0x100;
/// The entry point of [`long_mode_kernel`] (`e_entry`).
pub const LONG_MODE_ENTRY: u64 = LOAD_ADDR;
/// Top of a small stack in guest-free low memory, for guests that want one.
pub const SCRATCH_STACK_TOP: u32 = 0x5000;
/// A guest-free scratch page (below 1 MiB).
pub const SCRATCH: u32 = 0x1000;
/// `hvm_start_info.magic`.
pub const HVM_START_MAGIC: u32 = 0x336e_c578;
/// Marker printed by the stub at a PVH image's `e_entry` (it must never run).
pub const WRONG_ENTRY_MARKER: &str = "WRONG ENTRY";

/// Offsets in `struct hvm_start_info` (xen/include/public/arch-x86/hvm/start_info.h).
pub mod start_info {
    pub const MAGIC: i32 = 0;
    pub const VERSION: i32 = 4;
    pub const NR_MODULES: i32 = 12;
    pub const MODLIST_PADDR: i32 = 16;
    pub const CMDLINE_PADDR: i32 = 24;
    pub const RSDP_PADDR: i32 = 32;
    pub const MEMMAP_PADDR: i32 = 40;
    pub const MEMMAP_ENTRIES: i32 = 48;
    /// `struct hvm_memmap_table_entry`: addr u64, size u64, type u32, reserved u32.
    pub const MEMMAP_ENTRY_SIZE: u32 = 24;
    /// `struct hvm_modlist_entry`: paddr u64, size u64, cmdline_paddr u64, reserved u64.
    pub const MODLIST_ENTRY_SIZE: u32 = 32;
}

/// Offsets in the Linux zero page (`struct boot_params`).
pub mod zero_page {
    pub const E820_ENTRIES: i32 = 0x1e8;
    pub const BOOT_FLAG: i32 = 0x1fe;
    pub const HEADER: i32 = 0x202;
    pub const CMD_LINE_PTR: i32 = 0x228;
    pub const E820_TABLE: i32 = 0x2d0;
    /// "HdrS" as a little-endian u32.
    pub const HDRS_MAGIC: u32 = u32::from_le_bytes(*b"HdrS");
}

/// Writes `text` to COM1, one `mov al, imm8; out dx, al` per byte. Clobbers eax, edx.
pub fn print(a: &mut Asm, text: &str) {
    a.mov_dx(COM1); // mov dx, 0x3f8
    for b in text.bytes() {
        a.mov_al(b); // mov al, <byte>
        a.out_dx_al(); // out dx, al
    }
}

/// Writes the 32-bit value in `r` to COM1 as 8 hex digits (most significant first).
/// `r` is left unchanged (rotated 8 × 4 = 32 bits). Clobbers eax, ecx, edx, so `r` must be
/// none of those.
pub fn print_hex32(a: &mut Asm, r: Reg) {
    assert!(
        !matches!(r, Reg::Eax | Reg::Ecx | Reg::Edx),
        "print_hex32 clobbers eax, ecx, edx"
    );
    a.mov_dx(COM1); // mov dx, 0x3f8
    a.mov_imm(Reg::Ecx, 8); // mov ecx, 8: eight nibbles
    let digit = a.here_label();
    a.rol_imm(r, 4); // rol r, 4: next nibble into bits 3:0
    a.mov_rr(Reg::Eax, r); // mov eax, r
    a.and_al(0x0f); // and al, 0x0f
    a.add_al(b'0'); // add al, '0'
    a.cmp_al(b'9' + 1); // cmp al, '9'+1
    let emit = a.label();
    a.j(crate::asm::Cond::B, emit); // jb emit: 0-9
    a.add_al(b'a' - b'9' - 1); // add al, 'a'-'9'-1: a-f
    a.bind(emit);
    a.out_dx_al(); // out dx, al
    a.loop_to(digit); // loop digit
}

/// The selectors of [`load_flat_gdt`]'s GDT: flat 32-bit code and data.
pub const FLAT_CODE32: u16 = 0x08;
pub const FLAT_DATA32: u16 = 0x10;

/// Loads the guest's own GDT at `gdt` (flat 32-bit code at [`FLAT_CODE32`], data at
/// [`FLAT_DATA32`], as Linux's PVH entry does before it takes interrupts; its descriptor
/// at `gdt_desc`) and reloads every segment register from it, so interrupt delivery does
/// not depend on the VMM's boot GDT. Clobbers eax. 32-bit protected mode only.
pub fn load_flat_gdt(a: &mut Asm, gdt: u32, gdt_desc: u32) {
    use crate::asm::Mem;
    a.mov_mem_imm32(Mem::Abs(gdt), 0); // null descriptor
    a.mov_mem_imm32(Mem::Abs(gdt + 4), 0);
    a.mov_mem_imm32(Mem::Abs(gdt + 8), 0x0000_ffff); // 0x08: base 0, limit 0xfffff
    a.mov_mem_imm32(Mem::Abs(gdt + 12), 0x00cf_9b00); // G, D=32-bit, P, code r/x accessed
    a.mov_mem_imm32(Mem::Abs(gdt + 16), 0x0000_ffff); // 0x10: base 0, limit 0xfffff
    a.mov_mem_imm32(Mem::Abs(gdt + 20), 0x00cf_9300); // G, B=32-bit, P, data r/w accessed
    a.mov_mem_imm32(Mem::Abs(gdt_desc), (gdt << 16) | 23); // limit 23, base 15:0
    a.mov_mem_imm32(Mem::Abs(gdt_desc + 4), gdt >> 16); // base 31:16
    a.lgdt(Mem::Abs(gdt_desc)); // lgdt [gdt_desc]
    let reloaded = a.label();
    a.jmp_far(FLAT_CODE32, reloaded); // jmp 0x08:reloaded
    a.bind(reloaded);
    a.mov_imm(Reg::Eax, FLAT_DATA32.into()); // eax = 0x10
    a.mov_ds_ax(); // mov ds, ax
    a.mov_es_ax(); // mov es, ax
    a.mov_ss_ax(); // mov ss, ax
}

/// Resets the machine through the i8042 (`out 0x64, 0xFE`); if that returns, halts forever.
pub fn reset_i8042(a: &mut Asm) {
    a.mov_al(0xfe); // mov al, 0xfe: pulse reset line
    a.out_imm_al(I8042_COMMAND); // out 0x64, al
    halt_forever(a);
}

/// Local APIC registers (xAPIC MMIO) and ICR bits used to start application processors.
pub mod lapic {
    pub const SVR: u32 = 0xfee0_00f0;
    pub const ICR_LO: u32 = 0xfee0_0300;
    pub const ICR_HI: u32 = 0xfee0_0310;
    /// Destination shorthand "all excluding self".
    pub const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;
    pub const ICR_ASSERT: u32 = 1 << 14;
    pub const ICR_INIT: u32 = 0b101 << 8;
    pub const ICR_STARTUP: u32 = 0b110 << 8;
}

/// Starts every other vCPU in real mode at `page` (4 KiB aligned, below 1 MiB): copies
/// `len` bytes of code from `code` (a label in this image, real-mode code assembled at
/// offset 0) to `page`, then sends INIT, SIPI, SIPI to all but self, as Linux does.
/// Clobbers ecx, esi, edi. Protected mode only (the BSP's PVH entry).
pub fn start_aps(a: &mut Asm, page: u32, code: Label, len: u32) {
    use crate::asm::Mem;
    assert_eq!(page & 0xfff, 0, "the SIPI vector names a 4 KiB page");
    assert!(page < 0x10_0000, "APs start in real mode, below 1 MiB");
    a.cld(); // cld
    a.mov_label(Reg::Esi, code); // esi = the code in the image
    a.mov_imm(Reg::Edi, page); // edi = its page
    a.mov_imm(Reg::Ecx, len); // ecx = its length
    a.rep_movsb(); // rep movsb
    a.mov_mem_imm32(Mem::Abs(lapic::SVR), 0x1ff); // APIC enabled, spurious vector 0xff
    a.mov_mem_imm32(Mem::Abs(lapic::ICR_HI), 0);
    let all = lapic::ICR_ALL_BUT_SELF | lapic::ICR_ASSERT;
    a.mov_mem_imm32(Mem::Abs(lapic::ICR_LO), all | lapic::ICR_INIT); // INIT
    a.mov_imm(Reg::Ecx, 10_000); // short delay
    let d1 = a.here_label();
    a.loop_to(d1);
    let sipi = all | lapic::ICR_STARTUP | (page >> 12);
    a.mov_mem_imm32(Mem::Abs(lapic::ICR_LO), sipi); // SIPI
    a.mov_imm(Reg::Ecx, 1_000); // short delay
    let d2 = a.here_label();
    a.loop_to(d2);
    a.mov_mem_imm32(Mem::Abs(lapic::ICR_LO), sipi); // second SIPI
}

/// Offset of the GDT descriptor in [`protected_mode_trampoline`]'s page, and the page's
/// length.
pub const TRAMPOLINE_GDT_DESC: u16 = 0x100;
pub const TRAMPOLINE_LEN: u32 = 0x110;

/// Real-mode start code for an AP (for [`start_aps`]) that enters 32-bit protected mode
/// with the flat GDT [`load_flat_gdt`] put at `gdt`, reloads the data segments and jumps
/// to `entry`: loads the GDT (its descriptor sits in the same page), sets CR0.PE, far
/// jumps to [`FLAT_CODE32`]:`entry`. [`TRAMPOLINE_LEN`] bytes.
pub fn protected_mode_trampoline(gdt: u32, entry: u32) -> Vec<u8> {
    use crate::asm::Mem;
    let mut t = Asm::new(Mode::Real16, 0); // offsets in CS = the page
    t.cli(); // cli
    t.mov_ax_cs(); // mov ax, cs
    t.mov_ds_ax(); // mov ds, ax
    t.lgdt(Mem::Abs(TRAMPOLINE_GDT_DESC.into())); // lgdt [desc]: limit, 24-bit base
    t.mov_eax_cr0(); // mov eax, cr0
    t.or_imm(Reg::Eax, 1); // or eax, PE
    t.mov_cr0_eax(); // mov cr0, eax
    t.jmp_far32_from_real(FLAT_CODE32, entry); // jmp dword 0x08:entry
    let mut code = t.finish();
    assert!(code.len() <= TRAMPOLINE_GDT_DESC as usize);
    assert!(gdt < 1 << 24, "a 16-bit lgdt loads a 24-bit base");
    code.resize(TRAMPOLINE_GDT_DESC as usize, 0);
    code.extend_from_slice(&23u16.to_le_bytes()); // GDT limit: three descriptors
    code.extend_from_slice(&gdt.to_le_bytes()); // GDT base
    code.resize(TRAMPOLINE_LEN as usize, 0);
    code
}

/// The first instructions at a [`protected_mode_trampoline`]'s `entry`: data segments
/// from the flat GDT. Clobbers eax.
pub fn flat_data_segments(a: &mut Asm) {
    a.mov_imm(Reg::Eax, FLAT_DATA32.into()); // eax = 0x10
    a.mov_ds_ax(); // mov ds, ax
    a.mov_es_ax(); // mov es, ax
    a.mov_ss_ax(); // mov ss, ax
}

/// `cli; hlt; jmp back` — stops this vCPU for good.
pub fn halt_forever(a: &mut Asm) {
    let l: Label = a.here_label();
    a.cli(); // cli
    a.hlt(); // hlt
    a.jmp_short(l); // jmp l
}

/// A new assembler for PVH guest code (32-bit protected mode, at [`PVH_ENTRY`]).
pub fn pvh_asm() -> Asm {
    Asm::new(Mode::Protected32, PVH_ENTRY)
}

/// A new assembler for long-mode guest code (at [`LONG_MODE_ENTRY`]).
pub fn long_mode_asm() -> Asm {
    Asm::new(Mode::Long64, LONG_MODE_ENTRY)
}

/// A PVH ELF kernel: one `PT_LOAD` at [`LOAD_ADDR`] and a PVH note pointing at
/// [`PVH_ENTRY`], where `code` (assembled by [`pvh_asm`]) goes. `e_entry` points at
/// [`LOAD_ADDR`] instead, where a stub prints [`WRONG_ENTRY_MARKER`] and resets: a VMM that
/// ignored the note and jumped to `e_entry` shows up in the output.
pub fn pvh_kernel(code: Vec<u8>) -> Vec<u8> {
    pvh_kernel_with_note(code, PvhNote::Desc32(PVH_ENTRY as u32))
}

/// [`pvh_kernel`] with the given PVH note (e.g. a 64-bit descriptor); the note should
/// point at [`PVH_ENTRY`].
pub fn pvh_kernel_with_note(code: Vec<u8>, note: PvhNote) -> Vec<u8> {
    let mut image = wrong_entry_stub();
    assert!(image.len() <= (PVH_ENTRY - LOAD_ADDR) as usize);
    image.resize((PVH_ENTRY - LOAD_ADDR) as usize, 0xcc);
    image.extend_from_slice(&code);
    ElfBuilder::new(LOAD_ADDR)
        .segment(LOAD_ADDR, image)
        .pvh_note(note)
        .build()
}

/// A plain ELF64 kernel (no PVH note): one `PT_LOAD` at [`LOAD_ADDR`] holding `code`
/// (assembled by [`long_mode_asm`]), `e_entry` = [`LONG_MODE_ENTRY`].
pub fn long_mode_kernel(code: Vec<u8>) -> Vec<u8> {
    ElfBuilder::new(LONG_MODE_ENTRY)
        .segment(LOAD_ADDR, code)
        .build()
}

/// Code that runs the same in 32-bit and 64-bit mode: prints the marker and resets.
fn wrong_entry_stub() -> Vec<u8> {
    let mut a = Asm::new(Mode::Protected32, LOAD_ADDR);
    print(&mut a, WRONG_ENTRY_MARKER);
    print(&mut a, "\n");
    reset_i8042(&mut a);
    a.finish()
}

/// A minimal PVH kernel: prints `text` and resets.
pub fn pvh_print_and_reset(text: &str) -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, text);
    reset_i8042(&mut a);
    pvh_kernel(a.finish())
}

/// A PVH kernel that prints `ready`, then a dot every `loops_per_dot` iterations of a
/// `loop` instruction (about 1 µs each on software KVM), forever: its console output shows
/// whether it makes progress.
pub fn pvh_counting(loops_per_dot: u32) -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "ready\n");
    let top = a.here_label();
    a.mov_imm(Reg::Ecx, loops_per_dot);
    let spin = a.here_label();
    a.loop_to(spin);
    print(&mut a, ".");
    a.jmp_short(top);
    pvh_kernel(a.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_emits_one_out_per_byte() {
        let mut a = pvh_asm();
        print(&mut a, "Hi");
        assert_eq!(
            a.finish(),
            [0x66, 0xba, 0xf8, 0x03, 0xb0, b'H', 0xee, 0xb0, b'i', 0xee]
        );
    }

    #[test]
    fn reset_writes_fe_to_port_64() {
        let mut a = pvh_asm();
        reset_i8042(&mut a);
        assert_eq!(a.finish(), [0xb0, 0xfe, 0xe6, 0x64, 0xfa, 0xf4, 0xeb, 0xfc]);
    }

    #[test]
    fn pvh_kernel_layout() {
        let img = pvh_kernel(vec![0xf4]);
        // e_entry = LOAD_ADDR, PVH note desc = PVH_ENTRY.
        assert_eq!(&img[24..32], &LOAD_ADDR.to_le_bytes());
        let note = 64 + 2 * 56;
        assert_eq!(&img[note + 12..note + 16], b"Xen\0");
        assert_eq!(
            &img[note + 16..note + 20],
            &(PVH_ENTRY as u32).to_le_bytes()
        );
        // The code byte sits 0x100 into the segment.
        assert_eq!(img[0x1000 + 0x100], 0xf4);
        assert_eq!(img.len(), 0x1000 + 0x101);
    }

    #[test]
    fn hdrs_magic_value() {
        assert_eq!(zero_page::HDRS_MAGIC, 0x5372_6448);
    }
}
