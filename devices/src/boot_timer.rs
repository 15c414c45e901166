//! Boot timer: a one-register MMIO device a guest writes to at its milestones, so boot
//! time is measured inside the VMM against the VMM's own start (the same idea as
//! Firecracker's boot timer, which also uses the value 123 for "init reached").
//!
//! Guest interface: write one byte at offset 0 of the device. 123 means "userspace init
//! started"; any other value is logged as a numbered milestone. Reads return 0.

use std::time::{Duration, Instant};

use crate::bus::BusDevice;

/// The value a guest writes when it reaches its init process.
pub const INIT_REACHED: u8 = 123;
/// Size of the device's register window.
pub const BOOT_TIMER_WINDOW: u64 = 0x1000;

/// Logs the time since `start` when the guest writes a milestone.
pub struct BootTimer {
    start: Instant,
    marks: Vec<(u8, Duration)>,
}

impl BootTimer {
    /// `start` is when the VMM process started.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            marks: Vec::new(),
        }
    }

    /// The milestones seen so far, with the time since start of each.
    pub fn marks(&self) -> &[(u8, Duration)] {
        &self.marks
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (0, Some(&value)) = (offset, data.first()) else {
            return;
        };
        let elapsed = self.start.elapsed();
        self.marks.push((value, elapsed));
        let micros = elapsed.as_micros();
        if value == INIT_REACHED {
            log::info!(
                "boot timer: guest reached init {}.{:03} ms after polyvisor started",
                micros / 1000,
                micros % 1000
            );
        } else {
            log::info!(
                "boot timer: guest milestone {value} at {}.{:03} ms",
                micros / 1000,
                micros % 1000
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_milestones_in_order_and_ignores_other_offsets() {
        let mut t = BootTimer::new(Instant::now());
        t.write(0, &[1]);
        t.write(4, &[2]);
        t.write(0, &[]);
        t.write(0, &[INIT_REACHED, 0, 0, 0]);
        let values: Vec<u8> = t.marks().iter().map(|m| m.0).collect();
        assert_eq!(values, vec![1, INIT_REACHED]);
        assert!(t.marks()[0].1 <= t.marks()[1].1);
        let mut b = [0xffu8; 4];
        t.read(0, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
