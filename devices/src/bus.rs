// SPDX-License-Identifier: Apache-2.0
//! The address bus: routes a guest's port I/O or MMIO access to the device that owns the
//! address. One `Bus` instance serves port I/O, another MMIO; the routing is the same.
//!
//! Written by hand rather than taken from a crate: rust-vmm has no published bus crate
//! (`vm-device` is unreleased on crates.io), and this is a small ordered map: a `Vec`
//! sorted by base address and searched by bisection (a `BTreeMap` range lookup cost about
//! three times the instructions on every exit, measured with callgrind).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A device reachable through the bus. Offsets are relative to the device's base address.
pub trait BusDevice: Send {
    /// The guest reads `data.len()` bytes at `offset`; fill `data`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// The guest writes `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A half-open address range `[base, base + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusRange {
    pub base: u64,
    pub len: u64,
}

impl BusRange {
    pub fn new(base: u64, len: u64) -> Self {
        Self { base, len }
    }

    /// Last address in the range (inclusive); `None` for an empty range.
    fn last(&self) -> Option<u64> {
        self.len
            .checked_sub(1)
            .and_then(|l| self.base.checked_add(l))
    }

    fn overlaps(&self, other: &BusRange) -> bool {
        match (self.last(), other.last()) {
            (Some(a_last), Some(b_last)) => self.base <= b_last && other.base <= a_last,
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus range {0:#x}+{1:#x} is empty or wraps around")]
    InvalidRange(u64, u64),
    #[error(
        "bus range {new_base:#x}+{new_len:#x} overlaps the device at {old_base:#x}+{old_len:#x}"
    )]
    Overlap {
        new_base: u64,
        new_len: u64,
        old_base: u64,
        old_len: u64,
    },
}

type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Routes accesses to devices by address. Accesses nobody claims are answered safely
/// (reads return all ones, writes are dropped) and counted.
#[derive(Default)]
pub struct Bus {
    /// Sorted by `BusRange::base`; the ranges do not overlap.
    devices: Vec<(BusRange, SharedDevice)>,
    unclaimed: AtomicU64,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Place `device` at `range`.
    pub fn insert(&mut self, range: BusRange, device: SharedDevice) -> Result<(), BusError> {
        if range.last().is_none() {
            return Err(BusError::InvalidRange(range.base, range.len));
        }
        if let Some((old, _)) = self
            .devices
            .iter()
            .find(|(existing, _)| existing.overlaps(&range))
        {
            return Err(BusError::Overlap {
                new_base: range.base,
                new_len: range.len,
                old_base: old.base,
                old_len: old.len,
            });
        }
        let at = self.devices.partition_point(|(r, _)| r.base < range.base);
        self.devices.insert(at, (range, device));
        Ok(())
    }

    /// The device owning `addr` and the offset of `addr` in it, if the whole access of
    /// `len` bytes fits inside the device's range.
    fn resolve(&self, addr: u64, len: usize) -> Option<(&SharedDevice, u64)> {
        let after = self.devices.partition_point(|(r, _)| r.base <= addr);
        let (range, dev) = self.devices.get(after.checked_sub(1)?)?;
        let offset = addr - range.base;
        let end = offset.checked_add(len as u64)?;
        (end <= range.len).then_some((dev, offset))
    }

    /// Dispatch a read. Returns false (and fills `data` with 0xff) when no device claims it.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((dev, offset)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                self.note_unclaimed("read", addr, data.len());
                false
            }
        }
    }

    /// Dispatch a write. Returns false (and drops it) when no device claims it.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((dev, offset)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write(offset, data);
                true
            }
            None => {
                self.note_unclaimed("write", addr, data.len());
                false
            }
        }
    }

    /// How many accesses no device claimed.
    pub fn unclaimed_accesses(&self) -> u64 {
        self.unclaimed.load(Ordering::Relaxed)
    }

    fn note_unclaimed(&self, what: &str, addr: u64, len: usize) {
        // Guests probe absent hardware all the time (Linux scans legacy ports at boot), so
        // this is debug-level; the count is available for diagnostics.
        self.unclaimed.fetch_add(1, Ordering::Relaxed);
        log::debug!("unclaimed {what} of {len} bytes at {addr:#x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_offset_and_answers_unclaimed_safely() {
        let mut bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(BusRange::new(0x3f8, 8), dev.clone()).unwrap();

        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b, [2]);
        assert!(bus.write(0x3ff, &[7]));
        assert_eq!(dev.lock().unwrap().writes, vec![(7, vec![7])]);

        let mut w = [0u8; 2];
        assert!(
            !bus.read(0x3ff, &mut w),
            "access crossing the end is unclaimed"
        );
        assert_eq!(w, [0xff, 0xff]);
        assert!(!bus.write(0x400, &[1]));
        assert!(!bus.read(0x3f7, &mut b));
        assert_eq!(bus.unclaimed_accesses(), 3);
    }

    #[test]
    fn rejects_overlaps_and_bad_ranges() {
        let mut bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(BusRange::new(0x60, 1), dev.clone()).unwrap();
        bus.insert(BusRange::new(0x64, 1), dev.clone()).unwrap();
        assert!(matches!(
            bus.insert(BusRange::new(0x5f, 2), dev.clone()),
            Err(BusError::Overlap { old_base: 0x60, .. })
        ));
        assert_eq!(
            bus.insert(BusRange::new(0x100, 0), dev.clone()),
            Err(BusError::InvalidRange(0x100, 0))
        );
        assert_eq!(
            bus.insert(BusRange::new(u64::MAX, 2), dev),
            Err(BusError::InvalidRange(u64::MAX, 2))
        );
    }

    #[test]
    fn routes_among_devices_inserted_out_of_order() {
        let mut bus = Bus::new();
        let devs: Vec<_> = (0..3)
            .map(|_| Arc::new(Mutex::new(Recorder::default())))
            .collect();
        bus.insert(BusRange::new(0x100, 0x10), devs[0].clone())
            .unwrap();
        bus.insert(BusRange::new(0x10, 0x10), devs[1].clone())
            .unwrap();
        bus.insert(BusRange::new(0x50, 0x10), devs[2].clone())
            .unwrap();
        for (addr, dev) in [(0x105, 0), (0x1f, 1), (0x10, 1), (0x50, 2), (0x10f, 0)] {
            assert!(bus.write(addr, &[1]), "{addr:#x}");
            let got = devs[dev].lock().unwrap().writes.pop();
            assert_eq!(got, Some((addr & 0xf, vec![1])), "{addr:#x}");
        }
        for addr in [0, 0xf, 0x20, 0x4f, 0x60, 0xff, 0x110, u64::MAX] {
            assert!(!bus.write(addr, &[1]), "{addr:#x} is nobody's");
        }
        assert_eq!(bus.unclaimed_accesses(), 8);
    }

    #[test]
    fn top_of_address_space() {
        let mut bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(BusRange::new(u64::MAX - 3, 4), dev).unwrap();
        let mut b = [0u8; 4];
        assert!(bus.read(u64::MAX - 3, &mut b));
        assert!(!bus.read(u64::MAX - 1, &mut b));
    }
}
