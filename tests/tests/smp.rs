//! `--cpus N`: the BSP starts the APs with INIT-SIPI-SIPI through its local APIC, each AP
//! reports its APIC id; the MP table lists the CPUs.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{print, print_hex32, pvh_asm, pvh_kernel, reset_i8042};
use polyvisor_tests::{run_kernel, Asm, Cond, Mem, Mode, Reg, RunOutput};

/// Physical page the BSP copies the real-mode trampoline to (guest-free low memory).
const TRAMPOLINE: u32 = 0x3_0000;
/// SIPI vector: the AP starts at CS = vector << 8, IP = 0, i.e. at vector << 12.
const SIPI_VECTOR: u32 = TRAMPOLINE >> 12;
/// Offsets in the trampoline page of the data the APs write.
const COUNT_OFF: u16 = 0x100; // u32: APs arrived (lock inc)
const FLAGS_OFF: u16 = 0x110; // u8[16]: flag per APIC id
const TRAMPOLINE_LEN: u32 = 0x120;
/// Local APIC registers (xAPIC MMIO).
const LAPIC_ID: u32 = 0xfee0_0020;
const LAPIC_SVR: u32 = 0xfee0_00f0;
const LAPIC_ICR_LO: u32 = 0xfee0_0300;
const LAPIC_ICR_HI: u32 = 0xfee0_0310;
/// ICR: destination shorthand "all excluding self" | level assert | delivery mode.
const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
/// Bounded wait for the APs: iterations of a 3-instruction loop (~1 µs each here).
const AP_WAIT_SPINS: u32 = 3_000_000;

/// The AP's real-mode code: read the APIC id with CPUID leaf 1, set flags[id], count in.
fn trampoline() -> Vec<u8> {
    let mut t = Asm::new(Mode::Real16, 0); // offsets within CS = TRAMPOLINE >> 4
    t.cli(); // cli
    t.mov_ax_cs(); // mov ax, cs
    t.mov_ds_ax(); // mov ds, ax: data at the same page
    t.mov_imm(Reg::Eax, 1); // mov eax, 1
    t.cpuid(); // cpuid: ebx[31:24] = initial APIC id
    t.shr_imm(Reg::Ebx, 24); // shr ebx, 24
    t.and_imm(Reg::Ebx, 15); // and ebx, 15: stay inside flags[]
    t.mov_mem_imm8(Mem::Base(Reg::Ebx, FLAGS_OFF.into()), 1); // mov byte [bx+FLAGS], 1
    t.lock_inc_mem32(Mem::Abs(COUNT_OFF.into())); // lock inc dword [COUNT]
    polyvisor_tests::guest::halt_forever(&mut t); // cli; hlt; jmp
    let mut code = t.finish();
    assert!(code.len() <= COUNT_OFF as usize, "trampoline code too long");
    code.resize(TRAMPOLINE_LEN as usize, 0); // zeroed COUNT and FLAGS
    code
}

/// BSP (PVH entry): install the trampoline, send INIT-SIPI-SIPI to all but self, wait
/// (bounded) for `aps` APs, print `aps=<count> seen=<ids>` and reset.
fn smp_guest(aps: u32) -> Vec<u8> {
    let flags = TRAMPOLINE + u32::from(FLAGS_OFF);
    let count = TRAMPOLINE + u32::from(COUNT_OFF);
    let mut a = pvh_asm();
    let tramp = a.label();
    // Copy the trampoline to its page.
    a.cld(); // cld
    a.mov_label(Reg::Esi, tramp); // esi = trampoline bytes in the image
    a.mov_imm(Reg::Edi, TRAMPOLINE); // edi = 0x30000
    a.mov_imm(Reg::Ecx, TRAMPOLINE_LEN); // ecx = length
    a.rep_movsb(); // rep movsb
                   // Mark the BSP's own APIC id.
    a.mov_imm(Reg::Eax, 1); // mov eax, 1
    a.cpuid(); // cpuid
    a.shr_imm(Reg::Ebx, 24); // ebx = APIC id
    a.and_imm(Reg::Ebx, 15); // and ebx, 15
    a.mov_mem_imm8(Mem::Base(Reg::Ebx, flags as i32), 1); // flags[id] = 1
    print(&mut a, "bsp lapic id=");
    a.mov_load(Reg::Edi, Mem::Abs(LAPIC_ID)); // edi = LAPIC ID register
    a.shr_imm(Reg::Edi, 24); // edi = its APIC id
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, "\n");
    // Start the APs.
    a.mov_mem_imm32(Mem::Abs(LAPIC_SVR), 0x1ff); // SVR: APIC enabled, spurious vector 0xff
    a.mov_mem_imm32(Mem::Abs(LAPIC_ICR_HI), 0); // ICR high: destination unused
    a.mov_mem_imm32(
        Mem::Abs(LAPIC_ICR_LO),
        ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT,
    ); // INIT
    a.mov_imm(Reg::Ecx, 10_000); // short delay
    let d1 = a.here_label();
    a.loop_to(d1); // loop d1
    let sipi = ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | SIPI_VECTOR;
    a.mov_mem_imm32(Mem::Abs(LAPIC_ICR_LO), sipi); // SIPI
    a.mov_imm(Reg::Ecx, 1_000); // short delay
    let d2 = a.here_label();
    a.loop_to(d2); // loop d2
    a.mov_mem_imm32(Mem::Abs(LAPIC_ICR_LO), sipi); // second SIPI
                                                   // Wait, bounded, until all APs counted in.
    a.mov_imm(Reg::Ecx, AP_WAIT_SPINS); // ecx = spin budget
    let spin = a.here_label();
    let arrived = a.label();
    a.cmp_mem_imm32(Mem::Abs(count), aps); // cmp dword [COUNT], aps
    a.j(Cond::Ae, arrived); // jae arrived
    a.loop_to(spin); // loop spin
    a.bind(arrived);
    // Report: aps=<count> seen=<one char per APIC id 0..7: digit if seen, else '-'>.
    print(&mut a, "aps=");
    a.mov_load(Reg::Edi, Mem::Abs(count)); // edi = count
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, " seen=");
    a.xor_rr(Reg::Ebx, Reg::Ebx); // ebx = id 0
    let each = a.here_label();
    let emit = a.label();
    a.cmp_mem_imm8(Mem::Base(Reg::Ebx, flags as i32), 0); // flags[id] set?
    a.mov_al(b'-'); // al = '-' (flags unchanged)
    a.j(Cond::E, emit); // je emit
    a.mov_rr(Reg::Eax, Reg::Ebx); // eax = id
    a.add_al(b'0'); // al = '0' + id
    a.bind(emit);
    a.out_dx_al(); // out dx, al
    a.inc(Reg::Ebx); // next id
    a.cmp_imm(Reg::Ebx, 8); // cmp ebx, 8
    a.j(Cond::B, each); // jb each
    print(&mut a, "\n");
    reset_i8042(&mut a);
    // The trampoline's bytes, copied at run time.
    a.align(16);
    a.bind(tramp);
    a.bytes(&trampoline());
    a.finish()
}

fn run_smp(cpus: u32) -> RunOutput {
    let out = run_kernel(
        &pvh_kernel(smp_guest(cpus - 1)),
        &["--cpus", &cpus.to_string(), "--memory", "128M"],
    );
    out.assert_guest_reset();
    out
}

#[test]
fn four_cpus_start_with_init_sipi_sipi() {
    polyvisor_tests::require_kvm!();
    let out = run_smp(4);
    out.assert_stdout_contains("bsp lapic id=00000000\n");
    out.assert_stdout_contains("aps=00000003 seen=0123----\n");
}

#[test]
fn two_cpus_start_with_init_sipi_sipi() {
    polyvisor_tests::require_kvm!();
    let out = run_smp(2);
    out.assert_stdout_contains("aps=00000001 seen=01------\n");
}

/// Scans for the MP floating pointer ("_MP_") where Linux looks (the last KiB of base
/// memory, then the BIOS area), follows it to the "PCMP" table and prints the number of
/// enabled processor entries and the mask of their APIC ids.
fn mptable_guest() -> Vec<u8> {
    const MP_SIG: u32 = u32::from_le_bytes(*b"_MP_");
    const PCMP_SIG: u32 = u32::from_le_bytes(*b"PCMP");
    let mut a = pvh_asm();
    let found = a.label();
    let end = a.label();
    for (start, stop) in [(0x9_fc00u32, 0xa_0000u32), (0xf_0000, 0x10_0000)] {
        a.mov_imm(Reg::Esi, start); // esi = start of the range
        let scan = a.here_label();
        a.cmp_mem_imm32(Mem::Base(Reg::Esi, 0), MP_SIG); // "_MP_"?
        a.j_near(Cond::E, found); // je found
        a.add_imm(Reg::Esi, 16); // 16-byte steps
        a.cmp_imm(Reg::Esi, stop); // end of range?
        a.j(Cond::B, scan); // jb scan
    }
    print(&mut a, "mp table not found\n");
    a.jmp(end); // jmp end
    a.bind(found);
    print(&mut a, "mpfp=");
    print_hex32(&mut a, Reg::Esi);
    a.mov_load(Reg::Esi, Mem::Base(Reg::Esi, 4)); // esi = config table address
    let pcmp_ok = a.label();
    a.cmp_mem_imm32(Mem::Base(Reg::Esi, 0), PCMP_SIG); // "PCMP"?
    a.j(Cond::E, pcmp_ok); // je pcmp_ok
    print(&mut a, " bad PCMP signature\n");
    a.jmp(end); // jmp end
    a.bind(pcmp_ok);
    a.movzx_load16(Reg::Ebp, Mem::Base(Reg::Esi, 0x22)); // ebp = entry count
    let bounded = a.label();
    a.cmp_imm(Reg::Ebp, 256); // at most 256 entries
    a.j(Cond::Be, bounded); // jbe bounded
    a.mov_imm(Reg::Ebp, 256); // mov ebp, 256
    a.bind(bounded);
    a.add_imm(Reg::Esi, 0x2c); // esi = first entry
    a.xor_rr(Reg::Edi, Reg::Edi); // edi = processor count
    a.xor_rr(Reg::Ebx, Reg::Ebx); // ebx = APIC id mask
    let each = a.here_label();
    let done = a.label();
    let other = a.label();
    let next = a.label();
    a.test_rr(Reg::Ebp, Reg::Ebp); // entries left?
    a.j(Cond::E, done); // jz done
    a.cmp_mem_imm8(Mem::Base(Reg::Esi, 0), 0); // type 0: processor?
    a.j(Cond::Ne, other); // jne other
    a.movzx_load8(Reg::Eax, Mem::Base(Reg::Esi, 3)); // eax = cpu flags
    a.and_imm(Reg::Eax, 1); // enabled?
    let disabled = a.label();
    a.j(Cond::E, disabled); // jz disabled
    a.inc(Reg::Edi); // count it
    a.movzx_load8(Reg::Eax, Mem::Base(Reg::Esi, 1)); // eax = APIC id
    a.bts_rr(Reg::Ebx, Reg::Eax); // mask |= 1 << id
    a.bind(disabled);
    a.add_imm(Reg::Esi, 20); // processor entries are 20 bytes
    a.jmp_short(next); // jmp next
    a.bind(other);
    a.add_imm(Reg::Esi, 8); // the others are 8 bytes
    a.bind(next);
    a.dec(Reg::Ebp); // dec ebp
    a.jmp_short(each); // jmp each
    a.bind(done);
    print(&mut a, " cpus=");
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, " apic_mask=");
    print_hex32(&mut a, Reg::Ebx);
    print(&mut a, "\n");
    a.bind(end);
    reset_i8042(&mut a);
    a.finish()
}

#[test]
fn mp_table_lists_four_cpus() {
    polyvisor_tests::require_kvm!();
    let out = run_kernel(&pvh_kernel(mptable_guest()), &["--cpus", "4"]);
    out.assert_guest_reset();
    out.assert_stdout_contains(" cpus=00000004 apic_mask=0000000f\n");
}
