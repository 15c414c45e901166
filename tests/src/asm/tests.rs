// SPDX-License-Identifier: Apache-2.0
//! Encodings checked byte by byte (cross-checked with objdump).

use super::*;

fn asm32(f: impl FnOnce(&mut Asm)) -> Vec<u8> {
    let mut a = Asm::new(Mode::Protected32, 0x10_0000);
    f(&mut a);
    a.finish()
}

#[test]
fn protected_mode_encodings() {
    assert_eq!(asm32(|a| a.mov_imm(Reg::Eax, 1)), [0xb8, 1, 0, 0, 0]);
    assert_eq!(asm32(|a| a.mov_dx(0x3f8)), [0x66, 0xba, 0xf8, 0x03]);
    assert_eq!(asm32(|a| a.mov_al(b'H')), [0xb0, 0x48]);
    assert_eq!(asm32(|a| a.out_dx_al()), [0xee]);
    assert_eq!(asm32(|a| a.out_imm_al(0x64)), [0xe6, 0x64]);
    assert_eq!(
        asm32(|a| a.cmp_mem_imm32(Mem::Base(Reg::Ebx, 0), 0x336e_c578)),
        [0x81, 0xbb, 0, 0, 0, 0, 0x78, 0xc5, 0x6e, 0x33]
    );
    assert_eq!(
        asm32(|a| a.mov_mem_imm32(Mem::Abs(0xfee0_0300), 0x000c_4500)),
        [0xc7, 0x05, 0x00, 0x03, 0xe0, 0xfe, 0x00, 0x45, 0x0c, 0x00]
    );
    assert_eq!(
        asm32(|a| a.mov_load(Reg::Eax, Mem::Base(Reg::Esp, 8))),
        [0x8b, 0x84, 0x24, 8, 0, 0, 0]
    );
    assert_eq!(asm32(|a| a.mov_rr(Reg::Eax, Reg::Edi)), [0x89, 0xf8]);
    assert_eq!(asm32(|a| a.rol_imm(Reg::Edi, 4)), [0xc1, 0xc7, 0x04]);
    assert_eq!(asm32(|a| a.shr_imm(Reg::Ebx, 24)), [0xc1, 0xeb, 0x18]);
    assert_eq!(asm32(|a| a.inc(Reg::Ebx)), [0xff, 0xc3]);
    assert_eq!(asm32(|a| a.xor_rr(Reg::Ebx, Reg::Ebx)), [0x31, 0xdb]);
    assert_eq!(asm32(|a| a.bts_rr(Reg::Ebx, Reg::Eax)), [0x0f, 0xab, 0xc3]);
    assert_eq!(
        asm32(|a| a.lidt(Mem::Abs(0x1000))),
        [0x0f, 0x01, 0x1d, 0x00, 0x10, 0, 0]
    );
    assert_eq!(asm32(|a| a.out_dx_ax()), [0x66, 0xef]);
    assert_eq!(
        asm32(|a| a.sgdt(Mem::Abs(0x1020))),
        [0x0f, 0x01, 0x05, 0x20, 0x10, 0, 0]
    );
    assert_eq!(
        asm32(|a| a.lgdt(Mem::Abs(0x1020))),
        [0x0f, 0x01, 0x15, 0x20, 0x10, 0, 0]
    );
    assert_eq!(
        asm32(|a| {
            let l = a.here_label();
            a.jmp_far(0x08, l);
        }),
        [0xea, 0x00, 0x00, 0x10, 0x00, 0x08, 0x00]
    );
    assert_eq!(asm32(|a| a.test_al(1)), [0xa8, 0x01]);
    assert_eq!(asm32(|a| a.shl_imm(Reg::Eax, 16)), [0xc1, 0xe0, 0x10]);
    assert_eq!(
        asm32(|a| a.or_imm(Reg::Eax, 0x1234)),
        [0x81, 0xc8, 0x34, 0x12, 0, 0]
    );
    assert_eq!(
        asm32(|a| {
            a.push(Reg::Edx);
            a.pop(Reg::Edx);
            a.iret();
        }),
        [0x52, 0x5a, 0xcf]
    );
    assert_eq!(
        asm32(|a| a.mov_store8(Mem::Base(Reg::Ebx, 0x1000), Reg::Eax)),
        [0x88, 0x83, 0x00, 0x10, 0, 0]
    );
    assert_eq!(asm32(|a| a.in_eax_dx()), [0xed]);
}

#[test]
fn long_mode_encodings() {
    let mut a = Asm::new(Mode::Long64, 0x10_0000);
    a.mov_load(Reg::Eax, Mem::Abs(0x1000)); // needs a SIB, not RIP-relative
    a.cmp_mem_imm16(Mem::Base(Reg::Esi, 0x1fe), 0xaa55);
    assert_eq!(
        a.finish(),
        [
            0x8b, 0x04, 0x25, 0x00, 0x10, 0, 0, // mov eax, [0x1000]
            0x66, 0x81, 0xbe, 0xfe, 0x01, 0, 0, 0x55, 0xaa, // cmp word [rsi+0x1fe], 0xaa55
        ]
    );
}

#[test]
fn real_mode_encodings() {
    let mut a = Asm::new(Mode::Real16, 0);
    a.mov_imm(Reg::Eax, 1);
    a.mov_mem_imm8(Mem::Base(Reg::Ebx, 0x40), 1);
    a.lock_inc_mem32(Mem::Abs(0x50));
    a.mov_dx(0x3f8);
    assert_eq!(
        a.finish(),
        [
            0x66, 0xb8, 1, 0, 0, 0, // mov eax, 1
            0xc6, 0x87, 0x40, 0x00, 0x01, // mov byte [bx+0x40], 1
            0xf0, 0x66, 0xff, 0x06, 0x50, 0x00, // lock inc dword [0x50]
            0xba, 0xf8, 0x03, // mov dx, 0x3f8
        ]
    );
}

#[test]
fn labels_resolve() {
    let mut a = Asm::new(Mode::Protected32, 0x10_0000);
    let top = a.here_label();
    let fwd = a.label();
    a.j(Cond::E, fwd); // 0: 74 02
    a.jmp_short(top); // 2: EB FC
    a.bind(fwd);
    a.loop_to(top); // 4: E2 FA
    a.mov_label(Reg::Esi, fwd); // 6: BE 04 00 10 00
    a.jmp(top); // 11: E9 F0 FF FF FF
    assert_eq!(a.addr_of(fwd), 0x10_0004);
    assert_eq!(
        a.finish(),
        [
            0x74, 0x02, 0xeb, 0xfc, 0xe2, 0xfa, 0xbe, 0x04, 0x00, 0x10, 0x00, 0xe9, 0xf0, 0xff,
            0xff, 0xff
        ]
    );
}

#[test]
#[should_panic(expected = "out of range")]
fn short_jump_out_of_range_panics() {
    let mut a = Asm::new(Mode::Protected32, 0);
    let l = a.label();
    a.jmp_short(l);
    a.bytes(&[0x90; 200]);
    a.bind(l);
    a.finish();
}

#[test]
fn string_io_and_mode_switch_encodings() {
    // Checked against gas: `rep insb`, `rep insw`, `rep outsb` (.code32), `mov %eax,%cr0`.
    assert_eq!(asm32(|a| a.rep_insb()), [0xf3, 0x6c]);
    assert_eq!(asm32(|a| a.rep_insw()), [0x66, 0xf3, 0x6d]);
    assert_eq!(asm32(|a| a.rep_outsb()), [0xf3, 0x6e]);
    assert_eq!(asm32(|a| a.mov_cr0_eax()), [0x0f, 0x22, 0xc0]);
    let mut a = Asm::new(Mode::Real16, 0);
    a.rep_insw(); // no prefix needed for 16-bit operands in real mode
    a.lgdt(Mem::Abs(0x100));
    a.mov_cr0_eax();
    a.jmp_far32_from_real(0x08, 0x10_0200); // ljmpl $0x08, $0x100200
    assert_eq!(
        a.finish(),
        [
            0xf3, 0x6d, // rep insw
            0x0f, 0x01, 0x16, 0x00, 0x01, // lgdt [0x100]
            0x0f, 0x22, 0xc0, // mov cr0, eax
            0x66, 0xea, 0x00, 0x02, 0x10, 0x00, 0x08, 0x00, // jmp dword 0x08:0x100200
        ]
    );
}
