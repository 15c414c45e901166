// SPDX-License-Identifier: Apache-2.0
//! Channel report words (Principles of Operation, "Channel-Subsystem Recovery"): what the
//! channel subsystem tells the guest about subchannels that came or went, fetched with
//! `STORE CHANNEL REPORT WORD` after a channel-report-pending machine check.
//!
//! The layout (one word, big-endian in storage): bit 1 S (solicited), bit 2 R (overflow:
//! reports were lost), bit 3 C (chained), bits 4-7 the reporting-source code, bit 8 A
//! (ancillary), bits 10-15 the error-recovery code, bits 16-31 the reporting-source ID.

use std::collections::VecDeque;

/// Reporting-source code: a subchannel (the ID is its number).
pub const RSC_SUBCHANNEL: u8 = 0x3;
/// Error-recovery code "installed parameters initialized": Linux (like QEMU, which sends it
/// for both) looks at the subchannel with `STSCH` to tell whether it came or went.
pub const ERC_INSTALLED_PARAMETERS_INITIALIZED: u8 = 0x04;
/// Reports kept at most; past that they are dropped and the next one says so (R bit),
/// after which the guest re-scans every subchannel.
pub const MAX_PENDING: usize = 256;

const OVERFLOW: u32 = 1 << 29;

/// One channel report word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crw(u32);

impl Crw {
    /// A report for subchannel `number` (in subchannel set 0): it was installed or removed.
    pub fn subchannel_installed(number: u16) -> Self {
        Self(
            (u32::from(RSC_SUBCHANNEL) << 24)
                | (u32::from(ERC_INSTALLED_PARAMETERS_INITIALIZED) << 16)
                | u32::from(number),
        )
    }

    /// The word as `STCRW` stores it.
    pub fn word(self) -> u32 {
        self.0
    }

    /// Reports were lost before this one.
    pub fn overflow(self) -> bool {
        self.0 & OVERFLOW != 0
    }
}

/// The reports the guest has not fetched, and whether the next one raises a machine check.
#[derive(Debug)]
pub struct Reports {
    pending: VecDeque<Crw>,
    /// No machine check is outstanding: the next report raises one. Cleared by raising it,
    /// set again when `STCRW` finds nothing (cc 1), as QEMU's `do_crw_mchk`.
    armed: bool,
    /// Reports were dropped; the next one queued carries the R bit.
    lost: bool,
}

impl Default for Reports {
    fn default() -> Self {
        Self {
            pending: VecDeque::new(),
            armed: true,
            lost: false,
        }
    }
}

impl Reports {
    /// Queue `crw`; returns whether to raise the machine check now.
    pub fn queue(&mut self, crw: Crw) -> bool {
        if self.pending.len() >= MAX_PENDING {
            self.lost = true;
        } else {
            let crw = if std::mem::take(&mut self.lost) {
                Crw(crw.0 | OVERFLOW)
            } else {
                crw
            };
            self.pending.push_back(crw);
        }
        std::mem::take(&mut self.armed)
    }

    /// The oldest report.
    pub fn peek(&self) -> Option<Crw> {
        self.pending.front().copied()
    }

    /// The oldest report was stored.
    pub fn pop(&mut self) {
        self.pending.pop_front();
    }

    /// `STCRW` found nothing: the next report raises a machine check again.
    pub fn rearm(&mut self) {
        self.armed = true;
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_is_what_qemu_and_linux_agree_on() {
        // RSC 3 (subchannel), ERC 4 (IPI), RSID = the subchannel number.
        assert_eq!(Crw::subchannel_installed(0x0005).word(), 0x0304_0005);
        assert_eq!(
            Crw::subchannel_installed(0x0005).word().to_be_bytes(),
            [0x03, 0x04, 0x00, 0x05]
        );
    }

    #[test]
    fn one_machine_check_until_the_guest_drains_the_queue() {
        let mut r = Reports::default();
        assert!(r.queue(Crw::subchannel_installed(1)), "the first raises");
        assert!(!r.queue(Crw::subchannel_installed(2)), "one is outstanding");
        assert_eq!(r.peek(), Some(Crw::subchannel_installed(1)));
        r.pop();
        assert!(!r.queue(Crw::subchannel_installed(3)), "still not drained");
        r.pop();
        r.pop();
        assert!(r.is_empty());
        r.rearm();
        assert!(r.queue(Crw::subchannel_installed(4)), "re-armed by cc 1");
    }

    #[test]
    fn a_flood_is_bounded_and_the_next_report_says_reports_were_lost() {
        let mut r = Reports::default();
        for i in 0..(MAX_PENDING as u32 + 10) {
            r.queue(Crw::subchannel_installed(i as u16));
        }
        assert_eq!(r.len(), MAX_PENDING);
        while r.peek().is_some() {
            assert!(!r.peek().unwrap().overflow());
            r.pop();
        }
        r.queue(Crw::subchannel_installed(7));
        assert!(r.peek().unwrap().overflow());
        assert_eq!(r.peek().unwrap().word() & 0xffff, 7);
    }
}
