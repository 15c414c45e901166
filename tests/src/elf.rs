// SPDX-License-Identifier: Apache-2.0
//! A tiny ELF64 (x86_64, little-endian) executable builder for test guests.
//!
//! It writes an ELF header, a program header table (an optional `PT_NOTE` carrying the Xen
//! `XEN_ELFNOTE_PHYS32_ENTRY` note that marks a PVH entry point, then one `PT_LOAD` per
//! segment) and the segment contents, each at a page-aligned file offset. There are no
//! sections. Every multi-byte field is written explicitly little-endian, so the bytes are the
//! same whichever host (x86_64, aarch64, big-endian s390x) builds the image.

/// `e_ident[EI_CLASS]`: 64-bit objects.
pub const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]`: little-endian.
pub const ELFDATA2LSB: u8 = 1;
/// `e_type`: executable file.
pub const ET_EXEC: u16 = 2;
/// `e_machine`: AMD x86-64.
pub const EM_X86_64: u16 = 62;
/// `p_type`: loadable segment.
pub const PT_LOAD: u32 = 1;
/// `p_type`: auxiliary information (ELF notes).
pub const PT_NOTE: u32 = 4;
/// `p_flags` bits.
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;
/// Xen ELF note type whose descriptor is the 32-bit PVH entry address.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Size of `Elf64_Ehdr`.
pub const EHDR_SIZE: usize = 64;
/// Size of `Elf64_Phdr`.
pub const PHDR_SIZE: usize = 56;
/// File offset alignment (and `p_align`) of `PT_LOAD` segments.
pub const SEGMENT_ALIGN: u64 = 0x1000;

/// One `PT_LOAD` segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Physical load address (`p_paddr`): where the VMM copies `data`.
    pub paddr: u64,
    /// Virtual address (`p_vaddr`).
    pub vaddr: u64,
    /// File contents (`p_filesz` = its length).
    pub data: Vec<u8>,
    /// Size in memory (`p_memsz`), at least `data.len()`; the rest is zero-filled (bss).
    pub memsz: u64,
    /// `p_flags` (`PF_R | PF_W | PF_X`).
    pub flags: u32,
}

impl Segment {
    /// An identity-mapped (vaddr = paddr), readable, writable, executable segment.
    pub fn new(paddr: u64, data: Vec<u8>) -> Self {
        let memsz = data.len() as u64;
        Segment {
            paddr,
            vaddr: paddr,
            data,
            memsz,
            flags: PF_R | PF_W | PF_X,
        }
    }
}

/// The descriptor of the PVH note: the spec allows a 32-bit or a 64-bit field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvhNote {
    /// `desc` is a `u32` (4 bytes), as Linux writes it.
    Desc32(u32),
    /// `desc` is a `u64` (8 bytes) holding a 32-bit address.
    Desc64(u64),
}

impl PvhNote {
    /// The note's bytes: `namesz`, `descsz`, `type`, `"Xen\0"`, `desc`.
    pub fn to_bytes(self) -> Vec<u8> {
        let desc: Vec<u8> = match self {
            PvhNote::Desc32(a) => a.to_le_bytes().to_vec(),
            PvhNote::Desc64(a) => a.to_le_bytes().to_vec(),
        };
        let mut v = Vec::with_capacity(16 + desc.len());
        v.extend_from_slice(&4u32.to_le_bytes()); // n_namesz: "Xen\0"
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes()); // n_descsz
        v.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes()); // n_type
        v.extend_from_slice(b"Xen\0"); // name, already 4-byte aligned
        v.extend_from_slice(&desc); // desc, 4 or 8 bytes: aligned
        v
    }
}

/// Builds an ELF64 x86_64 executable image.
#[derive(Clone, Debug, Default)]
pub struct ElfBuilder {
    entry: u64,
    segments: Vec<Segment>,
    pvh: Option<PvhNote>,
}

impl ElfBuilder {
    /// A new image whose `e_entry` is `entry`.
    pub fn new(entry: u64) -> Self {
        ElfBuilder {
            entry,
            ..Default::default()
        }
    }

    /// Adds an identity-mapped RWX `PT_LOAD` segment at `paddr`.
    pub fn segment(self, paddr: u64, data: Vec<u8>) -> Self {
        self.segment_with(Segment::new(paddr, data))
    }

    /// Adds a `PT_LOAD` segment described in full.
    pub fn segment_with(mut self, segment: Segment) -> Self {
        self.segments.push(segment);
        self
    }

    /// Adds a `PT_NOTE` with the PVH entry note.
    pub fn pvh_note(mut self, note: PvhNote) -> Self {
        self.pvh = Some(note);
        self
    }

    /// Number of program headers the image will have.
    pub fn phnum(&self) -> usize {
        self.segments.len() + usize::from(self.pvh.is_some())
    }

    /// Serializes the image.
    pub fn build(&self) -> Vec<u8> {
        let phnum = self.phnum();
        let phdrs_end = EHDR_SIZE + phnum * PHDR_SIZE;
        let note = self.pvh.map(PvhNote::to_bytes);
        let note_offset = phdrs_end as u64;
        let mut data_offset = phdrs_end as u64 + note.as_ref().map_or(0, |n| n.len() as u64);

        // Where each segment's bytes go in the file.
        let mut offsets = Vec::with_capacity(self.segments.len());
        for seg in &self.segments {
            data_offset = align_up(data_offset, SEGMENT_ALIGN);
            offsets.push(data_offset);
            data_offset += seg.data.len() as u64;
        }

        let mut out = Vec::with_capacity(data_offset as usize);
        // --- Elf64_Ehdr ---
        out.extend_from_slice(&[0x7f, b'E', b'L', b'F']); // EI_MAG0..3
        out.push(ELFCLASS64); // EI_CLASS
        out.push(ELFDATA2LSB); // EI_DATA
        out.push(1); // EI_VERSION = EV_CURRENT
        out.push(0); // EI_OSABI = System V
        out.extend_from_slice(&[0; 8]); // EI_ABIVERSION + padding
        out.extend_from_slice(&ET_EXEC.to_le_bytes()); // e_type
        out.extend_from_slice(&EM_X86_64.to_le_bytes()); // e_machine
        out.extend_from_slice(&1u32.to_le_bytes()); // e_version
        out.extend_from_slice(&self.entry.to_le_bytes()); // e_entry
        out.extend_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
        out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
        out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        out.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes()); // e_ehsize
        out.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes()); // e_phentsize
        out.extend_from_slice(&(phnum as u16).to_le_bytes()); // e_phnum
        out.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        debug_assert_eq!(out.len(), EHDR_SIZE);

        // --- Elf64_Phdr table ---
        if let Some(note) = &note {
            let len = note.len() as u64;
            push_phdr(&mut out, PT_NOTE, PF_R, note_offset, 0, 0, len, len, 4);
        }
        for (seg, off) in self.segments.iter().zip(&offsets) {
            let filesz = seg.data.len() as u64;
            let memsz = seg.memsz.max(filesz);
            push_phdr(
                &mut out,
                PT_LOAD,
                seg.flags,
                *off,
                seg.vaddr,
                seg.paddr,
                filesz,
                memsz,
                SEGMENT_ALIGN,
            );
        }
        debug_assert_eq!(out.len(), phdrs_end);

        // --- Note and segment contents ---
        if let Some(note) = &note {
            out.extend_from_slice(note);
        }
        for (seg, off) in self.segments.iter().zip(&offsets) {
            out.resize(*off as usize, 0);
            out.extend_from_slice(&seg.data);
        }
        out
    }
}

#[allow(clippy::too_many_arguments)] // mirrors the Elf64_Phdr field list one to one
fn push_phdr(
    out: &mut Vec<u8>,
    p_type: u32,
    p_flags: u32,
    p_offset: u64,
    p_vaddr: u64,
    p_paddr: u64,
    p_filesz: u64,
    p_memsz: u64,
    p_align: u64,
) {
    out.extend_from_slice(&p_type.to_le_bytes());
    out.extend_from_slice(&p_flags.to_le_bytes());
    out.extend_from_slice(&p_offset.to_le_bytes());
    out.extend_from_slice(&p_vaddr.to_le_bytes());
    out.extend_from_slice(&p_paddr.to_le_bytes());
    out.extend_from_slice(&p_filesz.to_le_bytes());
    out.extend_from_slice(&p_memsz.to_le_bytes());
    out.extend_from_slice(&p_align.to_le_bytes());
}

/// Rounds `v` up to a multiple of `align` (a power of two).
pub fn align_up(v: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    (v + align - 1) & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn header_fields() {
        let img = ElfBuilder::new(0x10_0000)
            .segment(0x10_0000, vec![0xf4; 3])
            .build();
        assert_eq!(&img[0..4], b"\x7fELF");
        assert_eq!(img[4], 2, "ELFCLASS64");
        assert_eq!(img[5], 1, "little-endian");
        assert_eq!(img[6], 1, "EV_CURRENT");
        assert_eq!(&img[16..18], &[2, 0], "ET_EXEC");
        assert_eq!(&img[18..20], &[62, 0], "EM_X86_64");
        assert_eq!(u32_at(&img, 20), 1);
        assert_eq!(&img[24..32], &[0x00, 0x00, 0x10, 0, 0, 0, 0, 0], "e_entry");
        assert_eq!(&img[32..40], &[64, 0, 0, 0, 0, 0, 0, 0], "e_phoff");
        assert_eq!(u64_at(&img, 40), 0, "e_shoff");
        assert_eq!(&img[52..54], &[64, 0], "e_ehsize");
        assert_eq!(&img[54..56], &[56, 0], "e_phentsize");
        assert_eq!(&img[56..58], &[1, 0], "e_phnum");
        assert_eq!(u16_at(&img, 60), 0, "e_shnum");
    }

    #[test]
    fn load_segment_phdr_and_data() {
        let data = vec![0x90, 0x90, 0xf4, 0xeb, 0xfd];
        let img = ElfBuilder::new(0x20_0000)
            .segment_with(Segment {
                paddr: 0x20_0000,
                vaddr: 0xffff_ffff_8020_0000,
                data: data.clone(),
                memsz: 0x2000,
                flags: PF_R | PF_X,
            })
            .build();
        let ph = 64;
        assert_eq!(&img[ph..ph + 4], &[1, 0, 0, 0], "PT_LOAD");
        assert_eq!(u32_at(&img, ph + 4), PF_R | PF_X);
        let off = u64_at(&img, ph + 8);
        assert_eq!(off, 0x1000, "page-aligned p_offset");
        assert_eq!(
            &img[ph + 16..ph + 24],
            &[0x00, 0x00, 0x20, 0x80, 0xff, 0xff, 0xff, 0xff],
            "p_vaddr"
        );
        assert_eq!(u64_at(&img, ph + 24), 0x20_0000, "p_paddr");
        assert_eq!(u64_at(&img, ph + 32), 5, "p_filesz");
        assert_eq!(u64_at(&img, ph + 40), 0x2000, "p_memsz");
        assert_eq!(u64_at(&img, ph + 48), 0x1000, "p_align");
        assert_eq!(&img[off as usize..], &data[..]);
        assert_eq!(img.len(), 0x1000 + 5);
    }

    #[test]
    fn pvh_note_comes_first_and_is_well_formed() {
        let img = ElfBuilder::new(0x10_0000)
            .segment(0x10_0000, vec![1, 2, 3])
            .segment(0x30_0000, vec![4; 0x1001])
            .pvh_note(PvhNote::Desc32(0x10_0100))
            .build();
        assert_eq!(u16_at(&img, 56), 3, "e_phnum");
        // phdr 0: PT_NOTE right after the phdr table.
        assert_eq!(u32_at(&img, 64), PT_NOTE);
        let note_off = u64_at(&img, 64 + 8) as usize;
        assert_eq!(note_off, 64 + 3 * 56);
        assert_eq!(u64_at(&img, 64 + 32), 20, "note p_filesz");
        let note = &img[note_off..note_off + 20];
        assert_eq!(&note[0..4], &[4, 0, 0, 0], "n_namesz");
        assert_eq!(&note[4..8], &[4, 0, 0, 0], "n_descsz");
        assert_eq!(&note[8..12], &[18, 0, 0, 0], "n_type");
        assert_eq!(&note[12..16], b"Xen\0");
        assert_eq!(&note[16..20], &[0x00, 0x01, 0x10, 0x00], "desc");
        // phdr 1 and 2: the loads, each at a page-aligned offset holding its data.
        let off1 = u64_at(&img, 64 + 56 + 8) as usize;
        let off2 = u64_at(&img, 64 + 112 + 8) as usize;
        assert_eq!((off1, off2), (0x1000, 0x2000));
        assert_eq!(&img[off1..off1 + 3], &[1, 2, 3]);
        assert_eq!(u64_at(&img, 64 + 112 + 24), 0x30_0000);
        assert_eq!(img.len(), 0x2000 + 0x1001);
        assert!(img[off2..].iter().all(|&b| b == 4));
    }

    #[test]
    fn pvh_note_with_64bit_descriptor() {
        let n = PvhNote::Desc64(0x1234_5678).to_bytes();
        assert_eq!(n.len(), 24);
        assert_eq!(&n[4..8], &[8, 0, 0, 0]);
        assert_eq!(&n[16..24], &[0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0]);
    }

    #[test]
    fn align_up_rounds() {
        assert_eq!(align_up(0, 0x1000), 0);
        assert_eq!(align_up(1, 0x1000), 0x1000);
        assert_eq!(align_up(0x1000, 0x1000), 0x1000);
        assert_eq!(align_up(0x1001, 4), 0x1004);
    }
}
