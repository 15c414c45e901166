// SPDX-License-Identifier: Apache-2.0
//! Channel-subsystem data structures as the guest's I/O instructions see them (z/Architecture
//! Principles of Operation, chapters 13-16): the subchannel-information block (SCHIB: PMCW,
//! SCSW, measurement address), the operation-request block (ORB), the interruption-response
//! block (IRB), channel-command words (CCW, formats 0 and 1) and the subchannel identifier in
//! GR1. Big-endian byte layouts, built and parsed explicitly; nothing here touches KVM.

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// A subchannel identifier as GR1 holds it for the I/O instructions:
/// `cssid(8) | 0(4) | m(1) | ssid(2) | 1 | subchannel number(16)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubchannelId {
    pub cssid: u8,
    pub ssid: u8,
    pub number: u16,
}

impl SubchannelId {
    /// Decode GR1; `None` when the "one" bit is clear or reserved bits are set (the guest
    /// then gets an operand exception).
    pub fn decode(gr1: u32) -> Option<Self> {
        let m = gr1 & 0x0008_0000 != 0;
        let cssid = (gr1 >> 24) as u8;
        if gr1 & 0x0001_0000 == 0 || gr1 & 0x00f0_0000 != 0 || (!m && cssid != 0) {
            return None;
        }
        Some(Self {
            cssid,
            ssid: ((gr1 >> 17) & 3) as u8,
            number: gr1 as u16,
        })
    }

    /// The GR1 form (with the M bit set when `cssid` is not 0).
    pub fn encode(self) -> u32 {
        let m = if self.cssid != 0 { 0x0008_0000 } else { 0 };
        (u32::from(self.cssid) << 24)
            | m
            | (u32::from(self.ssid & 3) << 17)
            | 0x0001_0000
            | u32::from(self.number)
    }
}

/// Path-management control word (28 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pmcw {
    pub intparm: u32,
    /// ISC (0x3800), enabled (0x0080), limit mode, measurement mode, multipath, timing
    /// facility, device number valid (0x0001).
    pub flags: u16,
    pub devno: u16,
    pub lpm: u8,
    pub pnom: u8,
    pub lpum: u8,
    pub pim: u8,
    pub mbi: u16,
    pub pom: u8,
    pub pam: u8,
    pub chpid: [u8; 8],
    pub chars: u32,
}

impl Pmcw {
    pub const FLAG_ENABLED: u16 = 0x0080;
    pub const FLAG_DEVNO_VALID: u16 = 0x0001;
    pub const ISC_MASK: u16 = 0x3800;
    /// Limit mode, measurement-mode enable, multipath mode.
    pub const FLAG_LM: u16 = 0x0060;
    pub const FLAG_MME: u16 = 0x0018;
    pub const FLAG_MP: u16 = 0x0004;
    /// Reserved flag bits: set in an MSCH operand, they make it invalid.
    pub const FLAG_RESERVED: u16 = 0x0700;
    /// The flags MSCH may change.
    pub const FLAG_MODIFIABLE: u16 =
        Self::ISC_MASK | Self::FLAG_ENABLED | Self::FLAG_LM | Self::FLAG_MME | Self::FLAG_MP;
    /// Characteristics: measurement-block format control, extended-measurement-word mode,
    /// concurrent sense.
    pub const CHARS_MBFC: u32 = 0x0000_0004;
    pub const CHARS_XMWME: u32 = 0x0000_0002;
    pub const CHARS_CSENSE: u32 = 0x0000_0001;
    /// Reserved characteristic bits (the subchannel type 0x00e0_0000 is read-only).
    pub const CHARS_RESERVED: u32 = 0xff1f_fff8;

    pub fn enabled(&self) -> bool {
        self.flags & Self::FLAG_ENABLED != 0
    }

    pub fn isc(&self) -> u8 {
        ((self.flags & Self::ISC_MASK) >> 11) as u8
    }

    fn write(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&self.intparm.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.devno.to_be_bytes());
        b[8..12].copy_from_slice(&[self.lpm, self.pnom, self.lpum, self.pim]);
        b[12..14].copy_from_slice(&self.mbi.to_be_bytes());
        b[14] = self.pom;
        b[15] = self.pam;
        b[16..24].copy_from_slice(&self.chpid);
        b[24..28].copy_from_slice(&self.chars.to_be_bytes());
    }

    fn read(b: &[u8]) -> Self {
        Self {
            intparm: be32(b, 0),
            flags: be16(b, 4),
            devno: be16(b, 6),
            lpm: b[8],
            pnom: b[9],
            lpum: b[10],
            pim: b[11],
            mbi: be16(b, 12),
            pom: b[14],
            pam: b[15],
            chpid: b[16..24].try_into().unwrap(),
            chars: be32(b, 24),
        }
    }
}

/// Subchannel-status word (12 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scsw {
    /// Key, suspend control, ESW format, deferred CC, format, prefetch, ..., function
    /// control (0x7000 of the low half lives in `ctrl`).
    pub flags: u16,
    /// Function control (0x7000), activity control (0x0ff8... ), status control (0x001f).
    pub ctrl: u16,
    pub cpa: u32,
    pub dstat: u8,
    pub cstat: u8,
    pub count: u16,
}

impl Scsw {
    pub const FCTL_START: u16 = 0x4000;
    pub const FCTL_HALT: u16 = 0x2000;
    pub const FCTL_CLEAR: u16 = 0x1000;
    pub const FCTL_MASK: u16 = 0x7000;
    pub const ACTL_RESUME_PENDING: u16 = 0x0800;
    pub const ACTL_START_PENDING: u16 = 0x0400;
    pub const ACTL_HALT_PENDING: u16 = 0x0200;
    pub const ACTL_CLEAR_PENDING: u16 = 0x0100;
    pub const ACTL_SUSPENDED: u16 = 0x0020;
    pub const ACTL_MASK: u16 = 0x0fe0;
    pub const STCTL_INTERMEDIATE: u16 = 0x0008;
    pub const STCTL_MASK: u16 = 0x001f;
    /// `flags`: ESW format (0x0400), CCW format 1 (0x0080), extended control (0x0002),
    /// path not operational (0x0001).
    pub const FLAG_ESWF: u16 = 0x0400;
    pub const FLAG_FORMAT1: u16 = 0x0080;
    pub const FLAG_ECTL: u16 = 0x0002;
    pub const FLAG_PNO: u16 = 0x0001;
    pub const STCTL_ALERT: u16 = 0x0010;
    pub const STCTL_PRIMARY: u16 = 0x0004;
    pub const STCTL_SECONDARY: u16 = 0x0002;
    pub const STCTL_STATUS_PENDING: u16 = 0x0001;
    pub const DSTAT_CHANNEL_END: u8 = 0x08;
    pub const DSTAT_DEVICE_END: u8 = 0x04;
    pub const DSTAT_UNIT_CHECK: u8 = 0x02;
    pub const CSTAT_PROGRAM_CHECK: u8 = 0x20;

    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..2].copy_from_slice(&self.flags.to_be_bytes());
        b[2..4].copy_from_slice(&self.ctrl.to_be_bytes());
        b[4..8].copy_from_slice(&self.cpa.to_be_bytes());
        b[8] = self.dstat;
        b[9] = self.cstat;
        b[10..12].copy_from_slice(&self.count.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; 12]) -> Self {
        Self {
            flags: be16(b, 0),
            ctrl: be16(b, 2),
            cpa: be32(b, 4),
            dstat: b[8],
            cstat: b[9],
            count: be16(b, 10),
        }
    }
}

/// Subchannel-information block (52 bytes), what STSCH stores and MSCH reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schib {
    pub pmcw: Pmcw,
    pub scsw: Scsw,
    pub mba: u64,
    pub mda: [u8; 4],
}

impl Schib {
    pub const LEN: usize = 52;

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        self.pmcw.write(&mut b[0..28]);
        b[28..40].copy_from_slice(&self.scsw.to_bytes());
        b[40..48].copy_from_slice(&self.mba.to_be_bytes());
        b[48..52].copy_from_slice(&self.mda);
        b
    }

    pub fn from_bytes(b: &[u8; Self::LEN]) -> Self {
        Self {
            pmcw: Pmcw::read(&b[0..28]),
            scsw: Scsw::from_bytes(b[28..40].try_into().unwrap()),
            mba: u64::from_be_bytes(b[40..48].try_into().unwrap()),
            mda: b[48..52].try_into().unwrap(),
        }
    }
}

/// Operation-request block, the first three words SSCH reads (format-1 CCW chains).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Orb {
    pub intparm: u32,
    /// Key (0xf000), suspend (0x0800), streaming, modification, synchronisation, CCW format
    /// (0x0080: format 1), prefetch, initial-status-interruption, address-limit checking,
    /// suppress-suspended-interruption, 64-bit IDAWs (0x0002), 2K IDAWs (0x0001).
    pub ctrl0: u16,
    pub lpm: u8,
    /// Incorrect-length suppression (0x80), MIDAW (0x40), ORB extension (0x01).
    pub ctrl1: u8,
    /// Channel-program address (31 bits).
    pub cpa: u32,
}

impl Orb {
    pub const CTRL0_FORMAT1: u16 = 0x0080;
    pub const CTRL0_SUSPEND: u16 = 0x0800;
    pub const CTRL0_KEY: u16 = 0xf000;
    /// 64-bit IDAWs (else 31-bit) and 2K IDAW blocks (else 4K, with 64-bit IDAWs).
    pub const CTRL0_C64: u16 = 0x0002;
    pub const CTRL0_I2K: u16 = 0x0001;
    /// Must be zero.
    pub const CTRL0_RESERVED: u16 = 0x0004;
    /// MIDA (not provided here) and the reserved bits.
    pub const CTRL1_UNSUPPORTED: u8 = 0x40 | 0x3e;

    /// Whether the ORB asks for something invalid or not provided (operand exception).
    pub fn is_valid(&self) -> bool {
        self.ctrl0 & Self::CTRL0_RESERVED == 0 && self.ctrl1 & Self::CTRL1_UNSUPPORTED == 0
    }

    /// Parse; `None` for what the architecture makes invalid here (an address with the top
    /// bit set, or a channel program not on a doubleword boundary).
    pub fn parse(b: &[u8; 12]) -> Option<Self> {
        let orb = Self {
            intparm: be32(b, 0),
            ctrl0: be16(b, 4),
            lpm: b[6],
            ctrl1: b[7],
            cpa: be32(b, 8),
        };
        (orb.cpa & 0x8000_0007 == 0).then_some(orb)
    }

    pub fn format1(&self) -> bool {
        self.ctrl0 & Self::CTRL0_FORMAT1 != 0
    }

    pub fn key(&self) -> u8 {
        (self.ctrl0 >> 12) as u8
    }
}

/// A channel-command word, normalised from format 0 or 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ccw {
    pub cmd: u8,
    /// Chain data (0x80), chain command (0x40), suppress length (0x20), skip (0x10),
    /// PCI (0x08), indirect data (0x04), suspend (0x02), MIDA (0x01).
    pub flags: u8,
    pub count: u16,
    pub cda: u32,
}

impl Ccw {
    pub const FLAG_CD: u8 = 0x80;
    pub const FLAG_CC: u8 = 0x40;
    pub const FLAG_SLI: u8 = 0x20;
    pub const FLAG_SKIP: u8 = 0x10;
    pub const FLAG_IDA: u8 = 0x04;
    /// Transfer in channel: a branch in the channel program.
    pub const CMD_TIC: u8 = 0x08;

    /// Format 1: cmd(8) flags(8) count(16) 0(1) data address(31).
    pub fn parse_format1(b: &[u8; 8]) -> Option<Self> {
        let cda = be32(b, 4);
        if cda & 0x8000_0000 != 0 {
            return None;
        }
        Some(Self {
            cmd: b[0],
            flags: b[1],
            count: be16(b, 2),
            cda,
        })
    }

    /// Format 0: cmd(8) data address(24) flags(8) 0(8) count(16).
    pub fn parse_format0(b: &[u8; 8]) -> Self {
        Self {
            cmd: b[0],
            flags: b[4],
            count: be16(b, 6),
            cda: be32(b, 0) & 0x00ff_ffff,
        }
    }

    /// Whether the channel program goes on after this CCW.
    pub fn chains(&self) -> bool {
        self.flags & (Self::FLAG_CD | Self::FLAG_CC) != 0
    }

    pub fn to_format1(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.cmd;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&self.count.to_be_bytes());
        b[4..8].copy_from_slice(&self.cda.to_be_bytes());
        b
    }
}

/// Interruption-response block (96 bytes) that TSCH stores: the SCSW, then the extended
/// status word (format 0: subchannel logout, ERW, failing-storage address, ...), the
/// extended-control word and the extended-measurement word, zero unless set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Irb {
    pub scsw: Scsw,
    pub esw: [u8; 20],
    pub ecw: [u8; 32],
    pub emw: [u8; 32],
}

impl Irb {
    pub const LEN: usize = 96;

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..12].copy_from_slice(&self.scsw.to_bytes());
        b[12..32].copy_from_slice(&self.esw);
        b[32..64].copy_from_slice(&self.ecw);
        b[64..96].copy_from_slice(&self.emw);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subchannel_ids() {
        assert_eq!(
            SubchannelId::decode(0x0001_0003),
            Some(SubchannelId {
                cssid: 0,
                ssid: 0,
                number: 3
            })
        );
        let id = SubchannelId::decode(0xfe0f_0102).unwrap();
        assert_eq!(
            id,
            SubchannelId {
                cssid: 0xfe,
                ssid: 3,
                number: 0x0102
            }
        );
        assert_eq!(id.encode(), 0xfe0f_0102);
        assert_eq!(SubchannelId::decode(0x0000_0003), None); // no "one" bit
        assert_eq!(SubchannelId::decode(0xfe01_0003), None); // cssid without M
        assert_eq!(SubchannelId::decode(0x0011_0003), None); // reserved bit
    }

    #[test]
    fn schib_bytes_round_trip() {
        let schib = Schib {
            pmcw: Pmcw {
                intparm: 0x1122_3344,
                flags: (3 << 11) | Pmcw::FLAG_ENABLED | Pmcw::FLAG_DEVNO_VALID,
                devno: 0x0001,
                lpm: 0x80,
                pnom: 0,
                lpum: 0x80,
                pim: 0x80,
                mbi: 0,
                pom: 0xff,
                pam: 0x80,
                chpid: [0, 0, 0, 0, 0, 0, 0, 0],
                chars: 0,
            },
            scsw: Scsw {
                flags: 0x0080,
                ctrl: Scsw::FCTL_START | Scsw::STCTL_PRIMARY | Scsw::STCTL_STATUS_PENDING,
                cpa: 0x0001_2348,
                dstat: Scsw::DSTAT_CHANNEL_END | Scsw::DSTAT_DEVICE_END,
                cstat: 0,
                count: 0,
            },
            mba: 0,
            mda: [0; 4],
        };
        let b = schib.to_bytes();
        assert_eq!(
            &b[..40],
            &[
                0x11, 0x22, 0x33, 0x44, 0x18, 0x81, 0x00, 0x01, 0x80, 0x00, 0x80, 0x80, 0x00, 0x00,
                0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // PMCW
                0x00, 0x80, 0x40, 0x05, 0x00, 0x01, 0x23, 0x48, 0x0c, 0x00, 0x00,
                0x00, // SCSW
            ]
        );
        assert_eq!(schib.pmcw.isc(), 3);
        assert_eq!(Schib::from_bytes(&b), schib);
    }

    #[test]
    fn orb_and_ccws() {
        let orb = Orb::parse(&[
            0xde, 0xad, 0xbe, 0xef, 0x00, 0x80, 0xff, 0x00, 0x00, 0x00, 0x10, 0x00,
        ])
        .unwrap();
        assert_eq!(orb.intparm, 0xdead_beef);
        assert!(orb.format1());
        assert_eq!(orb.key(), 0);
        assert_eq!(orb.lpm, 0xff);
        assert_eq!(orb.cpa, 0x1000);
        assert_eq!(
            Orb::parse(&[0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0x10, 0x04]),
            None
        );
        assert_eq!(
            Orb::parse(&[0, 0, 0, 0, 0, 0x80, 0, 0, 0x80, 0, 0, 0]),
            None
        );

        // virtio-ccw SET_VQ (0x13), chain command, 24 bytes from 0x2000.
        let ccw = Ccw::parse_format1(&[0x13, 0x40, 0x00, 0x18, 0x00, 0x00, 0x20, 0x00]).unwrap();
        assert_eq!(
            ccw,
            Ccw {
                cmd: 0x13,
                flags: Ccw::FLAG_CC,
                count: 24,
                cda: 0x2000
            }
        );
        assert!(ccw.chains());
        assert_eq!(
            ccw.to_format1(),
            [0x13, 0x40, 0x00, 0x18, 0x00, 0x00, 0x20, 0x00]
        );
        assert_eq!(Ccw::parse_format1(&[0x02, 0, 0, 8, 0x80, 0, 0, 0]), None);
        // The IPL CCW as a format-0 word: read 0x60 bytes into 0x18 with chain command.
        assert_eq!(
            Ccw::parse_format0(&[0x02, 0x00, 0x00, 0x18, 0x60, 0x00, 0x00, 0x60]),
            Ccw {
                cmd: 0x02,
                flags: 0x60,
                count: 0x60,
                cda: 0x18
            }
        );
    }

    #[test]
    fn irb_layout() {
        let irb = Irb {
            scsw: Scsw {
                ctrl: Scsw::STCTL_ALERT | Scsw::STCTL_STATUS_PENDING,
                dstat: Scsw::DSTAT_UNIT_CHECK,
                ..Default::default()
            },
            ..Default::default()
        };
        let b = irb.to_bytes();
        assert_eq!(b.len(), 96);
        assert_eq!(&b[..12], &[0, 0, 0, 0x11, 0, 0, 0, 0, 0x02, 0, 0, 0]);
        assert!(b[12..].iter().all(|&x| x == 0));
    }
}
