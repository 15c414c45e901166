// SPDX-License-Identifier: Apache-2.0
//! MC146818-compatible CMOS RTC and NVRAM at ports 0x70 (index) and 0x71 (data).
//!
//! What a PC guest reads here: the wall-clock time (BCD, 24-hour, UTC) that Linux's
//! `rtc_cmos` and its early clock code take as the system time, a status that never shows
//! an update in progress, and the classic memory-size bytes. Without it, Linux waits ~20 s
//! for an "update in progress" bit that an absent chip (reads of all ones) never clears.
//! vm-superio has no CMOS model, hence this one.
//!
//! The clock is the host's: guest writes to the time registers are accepted into NVRAM
//! but do not move the guest's clock (logged once).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::BusDevice;

const INDEX_MASK: u8 = 0x7f;
const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_STATUS_A: u8 = 0x0a;
const REG_STATUS_B: u8 = 0x0b;
const REG_STATUS_C: u8 = 0x0c;
const REG_STATUS_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;
/// Status A: 32.768 kHz time base, 1024 Hz rate; bit 7 (update in progress) clear.
const STATUS_A: u8 = 0x26;
/// Status B: 24-hour mode, BCD (DM = 0), no interrupts.
const STATUS_B: u8 = 0x02;
/// Status D: valid RAM and time.
const STATUS_D: u8 = 0x80;

/// Where the guest's RAM is, for the memory-size bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmosMemory {
    /// RAM below 4 GiB, in bytes.
    pub below_4g: u64,
    /// RAM above 4 GiB, in bytes.
    pub above_4g: u64,
}

/// A calendar time broken down as the RTC shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    pub year: u32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// 1 = Sunday … 7 = Saturday, as the MC146818 counts.
    pub weekday: u8,
}

impl CivilTime {
    /// Break seconds since the Unix epoch (UTC) into a calendar date
    /// (Howard Hinnant's days-to-civil algorithm).
    pub fn from_unix(secs: u64) -> Self {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        // 1970-01-01 was a Thursday (weekday 5 counting Sunday as 1).
        let weekday = ((days + 4) % 7) as u8 + 1;
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as u32;
        Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            weekday,
        }
    }
}

fn bcd(v: u32) -> u8 {
    let v = v % 100;
    ((v / 10) << 4 | (v % 10)) as u8
}

/// The CMOS chip. `clock` gives seconds since the Unix epoch (the host's time by default).
pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
    clock: fn() -> u64,
    warned_time_write: bool,
}

fn host_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Cmos {
    /// A CMOS reporting `memory` and the host's clock.
    pub fn new(memory: CmosMemory) -> Self {
        Self::with_clock(memory, host_clock)
    }

    /// A CMOS with its own clock source (for tests).
    pub fn with_clock(memory: CmosMemory, clock: fn() -> u64) -> Self {
        let mut nvram = [0u8; 128];
        // Base memory 640 KiB; extended memory 1–64 MiB in KiB (0x17/0x18 and 0x30/0x31);
        // memory 16 MiB–4 GiB in 64 KiB units (0x34/0x35); above 4 GiB in 64 KiB (0x5b–0x5d).
        nvram[0x15..0x17].copy_from_slice(&640u16.to_le_bytes());
        let ext_kib = (memory.below_4g.saturating_sub(1 << 20) / 1024).min(0xfc00) as u16;
        nvram[0x17..0x19].copy_from_slice(&ext_kib.to_le_bytes());
        nvram[0x30..0x32].copy_from_slice(&ext_kib.to_le_bytes());
        let above_16m = (memory.below_4g.saturating_sub(16 << 20) >> 16).min(0xffff) as u16;
        nvram[0x34..0x36].copy_from_slice(&above_16m.to_le_bytes());
        let above_4g = (memory.above_4g >> 16).min(0xff_ffff) as u32;
        nvram[0x5b..0x5e].copy_from_slice(&above_4g.to_le_bytes()[..3]);
        Self {
            index: 0,
            nvram,
            clock,
            warned_time_write: false,
        }
    }

    fn read_register(&self, reg: u8) -> u8 {
        let time = || CivilTime::from_unix((self.clock)());
        match reg {
            REG_SECONDS => bcd(time().second.into()),
            REG_MINUTES => bcd(time().minute.into()),
            REG_HOURS => bcd(time().hour.into()),
            REG_WEEKDAY => bcd(time().weekday.into()),
            REG_DAY => bcd(time().day.into()),
            REG_MONTH => bcd(time().month.into()),
            REG_YEAR => bcd(time().year % 100),
            REG_CENTURY => bcd(time().year / 100),
            REG_STATUS_A => STATUS_A,
            REG_STATUS_B => STATUS_B,
            REG_STATUS_C => 0,
            REG_STATUS_D => STATUS_D,
            r => self.nvram[usize::from(r & INDEX_MASK)],
        }
    }

    fn write_register(&mut self, reg: u8, value: u8) {
        match reg {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => {
                if !self.warned_time_write {
                    self.warned_time_write = true;
                    log::info!("cmos: the guest set the RTC; the guest clock follows the host's");
                }
            }
            REG_STATUS_A..=REG_STATUS_D => {}
            r => self.nvram[usize::from(r & INDEX_MASK)] = value,
        }
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(first) = data.first_mut() else {
            return;
        };
        *first = match offset {
            0 => 0xff, // the index register is write-only
            1 => self.read_register(self.index),
            _ => 0xff,
        };
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        match offset {
            // Bit 7 of the index write masks NMIs on a PC; there is nothing to mask here.
            0 => self.index = value & INDEX_MASK,
            1 => self.write_register(self.index, value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-25 13:37:42 UTC, a Wednesday.
    fn fixed_clock() -> u64 {
        1_795_613_862
    }

    fn read(cmos: &mut Cmos, reg: u8) -> u8 {
        cmos.write(0, &[reg | 0x80]); // NMI-mask bit set, as Linux does
        let mut b = [0u8];
        cmos.read(1, &mut b);
        b[0]
    }

    #[test]
    fn civil_time_from_known_instants() {
        assert_eq!(
            CivilTime::from_unix(0),
            CivilTime {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                weekday: 5
            }
        );
        let t = CivilTime::from_unix(fixed_clock());
        assert_eq!((t.year, t.month, t.day), (2026, 11, 25));
        assert_eq!((t.hour, t.minute, t.second, t.weekday), (13, 37, 42, 4));
        // Leap day.
        let leap = CivilTime::from_unix(951_782_400); // 2000-02-29 00:00:00
        assert_eq!(
            (leap.year, leap.month, leap.day, leap.weekday),
            (2000, 2, 29, 3)
        );
    }

    #[test]
    fn time_registers_are_bcd_and_never_updating() {
        let mut c = Cmos::with_clock(CmosMemory::default(), fixed_clock);
        assert_eq!(read(&mut c, REG_SECONDS), 0x42);
        assert_eq!(read(&mut c, REG_MINUTES), 0x37);
        assert_eq!(read(&mut c, REG_HOURS), 0x13);
        assert_eq!(read(&mut c, REG_DAY), 0x25);
        assert_eq!(read(&mut c, REG_MONTH), 0x11);
        assert_eq!(read(&mut c, REG_YEAR), 0x26);
        assert_eq!(read(&mut c, REG_CENTURY), 0x20);
        assert_eq!(read(&mut c, REG_WEEKDAY), 0x04);
        assert_eq!(
            read(&mut c, REG_STATUS_A) & 0x80,
            0,
            "no update in progress"
        );
        assert_eq!(read(&mut c, REG_STATUS_B), 0x02, "24 h, BCD");
        assert_eq!(read(&mut c, REG_STATUS_D), 0x80, "valid");
    }

    #[test]
    fn nvram_memory_sizes_and_writes() {
        let mut c = Cmos::with_clock(
            CmosMemory {
                below_4g: 3 << 30,
                above_4g: 1 << 30,
            },
            fixed_clock,
        );
        assert_eq!(read(&mut c, 0x15), 0x80);
        assert_eq!(read(&mut c, 0x16), 0x02, "640 KiB");
        assert_eq!(
            u16::from_le_bytes([read(&mut c, 0x34), read(&mut c, 0x35)]),
            0xbf00,
            "3 GiB - 16 MiB in 64 KiB units"
        );
        assert_eq!(read(&mut c, 0x5b), 0x00);
        assert_eq!(read(&mut c, 0x5c), 0x40, "1 GiB = 0x4000 units of 64 KiB");
        c.write(0, &[0x40]);
        c.write(1, &[0xab]);
        assert_eq!(read(&mut c, 0x40), 0xab);
        c.write(0, &[REG_SECONDS]);
        c.write(1, &[0x00]);
        assert_eq!(
            read(&mut c, REG_SECONDS),
            0x42,
            "the clock follows the host"
        );
        let mut b = [0u8; 2];
        c.read(0, &mut b);
        assert_eq!(b, [0xff, 0]);
    }
}
