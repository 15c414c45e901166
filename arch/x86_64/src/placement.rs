// SPDX-License-Identifier: Apache-2.0
//! Checked arithmetic for where the x86 loader puts a kernel and its initrd. Every address
//! and size here comes from the kernel file (the bzImage setup header's `code32_start`,
//! `pref_address` and `init_size`, ELF segments and entry points, the PVH note) or from
//! the initrd's length: a sum that overflows, or a range outside guest RAM, is an error the
//! loader reports against `--kernel` or `--initrd`, never a wrap-around or a panic.

use crate::layout::HIGH_MEMORY_START;

const PAGE_SIZE: u64 = 0x1000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{what} {start:#x} + {len:#x} overflows the address space")]
    Overflow {
        what: &'static str,
        start: u64,
        len: u64,
    },
    #[error(
        "{what} {start:#x}..{end:#x} is outside guest RAM {HIGH_MEMORY_START:#x}..{ram_end:#x} \
         (a bigger --memory may help)"
    )]
    OutsideRam {
        what: &'static str,
        start: u64,
        end: u64,
        ram_end: u64,
    },
    #[error("entry point {entry:#x} is outside the loaded kernel {start:#x}..{end:#x}")]
    EntryOutsideKernel { entry: u64, start: u64, end: u64 },
    #[error(
        "{size} bytes do not fit in guest RAM between the kernel (ending at {kernel_end:#x}) \
         and {top:#x}; give the guest more --memory"
    )]
    InitrdDoesNotFit {
        size: u64,
        kernel_end: u64,
        top: u64,
    },
}

/// `start + len`, or [`Error::Overflow`] naming `what`.
pub fn end_of(what: &'static str, start: u64, len: u64) -> Result<u64, Error> {
    start
        .checked_add(len)
        .ok_or(Error::Overflow { what, start, len })
}

/// `start..end` must lie in low RAM, from 1 MiB up to `ram_end`.
pub fn check_in_ram(what: &'static str, start: u64, end: u64, ram_end: u64) -> Result<(), Error> {
    if start < HIGH_MEMORY_START || end < start || end > ram_end {
        return Err(Error::OutsideRam {
            what,
            start,
            end,
            ram_end,
        });
    }
    Ok(())
}

/// What a bzImage's setup header says about decompressing: the kernel runs from
/// `max(load, pref_address)` and needs `init_size` bytes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decompress {
    pub pref_address: u64,
    pub init_size: u32,
}

/// The end (page aligned) of everything the kernel occupies once loaded at `load` with its
/// file (or ELF segments, `p_memsz` included) ending at `file_end`, and for a bzImage while
/// it decompresses; all of it in low RAM (below `ram_end`).
pub fn kernel_end(
    load: u64,
    file_end: u64,
    decompress: Option<Decompress>,
    ram_end: u64,
) -> Result<u64, Error> {
    check_in_ram("the kernel", load, file_end, ram_end)?;
    let mut end = file_end;
    if let Some(d) = decompress {
        let base = load.max(d.pref_address);
        let needed = end_of(
            "the decompressed kernel (pref_address, init_size)",
            base,
            u64::from(d.init_size),
        )?;
        check_in_ram(
            "the decompressed kernel (pref_address, init_size)",
            base,
            needed,
            ram_end,
        )?;
        end = end.max(needed);
    }
    let aligned = end_of("the kernel's end", end, PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
    Ok(aligned.min(ram_end))
}

/// The entry point must be inside the loaded kernel, `start..end`.
pub fn check_entry(entry: u64, start: u64, end: u64) -> Result<(), Error> {
    if entry < start || entry >= end {
        return Err(Error::EntryOutsideKernel { entry, start, end });
    }
    Ok(())
}

/// Where an initrd of `size` bytes goes: page aligned, as high as it fits below `top`,
/// above `kernel_end` (and 1 MiB).
pub fn initrd_addr(size: u64, kernel_end: u64, top: u64) -> Result<u64, Error> {
    top.checked_sub(size)
        .map(|a| a & !(PAGE_SIZE - 1))
        .filter(|a| *a >= kernel_end.max(HIGH_MEMORY_START))
        .ok_or(Error::InitrdDoesNotFit {
            size,
            kernel_end,
            top,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const RAM_END: u64 = 512 * MIB;

    #[test]
    fn a_normal_bzimage() {
        let d = Decompress {
            pref_address: 16 * MIB,
            init_size: 0x2e0_0000,
        };
        // Debian's: loaded at 1 MiB, ~8 MiB file, decompresses at 16 MiB.
        let end = kernel_end(MIB, 9 * MIB + 5, Some(d), RAM_END).unwrap();
        assert_eq!(end, 16 * MIB + 0x2e0_0000);
        assert_eq!(
            kernel_end(MIB, 9 * MIB + 5, None, RAM_END),
            Ok(9 * MIB + 0x1000)
        );
    }

    #[test]
    fn huge_pref_address_or_init_size() {
        let huge = Decompress {
            pref_address: u64::MAX - 0x10,
            init_size: 0x100,
        };
        assert!(matches!(
            kernel_end(MIB, 2 * MIB, Some(huge), RAM_END),
            Err(Error::Overflow { .. })
        ));
        let beyond = Decompress {
            pref_address: 16 * MIB,
            init_size: u32::MAX,
        };
        assert!(matches!(
            kernel_end(MIB, 2 * MIB, Some(beyond), RAM_END),
            Err(Error::OutsideRam { .. })
        ));
        let in_hole = Decompress {
            pref_address: 0xc000_0000,
            init_size: 0x1000,
        };
        assert!(kernel_end(MIB, 2 * MIB, Some(in_hole), 3 << 30).is_err());
    }

    #[test]
    fn segments_beyond_ram_or_wrapping() {
        // An ELF whose p_paddr + p_memsz ends past RAM, or (as linux-loader would have
        // refused) wraps; a load address below 1 MiB.
        assert!(matches!(
            kernel_end(MIB, RAM_END + 1, None, RAM_END),
            Err(Error::OutsideRam { .. })
        ));
        assert!(kernel_end(MIB, MIB - 1, None, RAM_END).is_err());
        assert!(kernel_end(0x7000, MIB, None, RAM_END).is_err());
        assert!(kernel_end(u64::MAX - 0x800, u64::MAX, None, u64::MAX).is_err());
        assert_eq!(
            end_of("x", u64::MAX, 1),
            Err(Error::Overflow {
                what: "x",
                start: u64::MAX,
                len: 1
            })
        );
        // Ending exactly at the end of RAM is fine; the page rounding stays inside.
        assert_eq!(kernel_end(MIB, RAM_END - 3, None, RAM_END), Ok(RAM_END));
    }

    #[test]
    fn entry_points() {
        assert_eq!(check_entry(MIB + 0x200, MIB, 2 * MIB), Ok(()));
        assert!(check_entry(2 * MIB, MIB, 2 * MIB).is_err());
        assert!(check_entry(0, MIB, 2 * MIB).is_err());
        assert!(check_entry(u64::MAX, MIB, 2 * MIB).is_err());
    }

    #[test]
    fn initrd_placement() {
        assert_eq!(initrd_addr(0x1800, 4 * MIB, 8 * MIB), Ok(8 * MIB - 0x2000));
        assert!(initrd_addr(u64::MAX, 4 * MIB, 8 * MIB).is_err());
        assert!(initrd_addr(5 * MIB, 4 * MIB, 8 * MIB).is_err());
        assert!(initrd_addr(0, 8 * MIB + 1, 8 * MIB).is_err());
        let e = initrd_addr(9 * MIB, 4 * MIB, 8 * MIB).unwrap_err();
        assert!(e.to_string().contains("--memory"), "{e}");
    }

    #[test]
    fn messages_name_the_range() {
        let e = kernel_end(MIB, RAM_END + 0x1000, None, RAM_END).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the kernel 0x100000..0x20001000 is outside guest RAM 0x100000..0x20000000 \
             (a bigger --memory may help)"
        );
    }
}
