// SPDX-License-Identifier: Apache-2.0
//! Global descriptor table entries for the boot segments.

/// GDT selectors the boot code uses: null, code, data, TSS.
pub const CODE_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;
pub const TSS_SELECTOR: u16 = 0x18;

/// Access/flags words (flags nibble << 12 | access byte): G=1, and L=1 or D=1.
pub const CODE64_FLAGS: u16 = 0xa09b;
pub const CODE32_FLAGS: u16 = 0xc09b;
pub const DATA_FLAGS: u16 = 0xc093;
pub const TSS_FLAGS: u16 = 0x808b;

/// Encode one 8-byte descriptor from `flags` (as above), `base` and a 20-bit `limit`.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << (56 - 24))
        | ((u64::from(flags) & 0x0000_f0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << (48 - 16))
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
}

/// A segment as the CPU caches it after loading a descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    pub type_: u8,
    pub present: u8,
    pub dpl: u8,
    pub db: u8,
    pub s: u8,
    pub l: u8,
    pub g: u8,
    pub avl: u8,
}

/// Decode a descriptor into the cached segment state KVM wants, with byte-granular limit.
pub fn segment_from_gdt(entry: u64, index: u16) -> Segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    Segment {
        base,
        limit,
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
    }
}

/// The boot GDT: null, code (64-bit or 32-bit), flat data, TSS.
pub fn boot_gdt(long_mode: bool) -> [u64; 4] {
    let code = if long_mode {
        CODE64_FLAGS
    } else {
        CODE32_FLAGS
    };
    [
        0,
        gdt_entry(code, 0, 0xfffff),
        gdt_entry(DATA_FLAGS, 0, 0xfffff),
        gdt_entry(TSS_FLAGS, 0, 0xfffff),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_descriptors() {
        // The flat 64-bit code descriptor every x86 OS uses.
        assert_eq!(gdt_entry(CODE64_FLAGS, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(CODE32_FLAGS, 0, 0xfffff), 0x00cf_9b00_0000_ffff);
        assert_eq!(gdt_entry(DATA_FLAGS, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(0x808b, 0x1234_5678, 0x67), 0x1280_8b34_5678_0067);
    }

    #[test]
    fn decodes_what_it_encodes() {
        let gdt = boot_gdt(true);
        let code = segment_from_gdt(gdt[1], 1);
        assert_eq!(code.selector, CODE_SELECTOR);
        assert_eq!(
            (code.l, code.db, code.g, code.present, code.s),
            (1, 0, 1, 1, 1)
        );
        assert_eq!(code.type_, 0xb);
        assert_eq!(code.limit, 0xffff_ffff);
        let data = segment_from_gdt(gdt[2], 2);
        assert_eq!((data.l, data.db, data.type_), (0, 1, 3));
        let tss = segment_from_gdt(gdt[3], 3);
        assert_eq!((tss.s, tss.type_, tss.selector), (0, 0xb, TSS_SELECTOR));
        let code32 = segment_from_gdt(boot_gdt(false)[1], 1);
        assert_eq!((code32.l, code32.db), (0, 1));
        let b = segment_from_gdt(gdt_entry(0x008b, 0x1234_5678, 0x67), 3);
        assert_eq!(b.base, 0x1234_5678);
        assert_eq!(b.limit, 0x67, "byte granular");
        let g = segment_from_gdt(gdt_entry(TSS_FLAGS, 0, 0x67), 3);
        assert_eq!(g.limit, 0x67fff, "4 KiB granular");
    }
}
