//! Kernel files whose addresses and sizes overflow or point outside guest RAM: each is one
//! error line naming `--kernel` (or `--initrd`) and exit 2, never a panic, a wrap-around
//! or a guest started at a wild address.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{pvh_asm, pvh_kernel, reset_i8042, LOAD_ADDR};
use polyvisor_tests::{run_kernel, ElfBuilder, Polyvisor, PvhNote, Segment, TempDir};

const MIB: u64 = 1 << 20;

/// A bzImage header (protocol 2.15, loaded high at 1 MiB) over `payload`, with `edit`
/// applied to the header bytes.
fn bzimage(payload_len: usize, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut img = vec![0u8; 2 * 512];
    img[0x1f1] = 1; // setup_sects
    img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x211] = 0x01; // LOADED_HIGH
    img[0x214..0x218].copy_from_slice(&(LOAD_ADDR as u32).to_le_bytes()); // code32_start
    img[0x22c..0x230].copy_from_slice(&0x37ff_ffffu32.to_le_bytes()); // initrd_addr_max
    img[0x258..0x260].copy_from_slice(&LOAD_ADDR.to_le_bytes()); // pref_address
    img[0x260..0x264].copy_from_slice(&(4u32 << 20).to_le_bytes()); // init_size
    img.resize(img.len() + payload_len, 0xf4);
    edit(&mut img);
    img
}

fn refused(kernel: &[u8], extra: &[&str], needles: &[&str]) {
    let out = run_kernel(kernel, extra);
    out.assert_clean_error(&[2], needles);
}

#[test]
fn bzimage_pref_address_plus_init_size_overflows() {
    polyvisor_tests::require_kvm!();
    let img = bzimage(0x1000, |h| {
        h[0x258..0x260].copy_from_slice(&(u64::MAX - 0x10).to_le_bytes());
    });
    refused(&img, &[], &["--kernel", "overflows"]);
}

#[test]
fn bzimage_init_size_beyond_ram() {
    polyvisor_tests::require_kvm!();
    let img = bzimage(0x1000, |h| {
        h[0x260..0x264].copy_from_slice(&u32::MAX.to_le_bytes());
    });
    refused(
        &img,
        &["--memory", "64M"],
        &["--kernel", "outside guest RAM"],
    );
}

#[test]
fn bzimage_setup_sects_past_the_file() {
    polyvisor_tests::require_kvm!();
    // 255 setup sectors = 128 KiB of setup in a 5 KiB file.
    let img = bzimage(0x1000, |h| h[0x1f1] = 0xff);
    refused(&img, &[], &["--kernel"]);
}

#[test]
fn bzimage_payload_bigger_than_ram() {
    polyvisor_tests::require_kvm!();
    let img = bzimage((5 * MIB) as usize, |_| {});
    refused(&img, &["--memory", "4M"], &["--kernel"]);
}

#[test]
fn elf_segment_wrapping_the_address_space() {
    polyvisor_tests::require_kvm!();
    let seg = Segment {
        memsz: 0x2000,
        ..Segment::new(u64::MAX - 0xfff, vec![0xf4; 16])
    };
    let elf = ElfBuilder::new(LOAD_ADDR)
        .segment(LOAD_ADDR, vec![0xf4; 16])
        .segment_with(seg)
        .build();
    refused(&elf, &[], &["--kernel"]);
}

#[test]
fn elf_bss_past_the_end_of_ram() {
    polyvisor_tests::require_kvm!();
    let seg = Segment {
        memsz: 1 << 40,
        ..Segment::new(LOAD_ADDR, vec![0xf4; 16])
    };
    let elf = ElfBuilder::new(LOAD_ADDR).segment_with(seg).build();
    refused(
        &elf,
        &["--memory", "64M"],
        &["--kernel", "outside guest RAM"],
    );
}

#[test]
fn elf_entry_outside_the_kernel() {
    polyvisor_tests::require_kvm!();
    let elf = ElfBuilder::new(0x4000_0000)
        .segment(LOAD_ADDR, vec![0xf4; 16])
        .build();
    refused(&elf, &[], &["--kernel", "entry point 0x40000000"]);
}

#[test]
fn pvh_entry_outside_the_kernel() {
    polyvisor_tests::require_kvm!();
    let elf = ElfBuilder::new(LOAD_ADDR)
        .segment(LOAD_ADDR, vec![0xf4; 0x200])
        .pvh_note(PvhNote::Desc32(0x10))
        .build();
    refused(&elf, &[], &["--kernel", "entry point 0x10"]);
}

#[test]
fn initrd_bigger_than_ram() {
    polyvisor_tests::require_kvm!();
    let mut a = pvh_asm();
    reset_i8042(&mut a);
    let dir = TempDir::new();
    let kernel = dir.write("kernel.elf", &pvh_kernel(a.finish()));
    let initrd = dir.write("initrd", &vec![0u8; (5 * MIB) as usize]);
    let out = Polyvisor::new()
        .args(["run", "--memory", "4M", "--kernel"])
        .arg(&kernel)
        .arg("--initrd")
        .arg(&initrd)
        .run();
    out.assert_clean_error(&[2], &["--initrd", "--memory"]);
}
