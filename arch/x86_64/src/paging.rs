// SPDX-License-Identifier: Apache-2.0
//! Identity page tables for 64-bit entry: the first 1 GiB mapped with 2 MiB pages.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{PDPT_ADDR, PD_ADDR, PML4_ADDR};

const PRESENT_WRITABLE: u64 = 0x3;
const PAGE_SIZE_2M: u64 = 0x80;

/// Write PML4 → PDPT → PD with 512 2-MiB identity mappings; returns the CR3 value.
pub fn write_identity_tables<M: GuestMemoryBackend>(
    mem: &M,
) -> Result<u64, vm_memory::GuestMemoryError> {
    // Page table entries are little-endian whatever the host's byte order.
    mem.write_slice(
        &(PDPT_ADDR | PRESENT_WRITABLE).to_le_bytes(),
        GuestAddress(PML4_ADDR),
    )?;
    mem.write_slice(
        &(PD_ADDR | PRESENT_WRITABLE).to_le_bytes(),
        GuestAddress(PDPT_ADDR),
    )?;
    let pd: Vec<u8> = (0..512u64)
        .flat_map(|i| ((i << 21) | PAGE_SIZE_2M | PRESENT_WRITABLE).to_le_bytes())
        .collect();
    mem.write_slice(&pd, GuestAddress(PD_ADDR))?;
    Ok(PML4_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn tables_are_little_endian_and_map_1g() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        assert_eq!(write_identity_tables(&mem).unwrap(), 0x9000);
        let mut b = [0u8; 8];
        mem.read_slice(&mut b, GuestAddress(PML4_ADDR)).unwrap();
        assert_eq!(b, [0x03, 0xa0, 0, 0, 0, 0, 0, 0]);
        mem.read_slice(&mut b, GuestAddress(PDPT_ADDR)).unwrap();
        assert_eq!(b, [0x03, 0xb0, 0, 0, 0, 0, 0, 0]);
        mem.read_slice(&mut b, GuestAddress(PD_ADDR + 8 * 511))
            .unwrap();
        assert_eq!(b, [0x83, 0, 0xe0, 0x3f, 0, 0, 0, 0], "511 * 2 MiB");
    }
}
