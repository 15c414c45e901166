// SPDX-License-Identifier: Apache-2.0
//! The channel subsystem: subchannels 0.0.0000, 0.0.0001, ... (one per device, in the
//! virtual channel-subsystem image 0xfe that a guest without MCSS-E sees as css 0), the
//! I/O instructions that reach them (`STSCH`, `MSCH`, `SSCH`, `TSCH`, `CSCH`, `HSCH`,
//! `RSCH`, `XSCH`, `STCRW`, `CHSC`, ...), and I/O interrupts through an
//! [`IoInterruptSink`]. Instruction operands are logical addresses the backend resolves
//! ([`OperandMemory`]); channel programs and their data are absolute addresses in guest
//! memory. Portable: compiled and tested on every target.
//!
//! Locking: a subchannel's state and the device behind it have separate locks. Device code
//! (a virtio notification, ...) may take the state lock to signal the driver; state-lock
//! holders never take the device lock, so `SSCH` releases the state between accepting the
//! ORB and running the channel program. The table of subchannels is read-mostly (an
//! `RwLock` held only to clone a slot's `Arc`): hotplug ([`ChannelSubsystem::plug`],
//! [`ChannelSubsystem::unplug`]) changes it while vCPUs run I/O instructions, and an
//! instruction already under way on an unplugged subchannel finishes on its own `Arc`.
//!
//! Hotplug is announced as QEMU announces it: a channel report word (CRW) for the
//! subchannel, "installed parameters initialized", and a channel-report-pending machine
//! check ([`IoInterruptSink::channel_report_pending`]) when none is outstanding; the guest
//! then fetches the reports with `STCRW` until it gets cc 1 (which re-arms the machine
//! check) and looks at the subchannel with `STSCH` to see whether it came or went.

pub mod blocks;
pub mod ccw;
pub mod chsc;
pub mod crw;
pub mod subchannel;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

pub use blocks::{Ccw, Irb, Orb, Pmcw, Schib, Scsw, SubchannelId};
pub use ccw::{CcwDevice, CcwError, ChannelProgram, DataStream};
pub use crw::Crw;
pub use subchannel::{
    cc, Completion, IoInterrupt, IoInterruptSink, Subchannel, SubchannelState, VIRTUAL_CSSID,
};

use crate::virtio::GuestMemory;

/// Program-interruption codes (the ones channel I/O and the SCLP need, and the few more
/// the s390x backend uses for its own intercepts).
pub mod pgm {
    pub const OPERATION: u16 = 0x0001;
    pub const PRIVILEGED_OPERATION: u16 = 0x0002;
    pub const ADDRESSING: u16 = 0x0005;
    pub const SPECIFICATION: u16 = 0x0006;
    pub const OPERAND: u16 = 0x0015;
}

/// The I/O instructions (all `0xb2xx`, S format except `CHSC`, RRE; the s390x backend
/// decodes them from its intercepts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    Csch,
    Hsch,
    Msch,
    Ssch,
    Stsch,
    Tsch,
    Tpi,
    Sal,
    Rsch,
    Stcrw,
    Stcps,
    Rchp,
    Schm,
    Chsc,
    Xsch,
}

/// An operand access failed; the backend already made the access exception pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessFault;

/// Guest memory as the CPU addresses instruction operands (logical addresses: DAT and
/// prefixing apply). The backend goes through KVM; tests map them 1:1.
pub trait OperandMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), AccessFault>;
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessFault>;
}

/// What an I/O instruction did, for the backend to apply to the vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOutcome {
    /// Completed with this condition code.
    Cc(u8),
    /// Completed; the condition code stays as it was.
    Unchanged,
    /// A program exception with this interruption code.
    Program(u16),
    /// An operand access faulted (already pending).
    Faulted,
}

struct Slot {
    subchannel: Arc<Subchannel>,
    device: Mutex<Box<dyn CcwDevice>>,
}

impl Slot {
    fn device(&self) -> MutexGuard<'_, Box<dyn CcwDevice>> {
        self.device.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// All subchannels of the machine.
pub struct ChannelSubsystem {
    mem: GuestMemory,
    sink: Arc<dyn IoInterruptSink>,
    /// Indexed by subchannel number; `None` where a device was unplugged (the number is
    /// reused by the next plug).
    slots: RwLock<Vec<Option<Arc<Slot>>>>,
    /// Channel reports the guest has not fetched yet.
    crws: Mutex<crw::Reports>,
    /// I/O instructions served, and how many of them were STSCH (the subchannel scan).
    served: AtomicU64,
    stsch: AtomicU64,
    /// Virtio notifications that reached [`ChannelSubsystem::notify`] (the DIAG 0x500
    /// intercept: those KVM did not signal through an ioeventfd itself).
    notifies: AtomicU64,
}

/// What stays in a slot an instruction still holds after its device was unplugged: it
/// rejects every command (the guest sees the subchannel gone at its next `STSCH`).
struct Gone;

impl CcwDevice for Gone {
    fn sense_id(&self) -> [u8; 8] {
        [0; 8]
    }
    fn execute(&mut self, _cmd: u8, _data: &mut DataStream<'_>) -> Result<(), CcwError> {
        Err(CcwError::CommandReject)
    }
}

fn check<T>(r: Result<T, AccessFault>) -> Result<T, IoOutcome> {
    r.map_err(|_| IoOutcome::Faulted)
}

impl ChannelSubsystem {
    pub fn new(mem: GuestMemory, sink: Arc<dyn IoInterruptSink>) -> Self {
        Self {
            mem,
            sink,
            slots: RwLock::new(Vec::new()),
            crws: Mutex::new(crw::Reports::default()),
            served: AtomicU64::new(0),
            stsch: AtomicU64::new(0),
            notifies: AtomicU64::new(0),
        }
    }

    /// I/O instructions served so far, and how many of them were STSCH.
    pub fn served(&self) -> (u64, u64) {
        (
            self.served.load(Ordering::Relaxed),
            self.stsch.load(Ordering::Relaxed),
        )
    }

    /// Virtio notifications served by [`ChannelSubsystem::notify`] so far.
    pub fn diag_notifies(&self) -> u64 {
        self.notifies.load(Ordering::Relaxed)
    }

    /// Add a device on the next free subchannel (device number = subchannel number);
    /// `make` builds it around its subchannel. Before the guest runs: nothing is
    /// announced (the guest finds it by its scan).
    pub fn add_device(
        &self,
        make: impl FnOnce(Arc<Subchannel>) -> Box<dyn CcwDevice>,
    ) -> Option<SubchannelId> {
        let mut slots = self.slots_mut();
        let free = slots.iter().position(Option::is_none);
        let number = u16::try_from(free.unwrap_or(slots.len())).ok()?;
        let subchannel = Arc::new(Subchannel::new(0, number, self.sink.clone()));
        let id = subchannel.id();
        let slot = Some(Arc::new(Slot {
            device: Mutex::new(make(subchannel.clone())),
            subchannel,
        }));
        match free {
            Some(i) => slots[i] = slot,
            None => slots.push(slot),
        }
        Some(id)
    }

    /// Hotplug: [`ChannelSubsystem::add_device`] while the guest runs, announced with a
    /// channel report.
    pub fn plug(
        &self,
        make: impl FnOnce(Arc<Subchannel>) -> Box<dyn CcwDevice>,
    ) -> Option<SubchannelId> {
        let id = self.add_device(make)?;
        self.report(Crw::subchannel_installed(id.number));
        Some(id)
    }

    /// Hot-unplug the device on subchannel `number`, announced with a channel report; the
    /// device comes back for the caller to drop (an instruction still running on it holds
    /// its own reference until it ends). `None`: there is no device there.
    pub fn unplug(&self, number: u16) -> Option<Box<dyn CcwDevice>> {
        let slot = self.slots_mut().get_mut(usize::from(number))?.take()?;
        self.report(Crw::subchannel_installed(number));
        // Nothing the guest does can reach the slot from here on but an instruction that
        // already holds it; its interrupts name a subchannel the guest finds gone.
        let device = match Arc::try_unwrap(slot) {
            Ok(slot) => slot.device.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(shared) => {
                let mut guard = shared.device();
                std::mem::replace(&mut *guard, Box::new(Gone))
            }
        };
        Some(device)
    }

    /// Queue `crw` for `STCRW` and raise the machine check when none is outstanding.
    fn report(&self, crw: Crw) {
        let raise = self
            .crws
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue(crw);
        if raise {
            self.sink.channel_report_pending();
        }
    }

    fn slots_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Option<Arc<Slot>>>> {
        self.slots.write().unwrap_or_else(|p| p.into_inner())
    }

    /// How many subchannels hold a device.
    pub fn len(&self) -> usize {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn memory(&self) -> &GuestMemory {
        &self.mem
    }

    /// The subchannel GR1 names: `Err(Program)` for an invalid identifier, `Ok(None)` for
    /// one that is not there (condition code 3).
    fn slot(&self, gr1: u64) -> Result<Option<Arc<Slot>>, IoOutcome> {
        let id = SubchannelId::decode(gr1 as u32).ok_or(IoOutcome::Program(pgm::OPERAND))?;
        if gr1 >> 32 != 0 {
            return Err(IoOutcome::Program(pgm::OPERAND));
        }
        if (id.cssid != 0 && id.cssid != VIRTUAL_CSSID) || id.ssid != 0 {
            return Ok(None);
        }
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        Ok(slots.get(usize::from(id.number)).cloned().flatten())
    }

    /// Execute `op` with GR1 = `gr1` and second operand at `addr`.
    pub fn execute(&self, op: IoOp, gr1: u64, addr: u64, mem: &mut dyn OperandMemory) -> IoOutcome {
        self.served.fetch_add(1, Ordering::Relaxed);
        if op == IoOp::Stsch {
            self.stsch.fetch_add(1, Ordering::Relaxed);
        }
        let r = match op {
            IoOp::Stsch => self.stsch(gr1, addr, mem),
            IoOp::Msch => self.msch(gr1, addr, mem),
            IoOp::Ssch => self.ssch(gr1, addr, mem),
            IoOp::Tsch => self.tsch(gr1, addr, mem),
            IoOp::Csch | IoOp::Hsch | IoOp::Rsch | IoOp::Xsch => self.control(op, gr1),
            IoOp::Stcrw => self.stcrw(addr, mem),
            IoOp::Chsc => Self::chsc(addr, mem),
            // KVM dequeues the interrupt for TPI itself; reaching here means none is pending.
            IoOp::Tpi => Ok(IoOutcome::Cc(0)),
            IoOp::Sal if gr1 & 0x8000_0000 != 0 => Err(IoOutcome::Program(pgm::OPERAND)),
            IoOp::Sal | IoOp::Schm => Ok(IoOutcome::Unchanged),
            IoOp::Rchp if gr1 & 0xff == u64::from(subchannel::CHPID) => Ok(IoOutcome::Cc(0)),
            IoOp::Rchp => Ok(IoOutcome::Cc(cc::NOT_OPERATIONAL)),
            IoOp::Stcps => Err(IoOutcome::Program(pgm::OPERATION)),
        };
        let outcome = r.unwrap_or_else(|o| o);
        log::trace!("css: {op:?} {gr1:#010x} {addr:#x}: {outcome:?}");
        outcome
    }

    fn stsch(
        &self,
        gr1: u64,
        addr: u64,
        mem: &mut dyn OperandMemory,
    ) -> Result<IoOutcome, IoOutcome> {
        if addr & 3 != 0 {
            return Err(IoOutcome::Program(pgm::SPECIFICATION));
        }
        let Some(slot) = self.slot(gr1)? else {
            return Ok(IoOutcome::Cc(cc::NOT_OPERATIONAL));
        };
        let schib = slot.subchannel.lock().schib;
        check(mem.write(addr, &schib.to_bytes()))?;
        Ok(IoOutcome::Cc(cc::OK))
    }

    fn msch(
        &self,
        gr1: u64,
        addr: u64,
        mem: &mut dyn OperandMemory,
    ) -> Result<IoOutcome, IoOutcome> {
        if addr & 3 != 0 {
            return Err(IoOutcome::Program(pgm::SPECIFICATION));
        }
        let slot = self.slot(gr1)?;
        let mut b = [0u8; Schib::LEN];
        check(mem.read(addr, &mut b))?;
        let new = Schib::from_bytes(&b);
        if new.pmcw.flags & Pmcw::FLAG_RESERVED != 0
            || new.pmcw.chars & (Pmcw::CHARS_RESERVED | Pmcw::CHARS_XMWME) != 0
        {
            return Err(IoOutcome::Program(pgm::OPERAND));
        }
        let Some(slot) = slot else {
            return Ok(IoOutcome::Cc(cc::NOT_OPERATIONAL));
        };
        let (code, disabled) = {
            let mut st = slot.subchannel.lock();
            let was = st.schib.pmcw.enabled();
            let code = st.modify(&new);
            (code, was && !st.schib.pmcw.enabled())
        };
        if disabled {
            slot.device().disabled();
        }
        Ok(IoOutcome::Cc(code))
    }

    fn ssch(
        &self,
        gr1: u64,
        addr: u64,
        mem: &mut dyn OperandMemory,
    ) -> Result<IoOutcome, IoOutcome> {
        if addr & 3 != 0 {
            return Err(IoOutcome::Program(pgm::SPECIFICATION));
        }
        let slot = self.slot(gr1)?;
        let mut b = [0u8; 12];
        check(mem.read(addr, &mut b))?;
        let orb = match Orb::parse(&b) {
            Some(orb) if orb.is_valid() => orb,
            _ => return Err(IoOutcome::Program(pgm::OPERAND)),
        };
        let Some(slot) = slot else {
            return Ok(IoOutcome::Cc(cc::NOT_OPERATIONAL));
        };
        let sense = {
            let mut st = slot.subchannel.lock();
            if let Err(code) = st.start(&orb) {
                return Ok(IoOutcome::Cc(code));
            }
            st.sense
        };
        let done = {
            let mut device = slot.device();
            ChannelProgram::new(&self.mem, orb, sense).run(&mut **device)
        };
        let irq = slot.subchannel.lock().complete(&done);
        slot.subchannel.inject(irq);
        Ok(IoOutcome::Cc(cc::OK))
    }

    fn tsch(
        &self,
        gr1: u64,
        addr: u64,
        mem: &mut dyn OperandMemory,
    ) -> Result<IoOutcome, IoOutcome> {
        if addr & 3 != 0 {
            return Err(IoOutcome::Program(pgm::SPECIFICATION));
        }
        let Some(slot) = self.slot(gr1)? else {
            return Ok(IoOutcome::Cc(cc::NOT_OPERATIONAL));
        };
        // The status clears only once the IRB is stored (an access exception suppresses).
        let mut st = slot.subchannel.lock();
        let mut next = st.clone();
        let (code, irb) = next.test();
        check(mem.write(addr, &irb.to_bytes()))?;
        *st = next;
        Ok(IoOutcome::Cc(code))
    }

    fn control(&self, op: IoOp, gr1: u64) -> Result<IoOutcome, IoOutcome> {
        let Some(slot) = self.slot(gr1)? else {
            return Ok(IoOutcome::Cc(cc::NOT_OPERATIONAL));
        };
        let mut st = slot.subchannel.lock();
        let r = match op {
            IoOp::Csch => Ok(st.clear()),
            IoOp::Hsch => st.halt(),
            _ => Err(st.resume_or_cancel()),
        };
        drop(st);
        Ok(IoOutcome::Cc(match r {
            Ok(irq) => {
                slot.subchannel.inject(irq);
                cc::OK
            }
            Err(code) => code,
        }))
    }

    /// STORE CHANNEL REPORT WORD: the oldest report (cc 0), or zeros and cc 1 when none
    /// is pending, which re-arms the machine check for the next report. A report survives
    /// a store that faults.
    fn stcrw(&self, addr: u64, mem: &mut dyn OperandMemory) -> Result<IoOutcome, IoOutcome> {
        if addr & 3 != 0 {
            return Err(IoOutcome::Program(pgm::SPECIFICATION));
        }
        let mut crws = self.crws.lock().unwrap_or_else(|p| p.into_inner());
        let next = crws.peek();
        check(mem.write(addr, &next.map_or(0, Crw::word).to_be_bytes()))?;
        Ok(IoOutcome::Cc(match next {
            Some(_) => {
                crws.pop();
                cc::OK
            }
            None => {
                crws.rearm();
                1
            }
        }))
    }

    fn chsc(addr: u64, mem: &mut dyn OperandMemory) -> Result<IoOutcome, IoOutcome> {
        if addr & 0xfff != 0 {
            return Err(IoOutcome::Program(pgm::SPECIFICATION));
        }
        let mut page = [0u8; chsc::PAGE];
        check(mem.read(addr, &mut page))?;
        let range = chsc::call(&mut page).map_err(|e| {
            log::debug!("css: CHSC request length {:#x}", e.0);
            IoOutcome::Program(pgm::OPERAND)
        })?;
        check(mem.write(addr + range.start as u64, &page[range]))?;
        Ok(IoOutcome::Cc(cc::OK))
    }

    /// A virtio-ccw notification (DIAG 0x500 subcode 3) for queue `queue` of the device on
    /// subchannel `schid`: the value for GR2 (0, or a negative errno).
    pub fn notify(&self, schid: u64, queue: u64) -> i64 {
        const EINVAL: i64 = -22;
        let n = self.notifies.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            log::debug!("css: first virtio notify through the DIAG 0x500 intercept");
        }
        match self.slot(schid & 0xffff_ffff) {
            Ok(Some(slot)) => match u16::try_from(queue) {
                Ok(q) if slot.device().notify(q) => 0,
                _ => EINVAL,
            },
            _ => EINVAL,
        }
    }
}
