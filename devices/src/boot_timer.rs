// SPDX-License-Identifier: Apache-2.0
//! Boot timer: a one-register MMIO device a guest writes to when it reaches init, so boot
//! time is measured inside the VMM against the VMM's own start (the same idea as
//! Firecracker's boot timer, which also uses the value 123 for "init reached").
//!
//! Guest interface: write one byte at offset 0 of the device. The first write of 123 is
//! logged with the time since the VMM started; any other value is logged as a numbered
//! milestone (benchmarks time sections of a guest with them). The device keeps no history,
//! and its log lines go through the VMM's per-call-site rate limit, so a guest writing it in
//! a loop costs one exit per write and a bounded number of lines. Reads return 0. Mapped
//! only on request (`--boot-timer`).

use std::time::{Duration, Instant};

use crate::bus::BusDevice;

/// The value a guest writes when it reaches its init process.
pub const INIT_REACHED: u8 = 123;
/// Size of the device's register window.
pub const BOOT_TIMER_WINDOW: u64 = 0x1000;

/// Logs the time since `start` when the guest first says it reached init.
pub struct BootTimer {
    start: Instant,
    reached: Option<Duration>,
}

impl BootTimer {
    /// `start` is when the VMM process started.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            reached: None,
        }
    }

    /// When the guest said it reached init, if it did.
    pub fn init_reached(&self) -> Option<Duration> {
        self.reached
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
        let micros = elapsed.as_micros();
        if value != INIT_REACHED {
            log::info!(
                "boot timer: guest milestone {value} at {}.{:03} ms",
                micros / 1000,
                micros % 1000
            );
        } else if self.reached.is_none() {
            self.reached = Some(elapsed);
            log::info!(
                "boot timer: guest reached init {}.{:03} ms after polyvisor started",
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
    fn only_the_first_init_write_counts() {
        let mut t = BootTimer::new(Instant::now());
        t.write(0, &[1]);
        t.write(4, &[INIT_REACHED]);
        t.write(0, &[]);
        assert_eq!(t.init_reached(), None);
        t.write(0, &[INIT_REACHED, 0, 0, 0]);
        let first = t.init_reached().unwrap();
        for _ in 0..1000 {
            t.write(0, &[INIT_REACHED]);
        }
        assert_eq!(t.init_reached(), Some(first), "later writes change nothing");
        let mut b = [0xffu8; 4];
        t.read(0, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
