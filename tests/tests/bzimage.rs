//! bzImage kernels: the protected-mode part is loaded at `code32_start` and entered at its
//! 64-bit entry (+0x200) in long mode, with RSI at a zero page that carries the image's own
//! setup header, completed by the loader (type_of_loader, cmdline, boot_flag).
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{print, print_hex32, reset_i8042, zero_page, WRONG_ENTRY_MARKER};
use polyvisor_tests::{run_kernel, Asm, Cond, Mem, Mode, Reg};

/// Where the protected-mode part goes (`code32_start`) and its 64-bit entry.
const CODE32_START: u64 = 0x10_0000;
const ENTRY_64: u64 = CODE32_START + 0x200;
/// One setup sector after the boot sector: the payload starts at file offset 1024.
const SETUP_SECTS: u8 = 1;
/// Zero page offsets (Documentation/arch/x86/boot.rst) the guest checks.
const TYPE_OF_LOADER: i32 = 0x210;
const CMDLINE_SIZE: i32 = 0x238;
/// What this image's header says, so the guest can tell its own header was kept.
const IMAGE_CMDLINE_SIZE: u32 = 0x7ff;
const IMAGE_KERNEL_ALIGNMENT: u32 = 0x20_0000;

/// A bzImage: boot sector + one setup sector holding the setup header, then `payload`.
fn bzimage(payload: &[u8]) -> Vec<u8> {
    let mut img = vec![0u8; (usize::from(SETUP_SECTS) + 1) * 512];
    img[0x1f1] = SETUP_SECTS; // setup_sects
    img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes()); // boot_flag
    img[0x200..0x202].copy_from_slice(&[0xeb, 0x66]); // jump over the header (unused here)
    img[0x202..0x206].copy_from_slice(b"HdrS"); // header magic
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes()); // protocol 2.15
    img[0x211] = 0x01; // loadflags: LOADED_HIGH
    img[0x214..0x218].copy_from_slice(&(CODE32_START as u32).to_le_bytes()); // code32_start
    img[0x22c..0x230].copy_from_slice(&0x37ff_ffffu32.to_le_bytes()); // initrd_addr_max
    img[0x230..0x234].copy_from_slice(&IMAGE_KERNEL_ALIGNMENT.to_le_bytes()); // kernel_alignment
    img[0x238..0x23c].copy_from_slice(&IMAGE_CMDLINE_SIZE.to_le_bytes()); // cmdline_size
    img[0x258..0x260].copy_from_slice(&CODE32_START.to_le_bytes()); // pref_address
    img[0x260..0x264].copy_from_slice(&(4u32 << 20).to_le_bytes()); // init_size: 4 MiB
    img.extend_from_slice(payload);
    img
}

/// The protected-mode payload: a stub at +0 (the 32-bit entry, which a 64-bit loader must
/// not use) and the 64-bit entry at +0x200 that checks the zero page and resets.
fn payload() -> Vec<u8> {
    let mut stub = Asm::new(Mode::Protected32, CODE32_START);
    print(&mut stub, WRONG_ENTRY_MARKER);
    print(&mut stub, "\n");
    reset_i8042(&mut stub);
    let mut code = stub.finish();
    assert!(code.len() <= 0x200);
    code.resize(0x200, 0xcc);

    let mut a = Asm::new(Mode::Long64, ENTRY_64);
    print(&mut a, "Hello from bzImage\n");
    let bad = a.label();
    a.cmp_mem_imm16(Mem::Base(Reg::Esi, zero_page::BOOT_FLAG), 0xaa55); // boot_flag
    a.j_near(Cond::Ne, bad); // jne bad
    a.cmp_mem_imm32(
        Mem::Base(Reg::Esi, zero_page::HEADER),
        zero_page::HDRS_MAGIC,
    ); // "HdrS"
    a.j_near(Cond::Ne, bad); // jne bad
    a.movzx_load8(Reg::Ebx, Mem::Base(Reg::Esi, TYPE_OF_LOADER)); // ebx = type_of_loader
    print(&mut a, "loader=");
    print_hex32(&mut a, Reg::Ebx);
    a.mov_load(Reg::Ebx, Mem::Base(Reg::Esi, 0x230)); // ebx = kernel_alignment (image's)
    print(&mut a, " align=");
    print_hex32(&mut a, Reg::Ebx);
    a.mov_load(Reg::Ebx, Mem::Base(Reg::Esi, CMDLINE_SIZE)); // ebx = cmdline_size
    print(&mut a, " cmdline_size=");
    print_hex32(&mut a, Reg::Ebx);
    print(&mut a, "\nzero page ok\n");
    a.bind(bad);
    reset_i8042(&mut a);
    code.extend_from_slice(&a.finish());
    code
}

#[test]
fn bzimage_enters_64bit_entry_with_its_setup_header() {
    polyvisor_tests::require_kvm!();
    let out = run_kernel(&bzimage(&payload()), &["--cmdline", "quiet"]);
    out.assert_guest_reset();
    out.assert_stdout_contains("Hello from bzImage\n");
    // type_of_loader 0xff (undefined loader), the image's own kernel_alignment kept,
    // cmdline_size = length of "quiet".
    out.assert_stdout_contains("loader=000000ff align=00200000 cmdline_size=00000005\n");
    out.assert_stdout_contains("zero page ok\n");
    assert!(!out.stdout.contains(WRONG_ENTRY_MARKER), "{out}");
}

#[test]
fn bzimage_without_loaded_high_is_refused_naming_the_file() {
    polyvisor_tests::require_kvm!();
    let mut img = bzimage(&payload());
    img[0x211] = 0; // a zImage: loads low, which a 64-bit loader cannot do
    let out = run_kernel(&img, &[]);
    out.assert_no_panic();
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("--kernel"), "{out}");
}
