// SPDX-License-Identifier: Apache-2.0
//! A very small x86 assembler: just the instructions the test guests use.
//!
//! Each method appends one instruction's machine code and documents its encoding. The
//! assembler knows the code's mode (16-bit real mode, 32-bit protected mode, 64-bit long mode)
//! and adds the operand-size prefix (`0x66`) where that mode needs it, so "32-bit" operations
//! (`mov_imm`, `shr_imm`, ...) act on the 32-bit registers in every mode (in long mode they
//! zero-extend into the 64-bit register, as the hardware does).
//!
//! Labels give forward and backward jumps and absolute addresses; they are resolved by
//! [`Asm::finish`], which panics on an unbound label or a short jump out of range (a bug in
//! the test, found when the test builds its guest).

/// The processor mode the code runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 16-bit real mode (an AP's SIPI trampoline).
    Real16,
    /// 32-bit protected mode (PVH entry).
    Protected32,
    /// 64-bit long mode (ELF entry without the PVH note).
    Long64,
}

/// A general-purpose register, by its ModRM number. In 32-bit operations it names
/// eax..edi; in a long-mode memory operand it names rax..rdi.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    Eax = 0,
    Ecx = 1,
    Edx = 2,
    Ebx = 3,
    Esp = 4,
    Ebp = 5,
    Esi = 6,
    Edi = 7,
}

/// A memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mem {
    /// An absolute address: `[addr]`. In real mode an offset in DS (< 64 KiB); in long mode
    /// below 2 GiB (the displacement is sign-extended).
    Abs(u32),
    /// Base register plus displacement: `[reg + disp]`. In real mode only bx, si, di, bp
    /// can be a base.
    Base(Reg, i32),
}

/// Condition codes for `Jcc` (the low nibble of the opcode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// Overflow.
    O = 0x0,
    /// No overflow.
    No = 0x1,
    /// Below (unsigned <), carry.
    B = 0x2,
    /// Above or equal (unsigned >=), no carry.
    Ae = 0x3,
    /// Equal / zero.
    E = 0x4,
    /// Not equal / not zero.
    Ne = 0x5,
    /// Below or equal (unsigned <=).
    Be = 0x6,
    /// Above (unsigned >).
    A = 0x7,
    /// Sign.
    S = 0x8,
    /// No sign.
    Ns = 0x9,
    /// Less (signed <).
    L = 0xc,
    /// Greater or equal (signed >=).
    Ge = 0xd,
    /// Less or equal (signed <=).
    Le = 0xe,
    /// Greater (signed >).
    G = 0xf,
}

/// A position in the code, bound with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Clone, Copy, Debug)]
enum FixKind {
    Rel8,
    Rel16,
    Rel32,
    Abs32,
}

#[derive(Clone, Copy, Debug)]
struct Fixup {
    /// Where the field starts.
    at: usize,
    /// End of the instruction (relative jumps count from here).
    end: usize,
    label: Label,
    kind: FixKind,
}

/// The assembler: code bytes, labels and pending fixups.
#[derive(Debug)]
pub struct Asm {
    mode: Mode,
    base: u64,
    code: Vec<u8>,
    labels: Vec<Option<usize>>,
    fixups: Vec<Fixup>,
}

impl Asm {
    /// Code for `mode` that will run at address `base` (for real mode: the offset in CS).
    pub fn new(mode: Mode, base: u64) -> Self {
        Asm {
            mode,
            base,
            code: Vec::new(),
            labels: Vec::new(),
            fixups: Vec::new(),
        }
    }

    /// The mode this code is for.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Bytes emitted so far.
    pub fn len(&self) -> usize {
        self.code.len()
    }

    /// Whether nothing was emitted yet.
    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    /// Address of the next instruction.
    pub fn here(&self) -> u64 {
        self.base + self.code.len() as u64
    }

    /// A new, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `l` to the current position.
    pub fn bind(&mut self, l: Label) {
        assert!(self.labels[l.0].is_none(), "label bound twice");
        self.labels[l.0] = Some(self.code.len());
    }

    /// A new label bound to the current position.
    pub fn here_label(&mut self) -> Label {
        let l = self.label();
        self.bind(l);
        l
    }

    /// Offset of a bound label from the start of the code.
    pub fn offset_of(&self, l: Label) -> usize {
        self.labels[l.0].expect("label not bound")
    }

    /// Address of a bound label.
    pub fn addr_of(&self, l: Label) -> u64 {
        self.base + self.offset_of(l) as u64
    }

    /// Resolves every fixup and returns the machine code.
    pub fn finish(mut self) -> Vec<u8> {
        for f in std::mem::take(&mut self.fixups) {
            let target = self.offset_of(f.label);
            let rel = target as i64 - f.end as i64;
            match f.kind {
                FixKind::Rel8 => {
                    let r = i8::try_from(rel).unwrap_or_else(|_| {
                        panic!("short jump at offset {:#x} out of range ({rel})", f.at)
                    });
                    self.code[f.at] = r as u8;
                }
                FixKind::Rel16 => {
                    let r = i16::try_from(rel).expect("rel16 jump out of range");
                    self.code[f.at..f.at + 2].copy_from_slice(&r.to_le_bytes());
                }
                FixKind::Rel32 => {
                    let r = i32::try_from(rel).expect("rel32 jump out of range");
                    self.code[f.at..f.at + 4].copy_from_slice(&r.to_le_bytes());
                }
                FixKind::Abs32 => {
                    let a = u32::try_from(self.base + target as u64)
                        .expect("absolute address above 4 GiB");
                    self.code[f.at..f.at + 4].copy_from_slice(&a.to_le_bytes());
                }
            }
        }
        self.code
    }

    // ---------------------------------------------------------------- raw data

    /// Appends raw bytes (data, or an instruction not covered here).
    pub fn bytes(&mut self, b: &[u8]) {
        self.code.extend_from_slice(b);
    }

    /// Pads with zero bytes up to a multiple of `align` bytes from the start.
    pub fn align(&mut self, align: usize) {
        while self.code.len() % align != 0 {
            self.code.push(0);
        }
    }

    /// Appends a little-endian u32 (data).
    pub fn dd(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    // ---------------------------------------------------------------- encoding helpers

    /// Operand-size prefix for a 32-bit operation (needed only in real mode).
    fn o32(&mut self) {
        if self.mode == Mode::Real16 {
            self.code.push(0x66);
        }
    }

    /// Operand-size prefix for a 16-bit operation (needed outside real mode).
    fn o16(&mut self) {
        if self.mode != Mode::Real16 {
            self.code.push(0x66);
        }
    }

    /// ModRM byte for a register operand: mod=11.
    fn modrm_reg(&mut self, reg_field: u8, rm: Reg) {
        self.code.push(0xc0 | (reg_field << 3) | rm as u8);
    }

    /// ModRM (+SIB) (+displacement) bytes for a memory operand.
    fn modrm_mem(&mut self, reg_field: u8, mem: Mem) {
        let r = reg_field << 3;
        match (self.mode, mem) {
            (Mode::Real16, Mem::Abs(a)) => {
                let a = u16::try_from(a).expect("real-mode address must be < 64 KiB");
                self.code.push(r | 0b110); // mod=00 rm=110: [disp16]
                self.bytes(&a.to_le_bytes());
            }
            (Mode::Real16, Mem::Base(base, d)) => {
                let rm = match base {
                    Reg::Esi => 0b100,
                    Reg::Edi => 0b101,
                    Reg::Ebp => 0b110,
                    Reg::Ebx => 0b111,
                    other => panic!("{other:?} cannot be a 16-bit base register"),
                };
                let d = i16::try_from(d).expect("16-bit displacement");
                self.code.push(0x80 | r | rm); // mod=10: [base + disp16]
                self.bytes(&d.to_le_bytes());
            }
            (Mode::Protected32, Mem::Abs(a)) => {
                self.code.push(r | 0b101); // mod=00 rm=101: [disp32]
                self.bytes(&a.to_le_bytes());
            }
            (Mode::Long64, Mem::Abs(a)) => {
                // mod=00 rm=101 would be RIP-relative: use a SIB with no base and no index.
                assert!(
                    a < 0x8000_0000,
                    "long-mode absolute address must be < 2 GiB"
                );
                self.code.push(r | 0b100); // mod=00 rm=100: SIB follows
                self.code.push(0x25); // SIB: scale=0 index=none(100) base=none(101)
                self.bytes(&a.to_le_bytes());
            }
            (_, Mem::Base(base, d)) => {
                self.code.push(0x80 | r | base as u8); // mod=10: [base + disp32]
                if base == Reg::Esp {
                    self.code.push(0x24); // SIB: base=esp, no index
                }
                self.bytes(&d.to_le_bytes());
            }
        }
    }

    fn fixup(&mut self, label: Label, kind: FixKind, size: usize) {
        let at = self.code.len();
        self.code.extend(std::iter::repeat_n(0, size));
        self.fixups.push(Fixup {
            at,
            end: self.code.len(),
            label,
            kind,
        });
    }

    // ---------------------------------------------------------------- moves

    /// `mov r32, imm32` — `B8+r id`.
    pub fn mov_imm(&mut self, r: Reg, imm: u32) {
        self.o32();
        self.code.push(0xb8 + r as u8);
        self.dd(imm);
    }

    /// `mov r32, imm32` where imm32 is the address of label `l` — `B8+r id`.
    pub fn mov_label(&mut self, r: Reg, l: Label) {
        self.o32();
        self.code.push(0xb8 + r as u8);
        self.fixup(l, FixKind::Abs32, 4);
    }

    /// `mov al, imm8` — `B0 ib`.
    pub fn mov_al(&mut self, imm: u8) {
        self.bytes(&[0xb0, imm]);
    }

    /// `mov dx, imm16` — `BA iw` (with `66` outside real mode).
    pub fn mov_dx(&mut self, imm: u16) {
        self.o16();
        self.code.push(0xba);
        self.bytes(&imm.to_le_bytes());
    }

    /// `mov dst, src` (32-bit) — `89 /r`.
    pub fn mov_rr(&mut self, dst: Reg, src: Reg) {
        self.o32();
        self.code.push(0x89);
        self.modrm_reg(src as u8, dst);
    }

    /// `mov dst, dword [mem]` — `8B /r`.
    pub fn mov_load(&mut self, dst: Reg, mem: Mem) {
        self.o32();
        self.code.push(0x8b);
        self.modrm_mem(dst as u8, mem);
    }

    /// `mov dword [mem], src` — `89 /r`.
    pub fn mov_store(&mut self, mem: Mem, src: Reg) {
        self.o32();
        self.code.push(0x89);
        self.modrm_mem(src as u8, mem);
    }

    /// `mov dword [mem], imm32` — `C7 /0 id`.
    pub fn mov_mem_imm32(&mut self, mem: Mem, imm: u32) {
        self.o32();
        self.code.push(0xc7);
        self.modrm_mem(0, mem);
        self.dd(imm);
    }

    /// `mov byte [mem], r8` — `88 /r`; `src` names its low byte (al, cl, dl, bl only).
    pub fn mov_store8(&mut self, mem: Mem, src: Reg) {
        assert!((src as u8) < 4, "only al, cl, dl, bl");
        self.code.push(0x88);
        self.modrm_mem(src as u8, mem);
    }

    /// `mov byte [mem], imm8` — `C6 /0 ib`.
    pub fn mov_mem_imm8(&mut self, mem: Mem, imm: u8) {
        self.code.push(0xc6);
        self.modrm_mem(0, mem);
        self.code.push(imm);
    }

    /// `movzx dst, byte [mem]` (32-bit destination) — `0F B6 /r`.
    pub fn movzx_load8(&mut self, dst: Reg, mem: Mem) {
        self.o32();
        self.bytes(&[0x0f, 0xb6]);
        self.modrm_mem(dst as u8, mem);
    }

    /// `movzx dst, word [mem]` (32-bit destination) — `0F B7 /r`.
    pub fn movzx_load16(&mut self, dst: Reg, mem: Mem) {
        self.o32();
        self.bytes(&[0x0f, 0xb7]);
        self.modrm_mem(dst as u8, mem);
    }

    /// `mov ax, cs` — `8C C8` (real mode: copy the code segment).
    pub fn mov_ax_cs(&mut self) {
        self.bytes(&[0x8c, 0xc8]);
    }

    /// `mov ds, ax` — `8E D8`.
    pub fn mov_ds_ax(&mut self) {
        self.bytes(&[0x8e, 0xd8]);
    }

    /// `mov es, ax` — `8E C0`.
    pub fn mov_es_ax(&mut self) {
        self.bytes(&[0x8e, 0xc0]);
    }

    /// `mov ss, ax` — `8E D0`.
    pub fn mov_ss_ax(&mut self) {
        self.bytes(&[0x8e, 0xd0]);
    }

    /// `mov eax, cr0` (`mov rax, cr0` in long mode) — `0F 20 C0`.
    pub fn mov_eax_cr0(&mut self) {
        self.bytes(&[0x0f, 0x20, 0xc0]);
    }

    /// `mov cr0, eax` (`mov cr0, rax` in long mode) — `0F 22 C0`.
    pub fn mov_cr0_eax(&mut self) {
        self.bytes(&[0x0f, 0x22, 0xc0]);
    }

    // ---------------------------------------------------------------- arithmetic

    /// Group-1 ALU op with imm32: `81 /op id`.
    fn alu_imm(&mut self, op: u8, r: Reg, imm: u32) {
        self.o32();
        self.code.push(0x81);
        self.modrm_reg(op, r);
        self.dd(imm);
    }

    /// `add r32, imm32` — `81 /0 id`.
    pub fn add_imm(&mut self, r: Reg, imm: u32) {
        self.alu_imm(0, r, imm);
    }

    /// `and r32, imm32` — `81 /4 id`.
    pub fn and_imm(&mut self, r: Reg, imm: u32) {
        self.alu_imm(4, r, imm);
    }

    /// `or r32, imm32` — `81 /1 id`.
    pub fn or_imm(&mut self, r: Reg, imm: u32) {
        self.alu_imm(1, r, imm);
    }

    /// `sub r32, imm32` — `81 /5 id`.
    pub fn sub_imm(&mut self, r: Reg, imm: u32) {
        self.alu_imm(5, r, imm);
    }

    /// `cmp r32, imm32` — `81 /7 id`.
    pub fn cmp_imm(&mut self, r: Reg, imm: u32) {
        self.alu_imm(7, r, imm);
    }

    /// `add dst, src` (32-bit) — `01 /r`.
    pub fn add_rr(&mut self, dst: Reg, src: Reg) {
        self.o32();
        self.code.push(0x01);
        self.modrm_reg(src as u8, dst);
    }

    /// `add dst, dword [mem]` — `03 /r`.
    pub fn add_load(&mut self, dst: Reg, mem: Mem) {
        self.o32();
        self.code.push(0x03);
        self.modrm_mem(dst as u8, mem);
    }

    /// `xor dst, src` (32-bit) — `31 /r`.
    pub fn xor_rr(&mut self, dst: Reg, src: Reg) {
        self.o32();
        self.code.push(0x31);
        self.modrm_reg(src as u8, dst);
    }

    /// `cmp a, b` (32-bit; flags of a - b) — `39 /r`.
    pub fn cmp_rr(&mut self, a: Reg, b: Reg) {
        self.o32();
        self.code.push(0x39);
        self.modrm_reg(b as u8, a);
    }

    /// `test a, b` (32-bit) — `85 /r`.
    pub fn test_rr(&mut self, a: Reg, b: Reg) {
        self.o32();
        self.code.push(0x85);
        self.modrm_reg(b as u8, a);
    }

    /// `test eax, imm32` — `A9 id`.
    pub fn test_eax_imm(&mut self, imm: u32) {
        self.o32();
        self.code.push(0xa9);
        self.dd(imm);
    }

    /// `test al, imm8` — `A8 ib`.
    pub fn test_al(&mut self, imm: u8) {
        self.bytes(&[0xa8, imm]);
    }

    /// `test al, al` — `84 C0`.
    pub fn test_al_al(&mut self) {
        self.bytes(&[0x84, 0xc0]);
    }

    /// `cmp dword [mem], imm32` — `81 /7 id`.
    pub fn cmp_mem_imm32(&mut self, mem: Mem, imm: u32) {
        self.o32();
        self.code.push(0x81);
        self.modrm_mem(7, mem);
        self.dd(imm);
    }

    /// `cmp word [mem], imm16` — `81 /7 iw` (with `66` outside real mode).
    pub fn cmp_mem_imm16(&mut self, mem: Mem, imm: u16) {
        self.o16();
        self.code.push(0x81);
        self.modrm_mem(7, mem);
        self.bytes(&imm.to_le_bytes());
    }

    /// `cmp byte [mem], imm8` — `80 /7 ib`.
    pub fn cmp_mem_imm8(&mut self, mem: Mem, imm: u8) {
        self.code.push(0x80);
        self.modrm_mem(7, mem);
        self.code.push(imm);
    }

    /// `inc r32` — `FF /0` (not `40+r`, which is a REX prefix in long mode).
    pub fn inc(&mut self, r: Reg) {
        self.o32();
        self.code.push(0xff);
        self.modrm_reg(0, r);
    }

    /// `dec r32` — `FF /1`.
    pub fn dec(&mut self, r: Reg) {
        self.o32();
        self.code.push(0xff);
        self.modrm_reg(1, r);
    }

    /// `lock inc dword [mem]` — `F0 FF /0`.
    pub fn lock_inc_mem32(&mut self, mem: Mem) {
        self.code.push(0xf0);
        self.o32();
        self.code.push(0xff);
        self.modrm_mem(0, mem);
    }

    /// `shr r32, imm8` — `C1 /5 ib`.
    pub fn shr_imm(&mut self, r: Reg, n: u8) {
        self.o32();
        self.code.push(0xc1);
        self.modrm_reg(5, r);
        self.code.push(n);
    }

    /// `shl r32, imm8` — `C1 /4 ib`.
    pub fn shl_imm(&mut self, r: Reg, n: u8) {
        self.o32();
        self.code.push(0xc1);
        self.modrm_reg(4, r);
        self.code.push(n);
    }

    /// `rol r32, imm8` — `C1 /0 ib`.
    pub fn rol_imm(&mut self, r: Reg, n: u8) {
        self.o32();
        self.code.push(0xc1);
        self.modrm_reg(0, r);
        self.code.push(n);
    }

    /// `and al, imm8` — `24 ib`.
    pub fn and_al(&mut self, imm: u8) {
        self.bytes(&[0x24, imm]);
    }

    /// `add al, imm8` — `04 ib`.
    pub fn add_al(&mut self, imm: u8) {
        self.bytes(&[0x04, imm]);
    }

    /// `cmp al, imm8` — `3C ib`.
    pub fn cmp_al(&mut self, imm: u8) {
        self.bytes(&[0x3c, imm]);
    }

    /// `bts dst, bit` (32-bit: set bit `bit & 31` of `dst`) — `0F AB /r`.
    pub fn bts_rr(&mut self, dst: Reg, bit: Reg) {
        self.o32();
        self.bytes(&[0x0f, 0xab]);
        self.modrm_reg(bit as u8, dst);
    }

    // ---------------------------------------------------------------- control flow

    /// `jmp rel` — `E9 cd` (`E9 cw` in real mode).
    pub fn jmp(&mut self, l: Label) {
        self.code.push(0xe9);
        if self.mode == Mode::Real16 {
            self.fixup(l, FixKind::Rel16, 2);
        } else {
            self.fixup(l, FixKind::Rel32, 4);
        }
    }

    /// `jmp far selector:label` (protected mode: reloads CS from the GDT) — `EA cd cw`.
    pub fn jmp_far(&mut self, selector: u16, l: Label) {
        assert_eq!(
            self.mode,
            Mode::Protected32,
            "jmp far ptr16:32 is a 32-bit encoding"
        );
        self.code.push(0xea);
        self.fixup(l, FixKind::Abs32, 4);
        self.bytes(&selector.to_le_bytes());
    }

    /// `jmp far selector:addr` with a 32-bit offset from real mode (the jump into protected
    /// mode after setting CR0.PE) — `66 EA id iw`.
    pub fn jmp_far32_from_real(&mut self, selector: u16, addr: u32) {
        assert_eq!(
            self.mode,
            Mode::Real16,
            "the 66 prefix makes it 32-bit in real mode"
        );
        self.bytes(&[0x66, 0xea]);
        self.dd(addr);
        self.bytes(&selector.to_le_bytes());
    }

    /// `jmp rel8` — `EB cb`.
    pub fn jmp_short(&mut self, l: Label) {
        self.code.push(0xeb);
        self.fixup(l, FixKind::Rel8, 1);
    }

    /// `jcc rel8` — `70+cc cb`.
    pub fn j(&mut self, cond: Cond, l: Label) {
        self.code.push(0x70 + cond as u8);
        self.fixup(l, FixKind::Rel8, 1);
    }

    /// `jcc rel32` — `0F 80+cc cd` (`cw` in real mode).
    pub fn j_near(&mut self, cond: Cond, l: Label) {
        self.bytes(&[0x0f, 0x80 + cond as u8]);
        if self.mode == Mode::Real16 {
            self.fixup(l, FixKind::Rel16, 2);
        } else {
            self.fixup(l, FixKind::Rel32, 4);
        }
    }

    /// `loop rel8` — `E2 cb`: decrement cx/ecx/rcx, jump while it is not zero.
    pub fn loop_to(&mut self, l: Label) {
        self.code.push(0xe2);
        self.fixup(l, FixKind::Rel8, 1);
    }

    // ---------------------------------------------------------------- system / misc

    /// `cpuid` — `0F A2`.
    pub fn cpuid(&mut self) {
        self.bytes(&[0x0f, 0xa2]);
    }

    /// `rdmsr` (edx:eax = MSR[ecx]) — `0F 32`.
    pub fn rdmsr(&mut self) {
        self.bytes(&[0x0f, 0x32]);
    }

    /// `sgdt [mem]` — `0F 01 /0` (stores limit u16 then base: u32, or u64 in long mode).
    pub fn sgdt(&mut self, mem: Mem) {
        self.bytes(&[0x0f, 0x01]);
        self.modrm_mem(0, mem);
    }

    /// `lgdt [mem]` — `0F 01 /2`.
    pub fn lgdt(&mut self, mem: Mem) {
        self.bytes(&[0x0f, 0x01]);
        self.modrm_mem(2, mem);
    }

    /// `lidt [mem]` — `0F 01 /3`.
    pub fn lidt(&mut self, mem: Mem) {
        self.bytes(&[0x0f, 0x01]);
        self.modrm_mem(3, mem);
    }

    /// `push r` (32-bit in protected mode, 64-bit in long mode) — `50+r`.
    pub fn push(&mut self, r: Reg) {
        self.code.push(0x50 + r as u8);
    }

    /// `pop r` — `58+r`.
    pub fn pop(&mut self, r: Reg) {
        self.code.push(0x58 + r as u8);
    }

    /// `iret` (`iretd` in protected mode) — `CF`.
    pub fn iret(&mut self) {
        self.code.push(0xcf);
    }

    /// `hlt` — `F4`.
    pub fn hlt(&mut self) {
        self.code.push(0xf4);
    }

    /// `cli` — `FA`.
    pub fn cli(&mut self) {
        self.code.push(0xfa);
    }

    /// `sti` — `FB`.
    pub fn sti(&mut self) {
        self.code.push(0xfb);
    }

    /// `cld` — `FC`.
    pub fn cld(&mut self) {
        self.code.push(0xfc);
    }

    /// `nop` — `90`.
    pub fn nop(&mut self) {
        self.code.push(0x90);
    }

    /// `pause` — `F3 90`.
    pub fn pause(&mut self) {
        self.bytes(&[0xf3, 0x90]);
    }

    /// `int3` — `CC`.
    pub fn int3(&mut self) {
        self.code.push(0xcc);
    }

    /// `ud2` (raises #UD) — `0F 0B`.
    pub fn ud2(&mut self) {
        self.bytes(&[0x0f, 0x0b]);
    }

    /// `rep movsb` (copy ecx bytes from [esi] to [edi]) — `F3 A4`.
    pub fn rep_movsb(&mut self) {
        self.bytes(&[0xf3, 0xa4]);
    }

    /// `lodsb` (al = [esi], esi += 1) — `AC`.
    pub fn lodsb(&mut self) {
        self.code.push(0xac);
    }
}

mod port_io;
#[cfg(test)]
mod tests;
