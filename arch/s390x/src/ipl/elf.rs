// SPDX-License-Identifier: Apache-2.0
//! s390x ELF64 executables (what kvm-unit-tests builds): big-endian, `EM_S390`, `ET_EXEC`;
//! every `PT_LOAD` segment is copied to its physical address (`p_paddr`) and the rest of
//! its memory size zeroed; the entry is `e_entry`. Every offset, size and address is
//! checked against the file and guest memory with checked arithmetic.

use std::io::{Read, Seek, SeekFrom};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _};

use super::{IplError, Loaded};
use crate::GuestMemory;

const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
const ELFCLASS64: u8 = 2;
const ELFDATA2MSB: u8 = 2;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_S390: u16 = 22;
const PT_LOAD: u32 = 1;
/// Bytes copied (or zeroed) at a time.
const CHUNK: usize = 64 << 10;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(v)
}

fn err(msg: impl Into<String>) -> IplError {
    IplError::Elf(msg.into())
}

fn read_at<R: Read + Seek>(src: &mut R, offset: u64, buf: &mut [u8]) -> Result<(), IplError> {
    src.seek(SeekFrom::Start(offset))
        .and_then(|_| src.read_exact(buf))
        .map_err(|e| IplError::Read(e.to_string()))
}

/// A loadable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    offset: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

/// Load the ELF executable `src` (`size` bytes) into `mem`.
pub fn load<R: Read + Seek>(mem: &GuestMemory, src: &mut R, size: u64) -> Result<Loaded, IplError> {
    let ram = mem.last_addr().0.saturating_add(1);
    let mut ehdr = [0u8; EHDR_LEN];
    if size < EHDR_LEN as u64 {
        return Err(err("shorter than an ELF64 header"));
    }
    read_at(src, 0, &mut ehdr)?;
    if &ehdr[..4] != b"\x7fELF" || ehdr[4] != ELFCLASS64 {
        return Err(err("not an ELF64 file"));
    }
    if ehdr[5] != ELFDATA2MSB {
        return Err(err("little-endian; s390x executables are big-endian"));
    }
    if ehdr[6] != EV_CURRENT {
        return Err(err(format!("ELF version {}", ehdr[6])));
    }
    let machine = be16(&ehdr, 18);
    if machine != EM_S390 {
        return Err(err(format!(
            "built for machine {machine}, not s390x ({EM_S390})"
        )));
    }
    let kind = be16(&ehdr, 16);
    if kind != ET_EXEC {
        return Err(err(format!("type {kind}, not an executable (ET_EXEC)")));
    }
    let entry = be64(&ehdr, 24);
    let phoff = be64(&ehdr, 32);
    let phentsize = usize::from(be16(&ehdr, 54));
    let phnum = usize::from(be16(&ehdr, 56));
    if phentsize != PHDR_LEN {
        return Err(err(format!("program header size {phentsize}")));
    }
    let table_len = (phnum * PHDR_LEN) as u64;
    if phoff.checked_add(table_len).is_none_or(|end| end > size) {
        return Err(err("program headers outside the file"));
    }
    let mut table = vec![0u8; phnum * PHDR_LEN];
    read_at(src, phoff, &mut table)?;
    let segments: Vec<Segment> = table
        .chunks_exact(PHDR_LEN)
        .filter(|p| be32(p, 0) == PT_LOAD)
        .map(|p| Segment {
            offset: be64(p, 8),
            paddr: be64(p, 24),
            filesz: be64(p, 32),
            memsz: be64(p, 40),
        })
        .collect();
    if segments.is_empty() {
        return Err(err("no loadable segment"));
    }
    let mut end = 0u64;
    for s in &segments {
        if s.offset.checked_add(s.filesz).is_none_or(|e| e > size) {
            return Err(err(format!(
                "segment at file offset {:#x} ({:#x} bytes) runs past the end of the file",
                s.offset, s.filesz
            )));
        }
        if s.filesz > s.memsz {
            return Err(err(format!(
                "segment at {:#x}: file size {:#x} larger than its memory size {:#x}",
                s.paddr, s.filesz, s.memsz
            )));
        }
        let seg_end = s.paddr.checked_add(s.memsz).filter(|&e| e <= ram);
        let Some(seg_end) = seg_end else {
            return Err(err(format!(
                "segment at {:#x} ({:#x} bytes) does not fit in {ram} bytes of guest memory",
                s.paddr, s.memsz
            )));
        };
        end = end.max(seg_end);
    }
    if entry >= ram {
        return Err(err(format!(
            "entry point {entry:#x} outside {ram} bytes of guest memory"
        )));
    }
    for s in &segments {
        copy_segment(mem, src, s)?;
    }
    Ok(Loaded { entry, end })
}

/// Copy one checked segment in chunks, then zero the rest of its memory size.
fn copy_segment<R: Read + Seek>(
    mem: &GuestMemory,
    src: &mut R,
    s: &Segment,
) -> Result<(), IplError> {
    let write = |buf: &[u8], at: u64| {
        mem.write_slice(buf, GuestAddress(at))
            .map_err(|e| IplError::Memory(e.to_string()))
    };
    let mut buf = vec![0u8; CHUNK];
    src.seek(SeekFrom::Start(s.offset))
        .map_err(|e| IplError::Read(e.to_string()))?;
    let mut done = 0u64;
    while done < s.filesz {
        let n = (s.filesz - done).min(CHUNK as u64) as usize;
        src.read_exact(&mut buf[..n])
            .map_err(|e| IplError::Read(e.to_string()))?;
        write(&buf[..n], s.paddr + done)?;
        done += n as u64;
    }
    buf.fill(0);
    while done < s.memsz {
        let n = (s.memsz - done).min(CHUNK as u64) as usize;
        write(&buf[..n], s.paddr + done)?;
        done += n as u64;
    }
    Ok(())
}
