// SPDX-License-Identifier: Apache-2.0
//! ARM PL031 real-time clock: vm-superio's register model behind our bus trait.
//!
//! The PL031 has 32-bit registers (data, match, load, control, interrupt mask/status/clear)
//! and the AMBA PrimeCell id registers at 0xfe0..0x1000 that Linux's amba bus probes.
//! Only aligned 32-bit accesses reach the model, little-endian as the guest sees them;
//! anything else reads as zero and is ignored on write. vm-superio does not implement the
//! match (alarm) interrupt, so this device never raises its interrupt line.

use vm_superio::rtc_pl031::NoEvents;
use vm_superio::Rtc;

use crate::bus::BusDevice;

/// Size of the PL031's register window (one 4 KiB AMBA slot).
pub const RTC_REGISTER_WINDOW: u64 = 0x1000;

/// A PL031 RTC counting seconds of host time since the epoch.
pub struct RtcPl031 {
    rtc: Rtc<NoEvents>,
}

impl Default for RtcPl031 {
    fn default() -> Self {
        Self::new()
    }
}

impl RtcPl031 {
    pub fn new() -> Self {
        Self { rtc: Rtc::new() }
    }

    fn register(offset: u64, len: usize) -> Option<u16> {
        (len == 4 && offset % 4 == 0 && offset < RTC_REGISTER_WINDOW)
            .then(|| u16::try_from(offset).ok())
            .flatten()
    }
}

impl BusDevice for RtcPl031 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match Self::register(offset, data.len()) {
            Some(reg) => {
                let mut value = [0u8; 4];
                self.rtc.read(reg, &mut value);
                data.copy_from_slice(&value);
            }
            None => log::debug!("rtc: {}-byte read at {offset:#x} ignored", data.len()),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (
            Self::register(offset, data.len()),
            <[u8; 4]>::try_from(data),
        ) {
            (Some(reg), Ok(value)) => self.rtc.write(reg, &value),
            _ => log::debug!("rtc: {}-byte write at {offset:#x} ignored", data.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    const RTCDR: u64 = 0x0;
    const RTCLR: u64 = 0x8;
    const RTCCR: u64 = 0xc;

    fn read32(rtc: &mut RtcPl031, offset: u64) -> u32 {
        let mut b = [0xffu8; 4];
        rtc.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn now() -> u32 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32
    }

    #[test]
    fn reads_host_time_and_primecell_ids() {
        let mut rtc = RtcPl031::new();
        let before = now();
        let t = read32(&mut rtc, RTCDR);
        assert!(t >= before && t <= now(), "{t} vs {before}");
        assert_eq!(read32(&mut rtc, RTCCR), 1, "always enabled");
        // Peripheral id 0x00041031, PrimeCell id 0xb105f00d, one byte per register.
        let ids: Vec<u32> = (0..8).map(|i| read32(&mut rtc, 0xfe0 + 4 * i)).collect();
        assert_eq!(ids, [0x31, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
    }

    #[test]
    fn guest_sets_the_clock_little_endian() {
        let mut rtc = RtcPl031::new();
        rtc.write(RTCLR, &1_000_000u32.to_le_bytes());
        let t = read32(&mut rtc, RTCDR);
        assert!((1_000_000..1_000_005).contains(&t), "{t}");
        assert_eq!(read32(&mut rtc, RTCLR), 1_000_000);
        rtc.write(RTCCR, &1u32.to_le_bytes()); // reset to host time
        assert!(read32(&mut rtc, RTCDR) >= now() - 1);
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let mut rtc = RtcPl031::new();
        let mut byte = [0xaau8; 1];
        rtc.read(RTCDR, &mut byte);
        assert_eq!(byte, [0]);
        let mut word = [0xaau8; 4];
        rtc.read(0x2, &mut word);
        assert_eq!(word, [0; 4], "unaligned");
        rtc.read(0x1000, &mut word);
        assert_eq!(word, [0; 4], "outside the window");
        rtc.read(0x20, &mut word);
        assert_eq!(word, [0; 4], "reserved register");
        rtc.write(RTCLR, &[1, 2]);
        rtc.write(u64::MAX - 3, &[0; 4]);
        assert_eq!(read32(&mut rtc, RTCLR), 0);
    }
}
