// SPDX-License-Identifier: Apache-2.0
//! Recognising kernel image formats from their first bytes.

use arch::boot::KernelFormat;

/// Offset and value of the x86 boot protocol header magic ("HdrS").
const BZIMAGE_MAGIC_OFFSET: usize = 0x202;
const BZIMAGE_MAGIC: &[u8] = b"HdrS";
/// Offset and value of the arm64 Image magic ("ARM\x64").
const ARM64_MAGIC_OFFSET: usize = 0x38;
const ARM64_MAGIC: &[u8] = b"ARM\x64";
/// ELF identification: magic, then class 2 = 64-bit.
pub(crate) const ELF_MAGIC: &[u8] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
/// gzip member header.
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
/// An s390x Linux image starts with the IPL PSW (64-bit, 0x0008_0000_8000_0000-style)
/// and the first CCW at 8 reads (opcode 0x02). Only a hint: s390x boots any raw image
/// ([`KernelFormat::Raw`]) and looks for Linux's "S390EP" at 0x10008 once it is loaded.
const S390_IPL_PSW_PREFIX: &[u8] = &[0x00, 0x08];

fn has(head: &[u8], offset: usize, magic: &[u8]) -> bool {
    head.get(offset..offset + magic.len()) == Some(magic)
}

/// The format of a kernel image whose first bytes are `head` (0x240 bytes suffice).
pub fn detect_format(head: &[u8]) -> Option<KernelFormat> {
    if has(head, 0, ELF_MAGIC) {
        return (head.get(4) == Some(&ELFCLASS64)).then_some(KernelFormat::Elf64);
    }
    if has(head, BZIMAGE_MAGIC_OFFSET, BZIMAGE_MAGIC) {
        return Some(KernelFormat::BzImage);
    }
    if has(head, ARM64_MAGIC_OFFSET, ARM64_MAGIC) {
        return Some(KernelFormat::Arm64Image);
    }
    if has(head, 0, GZIP_MAGIC) {
        return Some(KernelFormat::Gzip);
    }
    if has(head, 0, S390_IPL_PSW_PREFIX) && head.get(8) == Some(&0x02) {
        return Some(KernelFormat::S390Image);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_format() {
        let mut bz = vec![0u8; 0x240];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(detect_format(&bz), Some(KernelFormat::BzImage));

        let mut arm = vec![0u8; 0x40];
        arm[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(detect_format(&arm), Some(KernelFormat::Arm64Image));

        assert_eq!(
            detect_format(b"\x7fELF\x02\x01\x01"),
            Some(KernelFormat::Elf64)
        );
        assert_eq!(detect_format(b"\x7fELF\x01\x01\x01"), None, "ELF32");
        assert_eq!(detect_format(&[0x1f, 0x8b, 8, 0]), Some(KernelFormat::Gzip));
        let s390 = [0x00, 0x08, 0, 0, 0x80, 0, 0, 0, 0x02, 0, 0, 0];
        assert_eq!(detect_format(&s390), Some(KernelFormat::S390Image));
        assert_eq!(detect_format(b""), None);
        assert_eq!(detect_format(&[0u8; 0x240]), None);
    }
}
