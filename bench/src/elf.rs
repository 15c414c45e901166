// SPDX-License-Identifier: Apache-2.0
//! Just enough ELF64 reading for the floor: the `PT_LOAD` segments and the PVH entry
//! point from the Xen `XEN_ELFNOTE_PHYS32_ENTRY` note.

/// What the floor loads.
#[derive(Debug, PartialEq, Eq)]
pub struct PvhImage<'a> {
    /// (physical address, file bytes) of each `PT_LOAD`.
    pub segments: Vec<(u64, &'a [u8])>,
    /// The PVH entry point.
    pub entry: u64,
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

fn u16_at(b: &[u8], o: usize) -> Result<u16, String> {
    b.get(o..o + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("ELF truncated at {o:#x}"))
}

fn u32_at(b: &[u8], o: usize) -> Result<u32, String> {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("ELF truncated at {o:#x}"))
}

fn u64_at(b: &[u8], o: usize) -> Result<u64, String> {
    Ok(u64::from(u32_at(b, o)?) | (u64::from(u32_at(b, o + 4)?) << 32))
}

fn slice(b: &[u8], off: u64, len: u64) -> Result<&[u8], String> {
    let (o, l) = (off as usize, len as usize);
    b.get(o..o.saturating_add(l))
        .ok_or_else(|| format!("ELF range {off:#x}+{len:#x} is outside the file"))
}

/// Reads the segments and the PVH entry of a little-endian ELF64 image.
pub fn pvh_image(b: &[u8]) -> Result<PvhImage<'_>, String> {
    if b.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not a little-endian ELF64 image".into());
    }
    let phoff = u64_at(b, 0x20)? as usize;
    let phentsize = usize::from(u16_at(b, 0x36)?);
    let phnum = usize::from(u16_at(b, 0x38)?);
    let mut segments = Vec::new();
    let mut entry = None;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let kind = u32_at(b, ph)?;
        let offset = u64_at(b, ph + 8)?;
        let paddr = u64_at(b, ph + 0x18)?;
        let filesz = u64_at(b, ph + 0x20)?;
        match kind {
            PT_LOAD => segments.push((paddr, slice(b, offset, filesz)?)),
            PT_NOTE => {
                let notes = slice(b, offset, filesz)?;
                let mut o = 0;
                while o + 12 <= notes.len() {
                    let namesz = u32_at(notes, o)? as usize;
                    let descsz = u32_at(notes, o + 4)? as usize;
                    let ty = u32_at(notes, o + 8)?;
                    let name_at = o + 12;
                    let desc_at = name_at + namesz.next_multiple_of(4);
                    if ty == XEN_ELFNOTE_PHYS32_ENTRY
                        && notes.get(name_at..name_at + namesz) == Some(b"Xen\0")
                    {
                        entry = Some(match descsz {
                            4 => u64::from(u32_at(notes, desc_at)?),
                            _ => u64_at(notes, desc_at)?,
                        });
                    }
                    o = desc_at + descsz.next_multiple_of(4);
                }
            }
            _ => {}
        }
    }
    let entry = entry.ok_or("no PVH entry note (Xen, type 18)")?;
    Ok(PvhImage { segments, entry })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guests::{guest_code, guest_kernel, Workload};
    use polyvisor_tests::guest::{LOAD_ADDR, PVH_ENTRY};

    #[test]
    fn reads_the_bench_guest() {
        let img = guest_kernel(Workload::Boot);
        let p = pvh_image(&img).unwrap();
        assert_eq!(p.entry, PVH_ENTRY);
        assert_eq!(p.segments.len(), 1);
        let (paddr, data) = p.segments[0];
        assert_eq!(paddr, LOAD_ADDR);
        let code = guest_code(Workload::Boot);
        let at = (PVH_ENTRY - LOAD_ADDR) as usize;
        assert_eq!(&data[at..at + code.len()], &code[..]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(pvh_image(b"nope").is_err());
        let mut img = guest_kernel(Workload::Boot);
        img.truncate(0x60);
        assert!(pvh_image(&img).is_err());
    }
}
