//! PVH boot: ELF kernels with the Xen PHYS32_ENTRY note, entered in 32-bit protected mode
//! with paging off and EBX pointing at `struct hvm_start_info`.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{
    self, print, print_hex32, pvh_asm, pvh_kernel, reset_i8042, start_info, HVM_START_MAGIC,
    SCRATCH,
};
use polyvisor_tests::{run_kernel, Asm, Cond, Mem, PvhNote, Reg, TempDir};

/// `cmp dword [ebx], HVM_START_MAGIC; jne <bad>` — the label is returned unbound.
fn check_magic(a: &mut Asm) -> polyvisor_tests::Label {
    let bad = a.label();
    a.cmp_mem_imm32(Mem::Base(Reg::Ebx, start_info::MAGIC), HVM_START_MAGIC); // cmp [ebx], magic
    a.j_near(Cond::Ne, bad); // jne bad
    bad
}

/// Prints the hello line, `magic ok` if EBX points at the start_info magic, `cr0 ok` if
/// protected mode is on and paging off, then resets.
fn hello_guest(text: &str) -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, text); // the greeting
    print(&mut a, "start_info="); // where EBX points, for the log
    print_hex32(&mut a, Reg::Ebx);
    print(&mut a, "\n");
    let bad_magic = check_magic(&mut a);
    print(&mut a, "magic ok\n");
    a.bind(bad_magic);
    let bad_cr0 = a.label();
    a.mov_eax_cr0(); // mov eax, cr0
    a.test_eax_imm(1); // test eax, CR0.PE
    a.j(Cond::E, bad_cr0); // jz bad_cr0: not in protected mode
    a.mov_eax_cr0(); // mov eax, cr0
    a.test_eax_imm(0x8000_0000); // test eax, CR0.PG
    a.j(Cond::Ne, bad_cr0); // jnz bad_cr0: paging on
    print(&mut a, "cr0 ok\n");
    a.bind(bad_cr0);
    reset_i8042(&mut a);
    a.finish()
}

#[test]
fn pvh_hello_with_start_info() {
    polyvisor_tests::require_kvm!();
    let out = run_kernel(&pvh_kernel(hello_guest("Hello from PVH\n")), &[]);
    out.assert_guest_reset();
    out.assert_stdout_contains("Hello from PVH\n");
    out.assert_stdout_contains("magic ok\n");
    out.assert_stdout_contains("cr0 ok\n");
}

#[test]
fn pvh_note_with_64bit_descriptor() {
    polyvisor_tests::require_kvm!();
    let code = hello_guest("Hello from PVH (u64 note)\n");
    let kernel = guest::pvh_kernel_with_note(code, PvhNote::Desc64(guest::PVH_ENTRY));
    let out = run_kernel(&kernel, &["--memory", "128M"]);
    out.assert_guest_reset();
    out.assert_stdout_contains("Hello from PVH (u64 note)\n");
    out.assert_stdout_contains("magic ok\n");
}

/// Loads an empty IDT (limit 0), then runs `fault`: its exception cannot be delivered
/// (#GP), nor can that (#DF), so the CPU triple-faults, which resets a PC.
fn triple_fault_guest(fault: impl FnOnce(&mut Asm)) -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "before fault\n");
    a.mov_mem_imm32(Mem::Abs(SCRATCH), 0); // IDT descriptor: limit 0 ...
    a.mov_mem_imm32(Mem::Abs(SCRATCH + 4), 0); // ... base 0
    a.lidt(Mem::Abs(SCRATCH)); // lidt [SCRATCH]: an empty IDT
    fault(&mut a);
    print(&mut a, "after fault\n");
    reset_i8042(&mut a);
    pvh_kernel(a.finish())
}

fn assert_triple_fault_resets(kernel: &[u8]) {
    let out = run_kernel(kernel, &[]);
    out.assert_guest_reset();
    out.assert_stdout_contains("before fault\n");
    assert!(
        !out.stdout.contains("after fault"),
        "the faulting instruction did not fault\n{out}"
    );
}

// Note: `int3` with an empty IDT is not used here: this host's software KVM (kvm_pvm)
// reports KVM_EXIT_INTERNAL_ERROR for it instead of a shutdown, so polyvisor (correctly)
// fails with exit 1. #UD and #GP triple-fault as they should.

#[test]
fn pvh_triple_fault_on_ud2_resets() {
    polyvisor_tests::require_kvm!();
    assert_triple_fault_resets(&triple_fault_guest(|a| {
        a.ud2(); // ud2 -> #UD -> #GP -> #DF -> triple fault
    }));
}

#[test]
fn pvh_triple_fault_on_bad_segment_resets() {
    polyvisor_tests::require_kvm!();
    assert_triple_fault_resets(&triple_fault_guest(|a| {
        a.mov_imm(Reg::Eax, 0x1234); // a selector beyond the GDT's limit
        a.mov_ds_ax(); // mov ds, ax -> #GP -> #GP -> #DF -> triple fault
    }));
}

#[test]
fn pvh_unmapped_mmio_and_unknown_ports_are_harmless() {
    polyvisor_tests::require_kvm!();
    const HOLE: u32 = 0xd000_0000; // nothing is mapped there
    const PORT: u16 = 0x1234; // no device there
    let mut a = pvh_asm();
    a.mov_mem_imm32(Mem::Abs(HOLE), 0x1234_5678); // mov dword [HOLE], 0x12345678
    a.mov_load(Reg::Edi, Mem::Abs(HOLE)); // mov edi, [HOLE]
    a.mov_mem_imm8(Mem::Abs(HOLE + 0x11), 0xab); // mov byte [HOLE+0x11], 0xab (unaligned)
    a.movzx_load8(Reg::Esi, Mem::Abs(HOLE + 0x11)); // movzx esi, byte [HOLE+0x11]
    a.mov_dx(PORT); // mov dx, 0x1234
    a.mov_al(0x5a); // mov al, 0x5a
    a.out_dx_al(); // out dx, al
    a.in_al_dx(); // in al, dx
    a.out_dx_ax(); // out dx, ax
    a.in_ax_dx(); // in ax, dx
    a.mov_imm(Reg::Eax, 0xdead_beef); // mov eax, 0xdeadbeef
    a.out_dx_eax(); // out dx, eax
    a.in_eax_dx(); // in eax, dx
    a.mov_rr(Reg::Ebp, Reg::Eax); // mov ebp, eax
    print(&mut a, "mmio32=");
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, " mmio8=");
    print_hex32(&mut a, Reg::Esi);
    print(&mut a, " pio32=");
    print_hex32(&mut a, Reg::Ebp);
    print(&mut a, "\nstill alive\n");
    reset_i8042(&mut a);
    let out = run_kernel(&pvh_kernel(a.finish()), &[]);
    out.assert_guest_reset();
    out.assert_stdout_contains("still alive\n");
    // Reads of nothing are expected to float high, as on a PC; logged, not required.
    eprintln!("unmapped reads: {:?}", out.stdout.lines().next());
}

#[test]
fn pvh_cmdline_reaches_guest() {
    polyvisor_tests::require_kvm!();
    let mut a = pvh_asm();
    let bad = check_magic(&mut a);
    a.mov_load(Reg::Esi, Mem::Base(Reg::Ebx, start_info::CMDLINE_PADDR)); // esi = cmdline_paddr
    print(&mut a, "cmdline=[");
    a.mov_imm(Reg::Ecx, 512); // at most 512 characters
    let next = a.here_label();
    let end = a.label();
    a.lodsb(); // al = [esi++]
    a.test_al_al(); // NUL?
    a.j(Cond::E, end); // jz end
    a.out_dx_al(); // out dx, al
    a.loop_to(next); // loop next
    a.bind(end);
    print(&mut a, "]\n");
    a.bind(bad);
    reset_i8042(&mut a);
    let cmdline = "polyvisor-test key=value console=ttyS0";
    let out = run_kernel(&pvh_kernel(a.finish()), &["--cmdline", cmdline]);
    out.assert_guest_reset();
    let seen = out.stdout_field("cmdline=[").unwrap_or_default();
    assert!(
        seen.ends_with(']') && seen.contains(cmdline),
        "the guest did not see the command line {cmdline:?}\n{out}"
    );
}

#[test]
fn pvh_initrd_is_module_0() {
    polyvisor_tests::require_kvm!();
    let mut a = pvh_asm();
    let bad = check_magic(&mut a);
    print(&mut a, "modules=");
    a.mov_load(Reg::Edi, Mem::Base(Reg::Ebx, start_info::NR_MODULES)); // edi = nr_modules
    print_hex32(&mut a, Reg::Edi);
    let end = a.label();
    a.cmp_imm(Reg::Edi, 0); // no module?
    a.j_near(Cond::E, end); // je end
    a.mov_load(Reg::Esi, Mem::Base(Reg::Ebx, start_info::MODLIST_PADDR)); // esi = modlist
    print(&mut a, " size=");
    a.mov_load(Reg::Edi, Mem::Base(Reg::Esi, 8)); // edi = modlist[0].size (low)
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, " data=[");
    a.mov_load(Reg::Esi, Mem::Base(Reg::Esi, 0)); // esi = modlist[0].paddr (low)
    a.mov_imm(Reg::Ecx, 16); // 16 bytes
    let next = a.here_label();
    a.lodsb(); // al = [esi++]
    a.out_dx_al(); // out dx, al
    a.loop_to(next); // loop next
    print(&mut a, "]");
    a.bind(end);
    print(&mut a, "\n");
    a.bind(bad);
    reset_i8042(&mut a);

    let dir = TempDir::new();
    let mut initrd = b"POLYVISOR-INITRD".to_vec();
    initrd.resize(0x1000, 0x5a);
    let initrd = dir.write("initrd.img", &initrd);
    let initrd = initrd.to_str().expect("utf-8 temp path");
    let out = run_kernel(&pvh_kernel(a.finish()), &["--initrd", initrd]);
    out.assert_guest_reset();
    out.assert_stdout_contains("modules=00000001 size=00001000 data=[POLYVISOR-INITRD]\n");
}

/// Prints the start_info version, the memmap's entry count, first entry and the end of the
/// highest RAM (type 1) entry below 4 GiB.
fn memmap_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    let bad = check_magic(&mut a);
    print(&mut a, "version=");
    a.mov_load(Reg::Edi, Mem::Base(Reg::Ebx, start_info::VERSION)); // edi = version
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, " entries=");
    a.mov_load(Reg::Edi, Mem::Base(Reg::Ebx, start_info::MEMMAP_ENTRIES)); // edi = count
    print_hex32(&mut a, Reg::Edi);
    a.mov_load(Reg::Esi, Mem::Base(Reg::Ebx, start_info::MEMMAP_PADDR)); // esi = memmap
    print(&mut a, " first=");
    a.mov_load(Reg::Edi, Mem::Base(Reg::Esi, 4)); // edi = entry[0].addr high
    print_hex32(&mut a, Reg::Edi);
    a.mov_load(Reg::Edi, Mem::Base(Reg::Esi, 0)); // edi = entry[0].addr low
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, " type=");
    a.mov_load(Reg::Edi, Mem::Base(Reg::Esi, 16)); // edi = entry[0].type
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, "\n");

    // ebp = min(count, 128); edi = max(addr + size) over RAM entries (low 32 bits).
    a.mov_load(Reg::Ebp, Mem::Base(Reg::Ebx, start_info::MEMMAP_ENTRIES)); // ebp = count
    let bounded = a.label();
    a.cmp_imm(Reg::Ebp, 128); // cmp ebp, 128
    a.j(Cond::Be, bounded); // jbe bounded
    a.mov_imm(Reg::Ebp, 128); // mov ebp, 128
    a.bind(bounded);
    a.xor_rr(Reg::Edi, Reg::Edi); // edi = 0
    let top = a.here_label();
    let done = a.label();
    let skip = a.label();
    a.test_rr(Reg::Ebp, Reg::Ebp); // entries left?
    a.j(Cond::E, done); // jz done
    a.cmp_mem_imm32(Mem::Base(Reg::Esi, 16), 1); // type == RAM?
    a.j(Cond::Ne, skip); // jne skip
    a.mov_load(Reg::Eax, Mem::Base(Reg::Esi, 0)); // eax = addr
    a.add_load(Reg::Eax, Mem::Base(Reg::Esi, 8)); // eax += size
    a.cmp_rr(Reg::Eax, Reg::Edi); // cmp eax, edi
    a.j(Cond::Be, skip); // jbe skip
    a.mov_rr(Reg::Edi, Reg::Eax); // edi = eax
    a.bind(skip);
    a.add_imm(Reg::Esi, start_info::MEMMAP_ENTRY_SIZE); // next entry
    a.dec(Reg::Ebp); // dec ebp
    a.jmp_short(top); // jmp top
    a.bind(done);
    print(&mut a, "ram_end=");
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, "\n");
    a.bind(bad);
    reset_i8042(&mut a);
    a.finish()
}

#[test]
fn pvh_memmap_describes_64m() {
    polyvisor_tests::require_kvm!();
    let out = run_kernel(&pvh_kernel(memmap_guest()), &["--memory", "64M"]);
    out.assert_guest_reset();
    let version = out.hex_field("version=");
    let entries = out.hex_field("entries=");
    assert!(
        version >= 1,
        "start_info version {version} has no memmap\n{out}"
    );
    assert!(entries >= 1, "memmap is empty\n{out}");
    assert_eq!(out.hex_field("first="), 0, "first entry's address\n{out}");
    assert_eq!(out.hex_field("type="), 1, "first entry's type (RAM)\n{out}");
    // RAM must not be claimed beyond 64 MiB; a VMM may reserve a little at the top.
    let end = out.hex_field("ram_end=");
    assert!(
        (60 << 20..=64 << 20).contains(&end),
        "highest RAM entry should end at (or just below) 64 MiB, not {end:#x}\n{out}"
    );
}

/// Prints the GDT descriptors that CS and DS were loaded from: `cs=<sel> <desc>` and
/// `ds=<sel> <desc>`, each descriptor as 16 hex digits.
fn boot_gdt_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    a.sgdt(Mem::Abs(SCRATCH)); // sgdt [SCRATCH]: limit u16, base u32
    for (name, mov_from_sreg) in [("cs=", [0x8c, 0xc8]), (" ds=", [0x8c, 0xd8])] {
        print(&mut a, name);
        a.bytes(&mov_from_sreg); // mov eax, cs / mov eax, ds
        a.and_imm(Reg::Eax, 0xfff8); // eax = selector's offset in the GDT
        a.mov_rr(Reg::Esi, Reg::Eax); // esi = offset
        print_hex32(&mut a, Reg::Esi);
        print(&mut a, " ");
        a.add_load(Reg::Esi, Mem::Abs(SCRATCH + 2)); // esi = GDT base + offset
        a.mov_load(Reg::Edi, Mem::Base(Reg::Esi, 4)); // edi = descriptor high dword
        print_hex32(&mut a, Reg::Edi);
        a.mov_load(Reg::Edi, Mem::Base(Reg::Esi, 0)); // edi = descriptor low dword
        print_hex32(&mut a, Reg::Edi);
    }
    print(&mut a, "\n");
    reset_i8042(&mut a);
    pvh_kernel(a.finish())
}

/// Base, limit (in bytes), access byte and flags nibble of a segment descriptor.
fn decode_descriptor(d: u64) -> (u64, u64, u8, u8) {
    let base = ((d >> 16) & 0xff_ffff) | ((d >> 32) & 0xff00_0000);
    let raw_limit = (d & 0xffff) | ((d >> 32) & 0xf_0000);
    let flags = ((d >> 52) & 0xf) as u8;
    let limit = if flags & 0x8 != 0 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    (base, limit, ((d >> 40) & 0xff) as u8, flags)
}

#[test]
fn pvh_boot_gdt_matches_the_loaded_segments() {
    polyvisor_tests::require_kvm!();
    // PVH enters with CS/DS set up as flat 32-bit segments. The GDT the VMM leaves in memory
    // must describe the same segments: the first interrupt, iret or far jump with the boot
    // selector reloads CS from it (before the guest has its own GDT).
    let out = run_kernel(&boot_gdt_guest(), &[]);
    out.assert_guest_reset();
    let cs = out.stdout_field("cs=").map(|s| s.split_whitespace().nth(1));
    let ds = out.stdout_field("ds=").map(|s| s.split_whitespace().nth(1));
    let parse = |v: Option<Option<&str>>| {
        u64::from_str_radix(v.flatten().unwrap_or(""), 16)
            .unwrap_or_else(|_| panic!("no descriptor printed\n{out}"))
    };
    let (base, limit, access, flags) = decode_descriptor(parse(cs));
    assert_eq!(
        (base, limit),
        (0, 0xffff_ffff),
        "CS descriptor not flat 4 GiB\n{out}"
    );
    assert_eq!(
        access & 0x98,
        0x98,
        "CS descriptor not a present code segment\n{out}"
    );
    assert_eq!(
        flags & 0x6,
        0x4,
        "CS descriptor is not 32-bit code (D=1, L=0): flags {flags:#x}\n{out}"
    );
    let (base, limit, access, flags) = decode_descriptor(parse(ds));
    assert_eq!(
        (base, limit),
        (0, 0xffff_ffff),
        "DS descriptor not flat 4 GiB\n{out}"
    );
    assert_eq!(
        access & 0x9a,
        0x92,
        "DS descriptor not a present writable data segment\n{out}"
    );
    assert_eq!(flags & 0x4, 0x4, "DS descriptor is not 32-bit (B=1)\n{out}");
}
