// SPDX-License-Identifier: Apache-2.0
use std::io::Write;
use std::path::PathBuf;

use arch::boot::{InitrdFile, KernelFile};
use flate2::write::GzEncoder;
use flate2::Compression;

use super::*;
use crate::layout::{memory_layout, RTC, UART};

const MIB: u64 = 1 << 20;

/// A synthetic arm64 Image: header fields written little-endian, then a recognisable body.
fn image(text_offset: u64, image_size: u64, flags: u64, len: usize) -> Vec<u8> {
    let mut img = vec![0u8; len];
    img[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b +0x40
    img[8..16].copy_from_slice(&text_offset.to_le_bytes());
    img[16..24].copy_from_slice(&image_size.to_le_bytes());
    img[24..32].copy_from_slice(&flags.to_le_bytes());
    img[0x38..0x3c].copy_from_slice(b"ARM\x64");
    for (i, b) in img.iter_mut().enumerate().skip(0x40) {
        *b = (i % 251) as u8;
    }
    img
}

#[test]
fn header_fields_are_little_endian() {
    let h = parse_image_header(&image(0x1_0000, 0x2345_6789, 0b1010, 0x40)).unwrap();
    assert_eq!(
        h,
        ImageHeader {
            text_offset: 0x1_0000,
            image_size: 0x2345_6789,
            flags: 0b1010
        }
    );
    assert!(parse_image_header(&[0u8; 0x3f])
        .unwrap_err()
        .contains("too short"));
    assert!(parse_image_header(&[0u8; 0x40])
        .unwrap_err()
        .contains("magic"));
    let be = parse_image_header(&image(0, 0x1000, 1, 0x40)).unwrap_err();
    assert!(be.contains("big-endian"), "{be}");
}

const RAM: RamRange = RamRange {
    start: 0x4000_0000,
    size: 64 * MIB,
};

#[test]
fn placement_is_2mib_aligned_with_fdt_on_top() {
    let h = ImageHeader {
        text_offset: 0,
        image_size: 10 * MIB,
        flags: 0,
    };
    let p = place(RAM, &h, 8 * MIB, Some(3 * MIB + 5)).unwrap();
    assert_eq!(p.kernel_addr, 0x4000_0000);
    assert_eq!(p.kernel_end, 0x4000_0000 + 10 * MIB, "BSS counted");
    assert_eq!(p.fdt_addr, 0x4000_0000 + 62 * MIB);
    assert_eq!(p.fdt_addr % (2 * MIB), 0);
    let (addr, size) = p.initrd.unwrap();
    assert_eq!(size, 3 * MIB + 5);
    assert_eq!(addr % 0x1000, 0);
    assert!(addr + size <= p.fdt_addr && addr >= p.kernel_end);

    // Legacy header: text_offset 0x80000, footprint = file size.
    let legacy = ImageHeader {
        text_offset: 0x1234,
        image_size: 0,
        flags: 0,
    };
    let p = place(RAM, &legacy, MIB, None).unwrap();
    assert_eq!(p.kernel_addr, 0x4008_0000);
    assert_eq!(p.kernel_end, 0x4018_0000);
    assert_eq!(p.initrd, None);

    // An unaligned RAM start is rounded up to 2 MiB.
    let odd = RamRange {
        start: 0x4010_0000,
        size: 64 * MIB,
    };
    assert_eq!(place(odd, &h, MIB, None).unwrap().kernel_addr, 0x4020_0000);
}

#[test]
fn what_does_not_fit_is_refused_naming_memory() {
    let big = ImageHeader {
        text_offset: 0,
        image_size: 63 * MIB,
        flags: 0,
    };
    let e = place(RAM, &big, MIB, None).unwrap_err();
    assert!(
        matches!(e, Error::Kernel(_)) && e.to_string().contains("--memory"),
        "{e}"
    );
    let small = ImageHeader {
        image_size: 8 * MIB,
        ..big
    };
    let e = place(RAM, &small, MIB, Some(60 * MIB)).unwrap_err();
    assert!(
        matches!(e, Error::Initrd(_)) && e.to_string().contains("--memory"),
        "{e}"
    );
    let absurd = ImageHeader {
        text_offset: u64::MAX,
        ..small
    };
    assert!(place(RAM, &absurd, MIB, None).is_err());
}

#[test]
fn gunzip_round_trip_and_limit() {
    let data = image(0, 0x10_0000, 0, 0x8_0000);
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(&data).unwrap();
    let gz = enc.finish().unwrap();
    assert_eq!(gunzip(&gz[..], 1 << 20).unwrap(), data);
    assert!(gunzip(&gz[..], 0x1000).unwrap_err().contains("more than"));
    assert!(gunzip(&b"\x1f\x8b\x08garbage"[..], 1 << 20)
        .unwrap_err()
        .starts_with("gzip"));
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("pv-a64-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
    fn file(&self, name: &str, bytes: &[u8]) -> (PathBuf, std::fs::File, u64) {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        (
            p.clone(),
            std::fs::File::open(&p).unwrap(),
            bytes.len() as u64,
        )
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn request(dir: &TempDir, kernel: &[u8], format: KernelFormat, initrd: &[u8]) -> BootRequest {
    let (path, mut file, size) = dir.file("kernel", kernel);
    // boot::open_kernel leaves the file position after the bytes it sniffed.
    std::io::Read::read_exact(&mut file, &mut [0u8; 16]).unwrap();
    let (ipath, ifile, isize) = dir.file("initrd", initrd);
    BootRequest {
        kernel: KernelFile {
            path,
            file,
            size,
            format,
        },
        initrd: Some(InitrdFile {
            path: ipath,
            file: ifile,
            size: isize,
        }),
        cmdline: "console=ttyS0".into(),
    }
}

fn check_loaded(format: KernelFormat, kernel_bytes: &[u8], img: &[u8]) {
    let dir = TempDir::new(&format!("{format:?}"));
    let layout = memory_layout(64 * MIB).unwrap();
    let mem =
        GuestMemory::from_ranges(&[(GuestAddress(0x4000_0000), (64 * MIB) as usize)]).unwrap();
    let initrd = vec![0xa5u8; 5000];
    let mut req = request(&dir, kernel_bytes, format, &initrd);
    let platform = Platform::new(vec![UART, RTC]);
    let machine = Machine {
        vcpus: 2,
        gic: GicVersion::V3,
        platform: &platform,
        virtio: &[],
    };
    let entry = load(&mem, &layout, &mut req, &machine).unwrap();
    assert_eq!(entry.entry, 0x4000_0000);
    assert_eq!(entry.fdt_addr, 0x4000_0000 + 62 * MIB);

    let mut back = vec![0u8; img.len()];
    mem.read_slice(&mut back, GuestAddress(entry.entry))
        .unwrap();
    assert!(back == img, "kernel bytes in guest memory");
    let mut magic = [0u8; 4];
    mem.read_slice(&mut magic, GuestAddress(entry.fdt_addr))
        .unwrap();
    assert_eq!(magic, [0xd0, 0x0d, 0xfe, 0xed], "FDT magic, big-endian");
    let initrd_addr = (entry.fdt_addr - 5000) & !0xfff;
    let mut ib = vec![0u8; 5000];
    mem.read_slice(&mut ib, GuestAddress(initrd_addr)).unwrap();
    assert!(ib.iter().all(|&b| b == 0xa5), "initrd below the FDT");
}

#[test]
fn loads_raw_and_gzip_images_with_initrd_and_fdt() {
    let img = image(0, 4 * MIB, 0b10, 0x2_0000);
    check_loaded(KernelFormat::Arm64Image, &img, &img);
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(&img).unwrap();
    check_loaded(KernelFormat::Gzip, &enc.finish().unwrap(), &img);
}

#[test]
fn other_formats_are_refused() {
    let dir = TempDir::new("bz");
    let layout = memory_layout(64 * MIB).unwrap();
    let mem =
        GuestMemory::from_ranges(&[(GuestAddress(0x4000_0000), (64 * MIB) as usize)]).unwrap();
    let mut req = request(&dir, &[0u8; 0x1000], KernelFormat::BzImage, b"x");
    let platform = Platform::default();
    let machine = Machine {
        vcpus: 1,
        gic: GicVersion::V2,
        platform: &platform,
        virtio: &[],
    };
    let e = load(&mem, &layout, &mut req, &machine).unwrap_err();
    assert!(e.to_string().contains("do not boot on aarch64"), "{e}");
    let mut req = request(&dir, &[0u8; 0x1000], KernelFormat::Arm64Image, b"x");
    let e = load(&mem, &layout, &mut req, &machine).unwrap_err();
    assert!(e.to_string().contains("magic"), "{e}");
}
