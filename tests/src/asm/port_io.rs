// SPDX-License-Identifier: Apache-2.0
//! The port I/O instructions of [`Asm`]: `in`/`out` with dx or an immediate port, and the
//! string forms (`rep insb`, `rep insw`, `rep outsb`) that bring several elements per exit.

use super::Asm;

impl Asm {
    /// `out dx, al` — `EE`.
    pub fn out_dx_al(&mut self) {
        self.code.push(0xee);
    }

    /// `out dx, ax` — `EF` with a 16-bit operand size.
    pub fn out_dx_ax(&mut self) {
        self.o16();
        self.code.push(0xef);
    }

    /// `out dx, eax` — `EF` with a 32-bit operand size.
    pub fn out_dx_eax(&mut self) {
        self.o32();
        self.code.push(0xef);
    }

    /// `in al, dx` — `EC`.
    pub fn in_al_dx(&mut self) {
        self.code.push(0xec);
    }

    /// `in ax, dx` — `ED` with a 16-bit operand size.
    pub fn in_ax_dx(&mut self) {
        self.o16();
        self.code.push(0xed);
    }

    /// `in eax, dx` — `ED` with a 32-bit operand size.
    pub fn in_eax_dx(&mut self) {
        self.o32();
        self.code.push(0xed);
    }

    /// `rep insb` (read ecx bytes from port dx, one access each, to es:[edi]) — `F3 6C`.
    pub fn rep_insb(&mut self) {
        self.bytes(&[0xf3, 0x6c]);
    }

    /// `rep insw` (read ecx words from port dx to es:[edi]) — `F3 6D` with a 16-bit
    /// operand size (`66 F3 6D` outside real mode, as gas orders the prefixes).
    pub fn rep_insw(&mut self) {
        self.o16();
        self.bytes(&[0xf3, 0x6d]);
    }

    /// `rep outsb` (write ecx bytes from ds:[esi] to port dx, one access each) — `F3 6E`.
    pub fn rep_outsb(&mut self) {
        self.bytes(&[0xf3, 0x6e]);
    }

    /// `out imm8, al` — `E6 ib`.
    pub fn out_imm_al(&mut self, port: u8) {
        self.bytes(&[0xe6, port]);
    }

    /// `in al, imm8` — `E4 ib`.
    pub fn in_al_imm(&mut self, port: u8) {
        self.bytes(&[0xe4, port]);
    }
}
