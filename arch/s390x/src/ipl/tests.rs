// SPDX-License-Identifier: Apache-2.0
//! IPL byte by byte: raw images (Linux and not), ELF executables, the parameter area, and
//! every way a file can lie about its sizes and addresses.

use std::io::{Cursor, Write};
use std::path::PathBuf;

use arch::boot::{InitrdFile, KernelFile};

use super::*;

fn memory(mib: usize) -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), mib << 20)]).unwrap()
}

fn read(mem: &GuestMemory, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

/// A Linux-like raw image: `S390EP` at 0x10008 and the declared command-line room.
fn linux_image(size: usize, max_cmdline: u64) -> Vec<u8> {
    let mut img = vec![0xaa; size];
    img[LINUX_MAGIC_ADDR as usize..][..6].copy_from_slice(LINUX_MAGIC);
    img[MAX_CMDLINE_ADDR as usize..][..8].copy_from_slice(&max_cmdline.to_be_bytes());
    img
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pv-ipl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

fn request(name: &str, kernel: &[u8], format: KernelFormat, initrd: Option<&[u8]>) -> BootRequest {
    let kpath = temp_file(name, kernel);
    let initrd = initrd.map(|rd| {
        let path = temp_file(&format!("{name}.initrd"), rd);
        InitrdFile {
            file: std::fs::File::open(&path).unwrap(),
            path,
            size: rd.len() as u64,
        }
    });
    BootRequest {
        kernel: KernelFile {
            file: std::fs::File::open(&kpath).unwrap(),
            path: kpath,
            size: kernel.len() as u64,
            format,
        },
        initrd,
        cmdline: "console=ttysclp0".into(),
    }
}

#[test]
fn initrd_goes_above_the_image_1mib_aligned_and_at_least_at_8mib() {
    assert_eq!(initrd_address(0x20000), 8 << 20);
    assert_eq!(initrd_address(7 << 20), 8 << 20);
    assert_eq!(initrd_address((7 << 20) + 1), 9 << 20);
    assert_eq!(initrd_address(20 << 20), 21 << 20);
    assert_eq!(
        initrd_address(u64::MAX),
        u64::MAX,
        "saturates, never overflows"
    );
}

#[test]
fn a_linux_image_gets_its_initrd_and_command_line() {
    let mem = memory(32);
    let img = linux_image(0x20000, 0);
    let rd = vec![0x5a; 4096];
    let mut req = request("linux", &img, KernelFormat::Raw, Some(&rd));
    let ipl = load(&mem, &mut req).unwrap();
    assert_eq!(
        ipl,
        Ipl {
            entry: 0x10000,
            linux: true,
            initrd: Some((0x80_0000, 4096))
        }
    );
    assert_eq!(
        read(&mem, 0x10408, 16),
        [0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]
    );
    assert_eq!(read(&mem, 0x10480, 17), b"console=ttysclp0\0");
    assert_eq!(read(&mem, 0x80_0000, 2), [0x5a, 0x5a]);
    // The image around the parameters is untouched.
    assert_eq!(read(&mem, 0x10400, 8), [0xaa; 8]);
    assert_eq!(read(&mem, 0x10418, 8), [0xaa; 8]);
    // With Linux's IPL PSW recognised up front, the same.
    let mut req = request("linux-psw", &img, KernelFormat::S390Image, None);
    assert!(load(&memory(32), &mut req).unwrap().linux);
}

#[test]
fn a_raw_image_is_loaded_at_0_whatever_its_first_bytes_and_gets_no_parameter_area() {
    for (name, img) in [
        ("raw-5a", vec![0x5au8; 0x20000]),
        ("raw-zero", vec![0u8; 0x11000]),
        ("raw-tiny", vec![0x07u8; 16]),
    ] {
        let mem = memory(16);
        let mut req = request(name, &img, KernelFormat::Raw, Some(b"initrd"));
        let ipl = load(&mem, &mut req).unwrap();
        assert_eq!(
            ipl,
            Ipl {
                entry: IPL_PSW_ADDR,
                linux: false,
                initrd: None
            },
            "{name}"
        );
        assert_eq!(read(&mem, 0, img.len()), img, "{name}");
        // No parameter area, no initrd.
        if img.len() > 0x10500 {
            assert_eq!(read(&mem, 0x10400, 0x100), img[0x10400..0x10500], "{name}");
        } else {
            assert_eq!(read(&mem, 0x10400, 0x100), [0; 0x100], "{name}");
        }
        assert_eq!(read(&mem, INITRD_MIN_ADDR, 6), [0; 6], "{name}");
    }
}

#[test]
fn other_architectures_images_and_oversized_ones_are_refused_naming_the_file() {
    let mem = memory(16);
    for (format, what) in [
        (KernelFormat::BzImage, "x86 bzImage"),
        (KernelFormat::Arm64Image, "arm64 Image"),
        (KernelFormat::Gzip, "gzip file"),
    ] {
        let mut req = request("foreign", &[0u8; 0x1000], format, None);
        let e = load(&mem, &mut req).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, arch::Error::Kernel(_)), "{msg}");
        assert!(msg.contains("foreign") && msg.contains(what), "{msg}");
    }
    // 16 MiB + 1 byte: claimed by the request, refused before any read.
    let mut req = request("big", &[0u8; 16], KernelFormat::Raw, None);
    req.kernel.size = (16 << 20) + 1;
    let e = load(&mem, &mut req).unwrap_err();
    assert!(matches!(e, arch::Error::Kernel(_)), "{e}");
    // A Linux image whose initrd does not fit: named against --initrd.
    let img = linux_image(0x20000, 0);
    let mut req = request("linux-rd", &img, KernelFormat::Raw, Some(b"rd"));
    req.initrd.as_mut().unwrap().size = 9 << 20;
    let e = load(&mem, &mut req).unwrap_err();
    assert!(
        matches!(e, arch::Error::Initrd(ref m) if m.contains("linux-rd.initrd")),
        "{e}"
    );
}

#[test]
fn cmdline_limit_is_the_kernels_or_896() {
    let mem = memory(16);
    let img = linux_image(0x20000, 0);
    load_raw(&mem, &mut img.as_slice(), img.len() as u64).unwrap();
    write_parmarea(&mem, None, &"x".repeat(895)).unwrap();
    assert_eq!(
        write_parmarea(&mem, None, &"x".repeat(896)),
        Err(IplError::CmdlineTooLong { len: 897, max: 896 })
    );
    let img = linux_image(0x20000, 4096);
    load_raw(&mem, &mut img.as_slice(), img.len() as u64).unwrap();
    write_parmarea(&mem, None, &"x".repeat(4000)).unwrap();
    assert_eq!(read(&mem, 0x10480 + 4000, 1), [0]);
    assert_eq!(
        write_parmarea(&mem, None, &"y".repeat(4096)),
        Err(IplError::CmdlineTooLong {
            len: 4097,
            max: 4096
        })
    );
    assert_eq!(
        write_parmarea(&mem, None, "a\0b"),
        Err(IplError::CmdlineNul)
    );
    // Through load(): a --cmdline error.
    let mut req = request(
        "linux-long",
        &linux_image(0x20000, 0),
        KernelFormat::Raw,
        None,
    );
    req.cmdline = "z".repeat(1000);
    assert!(matches!(load(&mem, &mut req), Err(arch::Error::Cmdline(_))));
}

#[test]
fn payloads_that_do_not_fit_are_refused() {
    let mem = memory(16);
    assert!(matches!(
        load_raw(&mem, &mut [0u8; 0].as_slice(), 17 << 20),
        Err(IplError::KernelTooBig { .. })
    ));
    assert!(matches!(
        load_raw(&mem, &mut [0u8; 0].as_slice(), u64::MAX),
        Err(IplError::KernelTooBig { .. })
    ));
    assert!(matches!(
        load_initrd(&mem, &mut [0u8; 0].as_slice(), 0x20000, 9 << 20),
        Err(IplError::InitrdTooBig { .. })
    ));
    assert!(matches!(
        load_initrd(&mem, &mut [0u8; 0].as_slice(), 0x20000, u64::MAX),
        Err(IplError::InitrdTooBig { .. })
    ));
    assert!(matches!(
        load_initrd(&mem, &mut [0u8; 0].as_slice(), u64::MAX, 1),
        Err(IplError::InitrdTooBig { .. })
    ));
    // A file shorter than it claims.
    assert!(matches!(
        load_raw(&mem, &mut [0u8; 4].as_slice(), 8),
        Err(IplError::Read(_))
    ));
}

/// One program header: type, file offset, physical address, file size, memory size.
struct Phdr(u32, u64, u64, u64, u64);

/// An ELF64 big-endian s390x executable with these program headers (table at 64) and
/// `data` from file offset 0x1000.
fn elf(entry: u64, phdrs: &[Phdr], data: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 0x1000];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 2; // big-endian
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_be_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&22u16.to_be_bytes()); // EM_S390
    f[20..24].copy_from_slice(&1u32.to_be_bytes());
    f[24..32].copy_from_slice(&entry.to_be_bytes());
    f[32..40].copy_from_slice(&64u64.to_be_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_be_bytes()); // e_ehsize
    f[54..56].copy_from_slice(&56u16.to_be_bytes());
    f[56..58].copy_from_slice(&(phdrs.len() as u16).to_be_bytes());
    for (i, p) in phdrs.iter().enumerate() {
        let h = &mut f[64 + 56 * i..][..56];
        h[0..4].copy_from_slice(&p.0.to_be_bytes());
        h[4..8].copy_from_slice(&7u32.to_be_bytes()); // RWX
        h[8..16].copy_from_slice(&p.1.to_be_bytes());
        h[16..24].copy_from_slice(&p.2.to_be_bytes()); // p_vaddr = p_paddr
        h[24..32].copy_from_slice(&p.2.to_be_bytes());
        h[32..40].copy_from_slice(&p.3.to_be_bytes());
        h[40..48].copy_from_slice(&p.4.to_be_bytes());
    }
    f.extend_from_slice(data);
    f
}

/// kvm-unit-tests' shape: a lowcore segment at 0 and the program at 0x10000 with bss.
fn unit_test_elf() -> Vec<u8> {
    let mut data = vec![0x11u8; 0x200];
    data.extend(vec![0x22u8; 0x300]);
    elf(
        0x10000,
        &[
            Phdr(4, 0, 0, 0, 0), // PT_NOTE: not loaded
            Phdr(1, 0x1000, 0, 0x200, 0x200),
            Phdr(1, 0x1200, 0x10000, 0x300, 0x2000),
        ],
        &data,
    )
}

#[test]
fn an_elf_executable_loads_its_segments_at_their_physical_addresses() {
    let mem = memory(16);
    mem.write_slice(&[0xffu8; 0x3000], GuestAddress(0x10000))
        .unwrap();
    let f = unit_test_elf();
    let loaded = elf::load(&mem, &mut Cursor::new(&f), f.len() as u64).unwrap();
    assert_eq!(
        loaded,
        Loaded {
            entry: 0x10000,
            end: 0x12000
        }
    );
    assert_eq!(read(&mem, 0, 0x200), vec![0x11; 0x200]);
    assert_eq!(read(&mem, 0x10000, 0x300), vec![0x22; 0x300]);
    // The bss is zeroed up to the memory size, and nothing beyond it is touched.
    assert_eq!(read(&mem, 0x10300, 0x1d00), vec![0; 0x1d00]);
    assert_eq!(read(&mem, 0x12000, 0x10), vec![0xff; 0x10]);

    // Through load(): no "S390EP", so no parameter area; entered at e_entry.
    let mem = memory(16);
    let mut req = request("unit.elf", &f, KernelFormat::Elf64, None);
    let ipl = load(&mem, &mut req).unwrap();
    assert_eq!((ipl.entry, ipl.linux), (0x10000, false));
    assert_eq!(read(&mem, CMDLINE_ADDR, 4), [0; 4]);
}

#[test]
fn an_elf_with_linux_s_signature_gets_the_parameter_area() {
    let mut data = vec![0u8; 0x500];
    data[8..14].copy_from_slice(LINUX_MAGIC);
    let f = elf(0x10000, &[Phdr(1, 0x1000, 0x10000, 0x500, 0x500)], &data);
    let mem = memory(16);
    let mut req = request("linux.elf", &f, KernelFormat::Elf64, Some(b"rd"));
    let ipl = load(&mem, &mut req).unwrap();
    assert!(ipl.linux);
    assert_eq!(ipl.initrd, Some((INITRD_MIN_ADDR, 2)));
    assert_eq!(read(&mem, CMDLINE_ADDR, 17), b"console=ttysclp0\0");
}

#[test]
fn elf_files_that_lie_are_refused() {
    let mem = memory(16);
    let ok = unit_test_elf();
    let fail = |f: &[u8], want: &str| {
        let e = elf::load(&mem, &mut Cursor::new(f), f.len() as u64).unwrap_err();
        assert!(e.to_string().contains(want), "{e} (wanted {want:?})");
    };
    let patched = |at: usize, bytes: &[u8]| {
        let mut f = ok.clone();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        f
    };
    fail(&ok[..40], "shorter than an ELF64 header");
    fail(&patched(4, &[1]), "not an ELF64");
    fail(&patched(5, &[1]), "little-endian");
    fail(&patched(18, &62u16.to_be_bytes()), "machine 62");
    fail(&patched(16, &3u16.to_be_bytes()), "not an executable");
    fail(&patched(54, &32u16.to_be_bytes()), "program header size");
    fail(&patched(32, &u64::MAX.to_be_bytes()), "outside the file");
    fail(&patched(56, &0u16.to_be_bytes()), "no loadable segment");
    fail(&patched(24, &(16u64 << 20).to_be_bytes()), "entry point");
    let seg = |i: usize, field: usize| 64 + 56 * i + field;
    // Segment 2 (the program): file offset / sizes / address.
    fail(&patched(seg(2, 8), &u64::MAX.to_be_bytes()), "past the end");
    fail(
        &patched(seg(2, 32), &0x10_0000u64.to_be_bytes()),
        "past the end",
    );
    fail(&patched(seg(2, 40), &0x100u64.to_be_bytes()), "larger than");
    fail(
        &patched(seg(2, 24), &(u64::MAX - 0x100).to_be_bytes()),
        "does not fit",
    );
    fail(
        &patched(seg(2, 24), &((16u64 << 20) - 0x100).to_be_bytes()),
        "does not fit",
    );
    fail(
        &patched(seg(2, 40), &u64::MAX.to_be_bytes()),
        "does not fit",
    );
    // Nothing was loaded by a refused file.
    assert_eq!(read(&mem, 0, 0x200), vec![0; 0x200]);
    // Through load(): one --kernel error naming the file.
    let bad = patched(18, &62u16.to_be_bytes());
    let mut req = request("x86.elf", &bad, KernelFormat::Elf64, None);
    let e = load(&mem, &mut req).unwrap_err();
    assert!(
        matches!(e, arch::Error::Kernel(ref m) if m.contains("x86.elf")),
        "{e}"
    );
}
