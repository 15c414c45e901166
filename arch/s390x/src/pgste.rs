// SPDX-License-Identifier: Apache-2.0
//! Page-status tables (PGSTE): KVM on s390x creates a VM only for a process whose page
//! tables carry them. A process gets them when its executable has the `PT_S390_PGSTE`
//! program header (linked with `-Wl,--s390-pgste`, which polyvisor's build script adds to
//! every s390x build) or when the host sets `vm.allocate_pgste=1` for every process; else
//! `KVM_CREATE_VM` fails with a bare `EINVAL`. This module finds out which of the two is
//! missing, so that error can say what to check. Portable: tested on every target.

use std::io::{self, Read, Seek, SeekFrom};

/// The program header type `ld --s390-pgste` adds (`PT_LOPROC + 0`).
pub const PT_S390_PGSTE: u32 = 0x7000_0000;
/// Where the host kernel's switch lives.
pub const ALLOCATE_PGSTE_SYSCTL: &str = "/proc/sys/vm/allocate_pgste";

const EHDR_LEN: usize = 64;
/// Program headers read at most (a linked binary has about a dozen).
const MAX_PHDRS: u16 = 256;

/// Whether the ELF64 executable `src` has a `PT_S390_PGSTE` program header. Either byte
/// order is read (the header says which); `Err` when it is not an ELF64 file or is cut short.
pub fn has_pgste_header<R: Read + Seek>(src: &mut R) -> io::Result<bool> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut ehdr = [0u8; EHDR_LEN];
    src.seek(SeekFrom::Start(0))?;
    src.read_exact(&mut ehdr)?;
    if &ehdr[..4] != b"\x7fELF" || ehdr[4] != 2 {
        return Err(bad("not an ELF64 file"));
    }
    let big = match ehdr[5] {
        1 => false,
        2 => true,
        _ => return Err(bad("unknown ELF byte order")),
    };
    let u16_at = |b: &[u8], at: usize| {
        let v = [b[at], b[at + 1]];
        if big {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    };
    let u32_at = |b: &[u8], at: usize| {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    };
    let mut off = [0u8; 8];
    off.copy_from_slice(&ehdr[32..40]);
    let phoff = if big {
        u64::from_be_bytes(off)
    } else {
        u64::from_le_bytes(off)
    };
    let phentsize = u16_at(&ehdr, 54);
    let phnum = u16_at(&ehdr, 56);
    if phnum > MAX_PHDRS {
        return Err(bad("too many program headers"));
    }
    if phnum > 0 && phentsize < 4 {
        return Err(bad("program headers too small"));
    }
    let mut phdr = vec![0u8; usize::from(phentsize)];
    for i in 0..u64::from(phnum) {
        let at = i
            .checked_mul(u64::from(phentsize))
            .and_then(|o| o.checked_add(phoff))
            .ok_or_else(|| bad("program header offset overflows"))?;
        src.seek(SeekFrom::Start(at))?;
        src.read_exact(&mut phdr)?;
        if u32_at(&phdr, 0) == PT_S390_PGSTE {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `vm.allocate_pgste` as the sysctl file shows it ("0\n" or "1\n"); `None` if unreadable.
pub fn parse_allocate_pgste(text: &str) -> Option<bool> {
    match text.trim() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// What to check when `KVM_CREATE_VM` failed with `EINVAL`: `binary` says whether the
/// running executable has the PGSTE program header, `allocate_pgste` what the sysctl says
/// (`None`: could not be found out).
pub fn create_vm_einval_hint(binary: Option<bool>, allocate_pgste: Option<bool>) -> String {
    const REBUILD: &str = "polyvisor's build script links every s390x build with \
        --s390-pgste, so this binary was built some other way: rebuild it with cargo, or \
        link it with -Wl,--s390-pgste";
    const SYSCTL: &str = "or let every process have them: `sysctl vm.allocate_pgste=1`";
    match (binary, allocate_pgste) {
        (Some(true), _) | (_, Some(true)) => format!(
            "KVM on s390x needs page-status tables, and this process has them ({}), so \
             they are not the cause: check the host kernel's log (dmesg) for why KVM \
             refused the VM",
            if binary == Some(true) {
                "its binary has the PT_S390_PGSTE program header"
            } else {
                "vm.allocate_pgste is 1"
            }
        ),
        (Some(false), _) => format!(
            "KVM on s390x needs page-status tables: this binary has no PT_S390_PGSTE \
             program header ({REBUILD}), {SYSCTL}"
        ),
        (None, _) => format!(
            "KVM on s390x needs page-status tables: check that the polyvisor binary has a \
             PT_S390_PGSTE program header (`readelf -l` lists S390_PGSTE; {REBUILD}), {SYSCTL}"
        ),
    }
}

/// The hint for this process: reads its own executable and the sysctl.
pub fn create_vm_einval_hint_here() -> String {
    let binary = std::fs::File::open("/proc/self/exe")
        .and_then(|mut f| has_pgste_header(&mut f))
        .ok();
    let sysctl = std::fs::read_to_string(ALLOCATE_PGSTE_SYSCTL)
        .ok()
        .and_then(|t| parse_allocate_pgste(&t));
    create_vm_einval_hint(binary, sysctl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// An ELF64 file with program headers of these types, in the given byte order.
    fn elf(big: bool, types: &[u32]) -> Vec<u8> {
        let u16b = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u32b = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u64b = |v: u64| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = if big { 2 } else { 1 };
        f[6] = 1;
        f[16..18].copy_from_slice(&u16b(2));
        f[18..20].copy_from_slice(&u16b(22));
        f[32..40].copy_from_slice(&u64b(64));
        f[54..56].copy_from_slice(&u16b(56));
        f[56..58].copy_from_slice(&u16b(types.len() as u16));
        for &t in types {
            let mut p = vec![0u8; 56];
            p[..4].copy_from_slice(&u32b(t));
            f.extend_from_slice(&p);
        }
        f
    }

    #[test]
    fn the_pgste_program_header_is_found_in_either_byte_order() {
        // PT_PHDR, PT_INTERP, PT_LOAD, PT_DYNAMIC, PT_GNU_STACK, then PT_S390_PGSTE.
        let with = [6, 3, 1, 2, 0x6474_e551, PT_S390_PGSTE];
        let without = [6, 3, 1, 2, 0x6474_e551];
        for big in [true, false] {
            assert!(has_pgste_header(&mut Cursor::new(elf(big, &with))).unwrap());
            assert!(!has_pgste_header(&mut Cursor::new(elf(big, &without))).unwrap());
            assert!(!has_pgste_header(&mut Cursor::new(elf(big, &[]))).unwrap());
        }
        // PT_S390_PGSTE read in the wrong byte order is another type.
        let mut swapped = elf(true, &[PT_S390_PGSTE]);
        swapped[5] = 1;
        swapped[54..56].copy_from_slice(&56u16.to_le_bytes());
        swapped[56..58].copy_from_slice(&1u16.to_le_bytes());
        swapped[32..40].copy_from_slice(&64u64.to_le_bytes());
        assert!(!has_pgste_header(&mut Cursor::new(swapped)).unwrap());
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        assert!(has_pgste_header(&mut Cursor::new(b"#!/bin/sh\n".to_vec())).is_err());
        assert!(has_pgste_header(&mut Cursor::new(vec![0u8; 64])).is_err());
        let full = elf(true, &[1, PT_S390_PGSTE]);
        // Cut inside the program headers.
        assert!(has_pgste_header(&mut Cursor::new(full[..100].to_vec())).is_err());
        // Program headers far past the end, an overflowing offset, absurd counts.
        let mut far = full.clone();
        far[32..40].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(has_pgste_header(&mut Cursor::new(far)).is_err());
        let mut many = full.clone();
        many[56..58].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(has_pgste_header(&mut Cursor::new(many)).is_err());
        let mut tiny = full;
        tiny[54..56].copy_from_slice(&2u16.to_be_bytes());
        assert!(has_pgste_header(&mut Cursor::new(tiny)).is_err());
    }

    #[test]
    fn the_sysctl_is_read_as_the_kernel_writes_it() {
        assert_eq!(parse_allocate_pgste("0\n"), Some(false));
        assert_eq!(parse_allocate_pgste("1\n"), Some(true));
        assert_eq!(parse_allocate_pgste(""), None);
        assert_eq!(parse_allocate_pgste("2\n"), None);
    }

    #[test]
    fn the_hint_names_what_is_missing() {
        let h = create_vm_einval_hint(Some(false), Some(false));
        assert!(h.contains("no PT_S390_PGSTE program header"), "{h}");
        assert!(h.contains("--s390-pgste"), "{h}");
        assert!(h.contains("sysctl vm.allocate_pgste=1"), "{h}");
        let h = create_vm_einval_hint(Some(false), None);
        assert!(h.contains("no PT_S390_PGSTE program header"), "{h}");
        let h = create_vm_einval_hint(None, None);
        assert!(h.contains("readelf -l"), "{h}");
        assert!(h.contains("sysctl vm.allocate_pgste=1"), "{h}");
        // With the tables there, PGSTE is ruled out.
        for (b, s) in [
            (Some(true), None),
            (Some(true), Some(false)),
            (None, Some(true)),
        ] {
            let h = create_vm_einval_hint(b, s);
            assert!(h.contains("not the cause"), "{h}");
            assert!(!h.contains("sysctl vm.allocate_pgste=1"), "{h}");
        }
    }
}
