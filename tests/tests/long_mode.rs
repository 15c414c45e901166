//! ELF64 kernels without the PVH note: entered in 64-bit long mode (identity-mapped low
//! memory) with RSI pointing at the Linux zero page, as the Linux 64-bit boot protocol says.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{
    long_mode_asm, long_mode_kernel, print, print_hex32, reset_i8042, zero_page,
};
use polyvisor_tests::{run_kernel, Cond, Mem, Reg};

/// IA32_EFER and its "long mode active" bit.
const MSR_EFER: u32 = 0xc000_0080;
const EFER_LMA: u32 = 1 << 10;

#[test]
fn long_mode_hello_with_zero_page() {
    polyvisor_tests::require_kvm!();
    let mut a = long_mode_asm();
    print(&mut a, "Hello from 64-bit ELF\n");
    print(&mut a, "rsi=");
    print_hex32(&mut a, Reg::Esi); // low half of rsi, for the log
    print(&mut a, "\n");
    let bad_zp = a.label();
    a.cmp_mem_imm16(Mem::Base(Reg::Esi, zero_page::BOOT_FLAG), 0xaa55); // boot_flag
    a.j_near(Cond::Ne, bad_zp); // jne bad_zp
    a.cmp_mem_imm32(
        Mem::Base(Reg::Esi, zero_page::HEADER),
        zero_page::HDRS_MAGIC,
    ); // "HdrS"
    a.j_near(Cond::Ne, bad_zp); // jne bad_zp
    print(&mut a, "zero page ok\n");
    a.bind(bad_zp);
    let no_lma = a.label();
    a.mov_imm(Reg::Ecx, MSR_EFER); // ecx = IA32_EFER
    a.rdmsr(); // edx:eax = EFER
    a.test_eax_imm(EFER_LMA); // long mode active?
    a.j_near(Cond::E, no_lma); // jz no_lma
    print(&mut a, "long mode ok\n");
    a.bind(no_lma);
    reset_i8042(&mut a);

    let out = run_kernel(&long_mode_kernel(a.finish()), &[]);
    out.assert_guest_reset();
    out.assert_stdout_contains("Hello from 64-bit ELF\n");
    out.assert_stdout_contains("zero page ok\n");
    out.assert_stdout_contains("long mode ok\n");
}

/// Prints the command line (`cmd_line_ptr`) and the end of the highest e820 RAM entry.
fn boot_params_guest() -> Vec<u8> {
    let mut a = long_mode_asm();
    // --- command line ---
    a.mov_load(Reg::Ebx, Mem::Base(Reg::Esi, zero_page::CMD_LINE_PTR)); // ebx = cmd_line_ptr
    print(&mut a, "cmdline=[");
    a.mov_imm(Reg::Ecx, 512); // at most 512 characters
    let next = a.here_label();
    let end = a.label();
    a.movzx_load8(Reg::Eax, Mem::Base(Reg::Ebx, 0)); // eax = byte [rbx]
    a.test_al_al(); // NUL?
    a.j(Cond::E, end); // jz end
    a.out_dx_al(); // out dx, al
    a.inc(Reg::Ebx); // next character
    a.loop_to(next); // loop next
    a.bind(end);
    print(&mut a, "]\n");

    // --- e820: entries at 0x2d0, 20 bytes each: addr u64, size u64, type u32 ---
    print(&mut a, "e820 entries=");
    a.movzx_load8(Reg::Ebp, Mem::Base(Reg::Esi, zero_page::E820_ENTRIES)); // ebp = count
    print_hex32(&mut a, Reg::Ebp);
    a.mov_rr(Reg::Ebx, Reg::Esi); // rbx = zero page (upper half is 0: identity map < 4G)
    a.add_imm(Reg::Ebx, zero_page::E820_TABLE as u32); // ebx = &e820_table[0]
    a.xor_rr(Reg::Edi, Reg::Edi); // edi = highest RAM end
    let top = a.here_label();
    let done = a.label();
    let skip = a.label();
    a.test_rr(Reg::Ebp, Reg::Ebp); // entries left?
    a.j(Cond::E, done); // jz done
    a.cmp_mem_imm32(Mem::Base(Reg::Ebx, 16), 1); // type == RAM?
    a.j(Cond::Ne, skip); // jne skip
    a.mov_load(Reg::Eax, Mem::Base(Reg::Ebx, 0)); // eax = addr (low)
    a.add_load(Reg::Eax, Mem::Base(Reg::Ebx, 8)); // eax += size (low)
    a.cmp_rr(Reg::Eax, Reg::Edi); // cmp eax, edi
    a.j(Cond::Be, skip); // jbe skip
    a.mov_rr(Reg::Edi, Reg::Eax); // edi = eax
    a.bind(skip);
    a.add_imm(Reg::Ebx, 20); // next entry
    a.dec(Reg::Ebp); // dec ebp
    a.jmp_short(top); // jmp top
    a.bind(done);
    print(&mut a, " ram_end=");
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, "\n");
    reset_i8042(&mut a);
    a.finish()
}

#[test]
fn long_mode_zero_page_cmdline_and_e820() {
    polyvisor_tests::require_kvm!();
    let cmdline = "console=ttyS0 polyvisor.test=long";
    let out = run_kernel(
        &long_mode_kernel(boot_params_guest()),
        &["--memory", "64M", "--cmdline", cmdline],
    );
    out.assert_guest_reset();
    let seen = out.stdout_field("cmdline=[").unwrap_or_default();
    assert!(
        seen.ends_with(']') && seen.contains(cmdline),
        "the guest did not see the command line {cmdline:?}\n{out}"
    );
    assert!(out.hex_field("entries=") >= 1, "empty e820 table\n{out}");
    // RAM must not be claimed beyond 64 MiB; a VMM may reserve a little at the top.
    let end = out.hex_field("ram_end=");
    assert!(
        (60 << 20..=64 << 20).contains(&end),
        "highest e820 RAM entry should end at (or just below) 64 MiB, not {end:#x}\n{out}"
    );
}
