// SPDX-License-Identifier: Apache-2.0
//! One I/O subchannel: its SCHIB and the functions the I/O instructions start on it
//! (Principles of Operation ch. 14-16), as a state machine over the SCSW. Channel programs
//! run synchronously (see [`super::ccw`]), so a start function is in progress only for the
//! duration of one `SSCH`; whatever makes the subchannel status pending returns the I/O
//! interrupt to make pending in the machine.

use std::sync::{Arc, Mutex, MutexGuard};

use super::blocks::{Irb, Orb, Pmcw, Schib, Scsw, SubchannelId};

/// The channel subsystem image virtual devices live in (as on QEMU); a guest that has not
/// enabled MCSS-E addresses it as css 0.
pub const VIRTUAL_CSSID: u8 = 0xfe;
/// The only channel path: CHPID 0, of type "virtio" (0x32).
pub const CHPID: u8 = 0;
pub const CHPID_TYPE_VIRTIO: u8 = 0x32;
/// Sense byte 0: command reject.
pub const SENSE_COMMAND_REJECT: u8 = 0x80;
/// Bytes of sense data a subchannel keeps (what concurrent sense stores in the ECW).
pub const SENSE_LEN: usize = 32;

/// Condition codes of the I/O instructions.
pub mod cc {
    pub const OK: u8 = 0;
    pub const STATUS_PENDING: u8 = 1;
    pub const BUSY: u8 = 2;
    pub const NOT_OPERATIONAL: u8 = 3;
}

/// An I/O interruption as the machine presents it (the interruption code stored at
/// 0xb8-0xc3 of the lowcore): subchannel-identification word, interruption parameter and
/// interruption-identification word (ISC in bits 2-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoInterrupt {
    /// The upper half of the subchannel identifier (`cssid | m | ssid | 1`).
    pub subchannel_id: u16,
    pub subchannel_nr: u16,
    pub parm: u32,
    pub word: u32,
}

impl IoInterrupt {
    /// Interruption-identification word bit 0: an adapter interruption (no subchannel).
    pub const WORD_ADAPTER: u32 = 0x8000_0000;

    /// An adapter (thin) interruption for interruption subclass `isc`: no subchannel, no
    /// parameter, the A bit and the ISC in the word, as QEMU's `css_adapter_interrupt`
    /// presents it.
    pub fn adapter(isc: u8) -> Self {
        Self {
            subchannel_id: 0,
            subchannel_nr: 0,
            parm: 0,
            word: Self::WORD_ADAPTER | (u32::from(isc & 7) << 27),
        }
    }

    pub fn is_adapter(&self) -> bool {
        self.word & Self::WORD_ADAPTER != 0
    }

    /// The subchannel identifier as GR1 holds it.
    pub fn schid(&self) -> u32 {
        (u32::from(self.subchannel_id) << 16) | u32::from(self.subchannel_nr)
    }

    pub fn isc(&self) -> u8 {
        ((self.word >> 27) & 7) as u8
    }
}

/// Where pending I/O interrupts go (KVM's floating interrupt queue on s390x hosts).
pub trait IoInterruptSink: Send + Sync {
    fn inject(&self, irq: IoInterrupt);
    /// Make a channel-report-pending machine check pending (floating; the guest then
    /// fetches the reports with `STCRW`).
    fn channel_report_pending(&self);
}

/// How a channel program ended, as the subchannel records it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// Address of the last CCW executed + 8.
    pub cpa: u32,
    pub dstat: u8,
    pub cstat: u8,
    /// Residual count of the last CCW.
    pub count: u16,
    /// New sense data (set with a unit check).
    pub sense: Option<[u8; SENSE_LEN]>,
}

/// The state behind one subchannel: its SCHIB and sense data.
#[derive(Clone, Debug)]
pub struct SubchannelState {
    pub schib: Schib,
    pub sense: [u8; SENSE_LEN],
    /// The ORB of the running or last start function.
    pub orb: Orb,
    number: u16,
    ssid: u8,
}

impl SubchannelState {
    /// A subchannel for device number `devno` (0.`ssid`.`devno`) on the virtio channel path,
    /// disabled, nothing pending.
    pub fn new(ssid: u8, number: u16, devno: u16) -> Self {
        let pmcw = Pmcw {
            flags: Pmcw::FLAG_DEVNO_VALID,
            devno,
            lpm: 0x80,
            pim: 0x80,
            pom: 0xff,
            pam: 0x80,
            chpid: [CHPID, 0, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        Self {
            schib: Schib {
                pmcw,
                ..Default::default()
            },
            sense: [0; SENSE_LEN],
            orb: Orb::default(),
            number,
            ssid,
        }
    }

    fn scsw(&mut self) -> &mut Scsw {
        &mut self.schib.scsw
    }

    pub fn status_pending(&self) -> bool {
        self.schib.scsw.ctrl & Scsw::STCTL_STATUS_PENDING != 0
    }

    fn function_active(&self) -> bool {
        self.schib.scsw.ctrl & Scsw::FCTL_MASK != 0
    }

    /// The interrupt this subchannel presents when it becomes status pending.
    pub fn interrupt(&self) -> IoInterrupt {
        IoInterrupt {
            subchannel_id: (u16::from(self.ssid & 3) << 1) | 1,
            subchannel_nr: self.number,
            parm: self.schib.pmcw.intparm,
            word: u32::from(self.schib.pmcw.isc()) << 27,
        }
    }

    /// MODIFY SUBCHANNEL with a SCHIB already checked valid: takes the program-modifiable
    /// fields. Returns the condition code.
    pub fn modify(&mut self, new: &Schib) -> u8 {
        if self.status_pending() {
            return cc::STATUS_PENDING;
        }
        if self.function_active() {
            return cc::BUSY;
        }
        let p = &mut self.schib.pmcw;
        p.intparm = new.pmcw.intparm;
        p.flags = (p.flags & !Pmcw::FLAG_MODIFIABLE) | (new.pmcw.flags & Pmcw::FLAG_MODIFIABLE);
        p.lpm = new.pmcw.lpm;
        p.mbi = new.pmcw.mbi;
        let chars = Pmcw::CHARS_MBFC | Pmcw::CHARS_CSENSE;
        p.chars = (p.chars & !chars) | (new.pmcw.chars & chars);
        self.schib.mba = new.mba;
        cc::OK
    }

    /// START SUBCHANNEL, first half: accept the ORB and make the start function active.
    /// `Err(cc)` when the subchannel cannot start.
    pub fn start(&mut self, orb: &Orb) -> Result<(), u8> {
        if !self.schib.pmcw.enabled() {
            return Err(cc::NOT_OPERATIONAL);
        }
        if self.status_pending() {
            return Err(cc::STATUS_PENDING);
        }
        if self.function_active() {
            return Err(cc::BUSY);
        }
        self.orb = *orb;
        self.schib.pmcw.intparm = orb.intparm;
        let s = self.scsw();
        s.flags = (orb.ctrl0 & Orb::CTRL0_KEY) | (orb.ctrl0 & Orb::CTRL0_FORMAT1);
        s.ctrl = Scsw::FCTL_START | Scsw::ACTL_START_PENDING;
        s.cpa = orb.cpa;
        s.dstat = 0;
        s.cstat = 0;
        s.count = 0;
        Ok(())
    }

    /// START SUBCHANNEL, second half: the channel program ended. Returns the interrupt.
    pub fn complete(&mut self, done: &Completion) -> IoInterrupt {
        if let Some(sense) = done.sense {
            self.sense = sense;
        }
        let s = self.scsw();
        s.ctrl &= !(Scsw::ACTL_MASK | Scsw::STCTL_MASK);
        s.ctrl |= Scsw::STCTL_PRIMARY | Scsw::STCTL_SECONDARY | Scsw::STCTL_STATUS_PENDING;
        if done.dstat & Scsw::DSTAT_UNIT_CHECK != 0 || done.cstat != 0 {
            s.ctrl |= Scsw::STCTL_ALERT;
        }
        s.cpa = done.cpa;
        s.dstat = done.dstat;
        s.cstat = done.cstat;
        s.count = done.count;
        self.interrupt()
    }

    /// TEST SUBCHANNEL: the IRB to store and the condition code; clears the status.
    pub fn test(&mut self) -> (u8, Irb) {
        let mut irb = Irb {
            scsw: self.schib.scsw,
            ..Default::default()
        };
        if !self.status_pending() {
            return (cc::STATUS_PENDING, irb);
        }
        // Format-0 ESW: the last path used.
        irb.esw[1] = 0x80;
        let unit_check = self.schib.scsw.dstat & Scsw::DSTAT_UNIT_CHECK != 0;
        let csense = self.schib.pmcw.chars & Pmcw::CHARS_CSENSE != 0;
        if unit_check && csense {
            // Concurrent sense: the sense data in the ECW, flagged in the ERW (cons, scnt).
            irb.scsw.flags |= Scsw::FLAG_ESWF | Scsw::FLAG_ECTL;
            irb.ecw = self.sense;
            let erw: u32 = 0x0100_0000 | ((SENSE_LEN as u32) << 16);
            irb.esw[4..8].copy_from_slice(&erw.to_be_bytes());
        }
        let stctl = self.schib.scsw.ctrl & Scsw::STCTL_MASK;
        let s = self.scsw();
        s.ctrl &= !Scsw::STCTL_MASK;
        if stctl != Scsw::STCTL_INTERMEDIATE | Scsw::STCTL_STATUS_PENDING {
            s.ctrl &= !(Scsw::FCTL_MASK | Scsw::ACTL_MASK);
            s.flags &= !Scsw::FLAG_PNO;
        }
        if csense {
            self.sense = [0; SENSE_LEN];
        }
        (cc::OK, irb)
    }

    /// CLEAR SUBCHANNEL: ends everything, status pending with the clear function.
    pub fn clear(&mut self) -> IoInterrupt {
        let p = &mut self.schib.pmcw;
        p.pnom = 0;
        p.lpum = 0x80;
        let s = self.scsw();
        s.flags &= !Scsw::FLAG_PNO;
        s.ctrl = Scsw::FCTL_CLEAR | Scsw::STCTL_STATUS_PENDING;
        s.dstat = 0;
        s.cstat = 0;
        self.sense = [0; SENSE_LEN];
        self.interrupt()
    }

    /// HALT SUBCHANNEL. Channel programs never stay active, so a halt finds the device
    /// idle and ends with device end.
    pub fn halt(&mut self) -> Result<IoInterrupt, u8> {
        let stctl = self.schib.scsw.ctrl & Scsw::STCTL_MASK;
        if self.status_pending() && stctl != Scsw::STCTL_INTERMEDIATE | Scsw::STCTL_STATUS_PENDING {
            return Err(cc::STATUS_PENDING);
        }
        if self.schib.scsw.ctrl & (Scsw::FCTL_HALT | Scsw::FCTL_CLEAR) != 0 {
            return Err(cc::BUSY);
        }
        let s = self.scsw();
        s.ctrl = (s.ctrl & Scsw::FCTL_START) | Scsw::FCTL_HALT | Scsw::STCTL_STATUS_PENDING;
        s.dstat = Scsw::DSTAT_DEVICE_END;
        s.cstat = 0;
        Ok(self.interrupt())
    }

    /// RESUME SUBCHANNEL and CANCEL SUBCHANNEL: nothing is ever suspended or start-pending
    /// once `SSCH` returned, so both find the wrong state (cc 2) unless status is pending.
    pub fn resume_or_cancel(&self) -> u8 {
        if self.status_pending() {
            cc::STATUS_PENDING
        } else {
            cc::BUSY
        }
    }

    /// An unsolicited alert (virtio notification for the driver): status pending with
    /// alert status, unless the subchannel is disabled, already status pending, or running
    /// a start function (whose end interrupts anyway).
    pub fn alert(&mut self) -> Option<IoInterrupt> {
        if !self.schib.pmcw.enabled() || self.status_pending() || self.function_active() {
            return None;
        }
        let s = self.scsw();
        s.ctrl = Scsw::STCTL_ALERT | Scsw::STCTL_STATUS_PENDING;
        s.dstat = 0;
        s.cstat = 0;
        Some(self.interrupt())
    }
}

/// A subchannel as devices and the channel subsystem share it: its identity, its state
/// and where its interrupts go.
pub struct Subchannel {
    id: SubchannelId,
    state: Mutex<SubchannelState>,
    sink: Arc<dyn IoInterruptSink>,
}

impl Subchannel {
    pub fn new(ssid: u8, number: u16, sink: Arc<dyn IoInterruptSink>) -> Self {
        Self {
            id: SubchannelId {
                cssid: VIRTUAL_CSSID,
                ssid,
                number,
            },
            state: Mutex::new(SubchannelState::new(ssid, number, number)),
            sink,
        }
    }

    pub fn id(&self) -> SubchannelId {
        self.id
    }

    /// The state; never held while the device behind the subchannel is locked.
    pub fn lock(&self) -> MutexGuard<'_, SubchannelState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn inject(&self, irq: IoInterrupt) {
        log::trace!("css: I/O interrupt for {:#010x}", irq.schid());
        self.sink.inject(irq);
    }

    /// Make an adapter interruption for `isc` pending (the device set its indicators).
    pub fn inject_adapter(&self, isc: u8) {
        log::trace!("css: adapter interrupt, ISC {isc}, from {:?}", self.id);
        self.sink.inject(IoInterrupt::adapter(isc));
    }

    /// Signal the driver (unsolicited alert status), when the architecture lets it.
    pub fn alert(&self) {
        let irq = self.lock().alert();
        log::trace!("css: alert on {:?}: {irq:?}", self.id);
        if let Some(irq) = irq {
            self.inject(irq);
        }
    }
}
