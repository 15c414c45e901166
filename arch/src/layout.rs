// SPDX-License-Identifier: Apache-2.0
//! Guest physical memory layout.

/// One range of guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRange {
    pub start: u64,
    pub size: u64,
}

impl RamRange {
    pub fn end(&self) -> u64 {
        self.start + self.size
    }
}

/// Where RAM is in the guest's physical address space, and the hole kept for device MMIO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLayout {
    /// RAM ranges, ascending, not overlapping.
    pub ram: Vec<RamRange>,
    /// The device MMIO window `[start, start + size)`, free of RAM.
    pub mmio_start: u64,
    pub mmio_size: u64,
}

impl MemoryLayout {
    /// Lay out `memory_bytes` of RAM starting at `ram_base`, split around the MMIO window
    /// `[mmio_start, mmio_start + mmio_size)` when RAM would reach it: RAM below the window
    /// stays there, the rest continues after it.
    pub fn split_around_hole(
        ram_base: u64,
        memory_bytes: u64,
        mmio_start: u64,
        mmio_size: u64,
    ) -> Option<Self> {
        let mut ram = Vec::new();
        let end = ram_base.checked_add(memory_bytes)?;
        if ram_base >= mmio_start {
            // RAM entirely above the hole's start: it must start after the hole.
            if ram_base < mmio_start.checked_add(mmio_size)? {
                return None;
            }
            ram.push(RamRange {
                start: ram_base,
                size: memory_bytes,
            });
        } else if end <= mmio_start {
            ram.push(RamRange {
                start: ram_base,
                size: memory_bytes,
            });
        } else {
            let low = mmio_start - ram_base;
            ram.push(RamRange {
                start: ram_base,
                size: low,
            });
            let high_start = mmio_start.checked_add(mmio_size)?;
            high_start.checked_add(memory_bytes - low)?;
            ram.push(RamRange {
                start: high_start,
                size: memory_bytes - low,
            });
        }
        Some(Self {
            ram,
            mmio_start,
            mmio_size,
        })
    }

    /// Map anonymous host memory for every RAM range.
    pub fn allocate(&self) -> crate::Result<crate::GuestMemory> {
        let ranges: Vec<(vm_memory::GuestAddress, usize)> = self
            .ram
            .iter()
            .map(|r| (vm_memory::GuestAddress(r.start), r.size as usize))
            .collect();
        crate::GuestMemory::from_ranges(&ranges).map_err(|e| crate::Error::GuestMemory {
            bytes: self.ram_bytes(),
            reason: e.to_string(),
        })
    }

    /// Total RAM in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.ram.iter().map(|r| r.size).sum()
    }

    /// End of the RAM range that starts lowest (where boot code places things).
    pub fn low_ram_end(&self) -> u64 {
        self.ram.first().map(|r| r.end()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn small_guest_is_one_range() {
        let l = MemoryLayout::split_around_hole(0, 128 << 20, 3 * GIB, GIB).unwrap();
        assert_eq!(
            l.ram,
            vec![RamRange {
                start: 0,
                size: 128 << 20
            }]
        );
        assert_eq!(l.ram_bytes(), 128 << 20);
    }

    #[test]
    fn big_guest_is_split_around_the_hole() {
        let l = MemoryLayout::split_around_hole(0, 4 * GIB, 3 * GIB, GIB).unwrap();
        assert_eq!(
            l.ram,
            vec![
                RamRange {
                    start: 0,
                    size: 3 * GIB
                },
                RamRange {
                    start: 4 * GIB,
                    size: GIB
                }
            ]
        );
        assert_eq!(l.ram_bytes(), 4 * GIB);
        assert_eq!(l.low_ram_end(), 3 * GIB);
    }

    #[test]
    fn allocates_each_range() {
        use vm_memory::GuestMemoryBackend;
        let l = MemoryLayout::split_around_hole(0, 8 << 20, 4 << 20, 4 << 20).unwrap();
        let mem = l.allocate().unwrap();
        assert_eq!(mem.num_regions(), 2);
        assert_eq!(
            crate::VmConfig {
                memory_bytes: 1 << 20,
                vcpus: 1,
                pit: false,
            }
            .check(4 << 20, 8)
            .unwrap_err()
            .to_string(),
            "guest memory must be at least 4 MiB"
        );
        let ok = crate::VmConfig {
            memory_bytes: 8 << 20,
            vcpus: 8,
            pit: true,
        };
        assert!(ok.refuse_pit("aarch64").is_err());
        assert!(ok.check(4 << 20, 8).is_ok());
        assert!(ok.check(4 << 20, 7).is_err());
    }

    #[test]
    fn ram_above_the_hole_and_overflow() {
        // arm64-style: device window low, RAM from 2 GiB.
        let l = MemoryLayout::split_around_hole(2 * GIB, GIB, 0, GIB).unwrap();
        assert_eq!(l.ram.len(), 1);
        assert!(MemoryLayout::split_around_hole(GIB / 2, GIB, 0, GIB).is_none());
        assert!(MemoryLayout::split_around_hole(0, u64::MAX, 3 * GIB, GIB).is_none());
    }
}
