// SPDX-License-Identifier: Apache-2.0
//! The virtio-ccw transport (virtio 1.2 §4.3): a [`VirtioDevice`] behind a subchannel.
//! The driver configures it with channel commands (SET_VIRTIO_REV, READ_FEAT/WRITE_FEAT,
//! READ_CONF/WRITE_CONF, WRITE_STATUS/READ_STATUS, READ_VQ_CONF, SET_VQ, SET_IND,
//! SET_CONF_IND, SET_IND_ADAPTER), notifies queues with DIAG 0x500, and is interrupted
//! for used buffers in one of two ways:
//! - adapter interrupts (two-stage indicators, what Linux asks for first): SET_IND_ADAPTER
//!   names a summary indicator byte, a queue-indicator area and the area's first bit for
//!   this device; a used buffer on queue `i` sets bit `first + i` of the area (bits numbered
//!   from the most significant bit of its first byte), then the summary byte, and an adapter
//!   interruption for the driver's ISC is made pending when the summary was clear (as QEMU
//!   does; the driver clears it once it has scanned the area). Where the backend offers
//!   [`AdapterRoutes`] (s390x KVM: adapter routes with an irqfd per queue), the hypervisor
//!   does all of that when the device writes the queue's `EventFd`; otherwise the device
//!   thread sets the bits itself and asks the subchannel to inject;
//! - classic indicators, the fallback (a driver without adapter support, or one that does
//!   not ask): a bit per queue in a big-endian doubleword the driver names with SET_IND,
//!   then an unsolicited I/O interrupt (alert status) on the subchannel.
//!
//! Configuration changes always use the classic second indicator (SET_CONF_IND) and the
//! subchannel's interrupt. Transport structures are big-endian; feature words and the
//! device's configuration space are little-endian, as the specification says.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _, VolatileMemory as _};
use vmm_sys_util::eventfd::EventFd;

use super::transport::{DriverError, TransportCore};
use super::{GuestMemory, VirtioDevice, VirtioInterrupt};
use crate::css::{CcwDevice, CcwError, DataStream, Subchannel};

/// Channel commands of virtio-ccw.
pub mod command {
    pub const WRITE_FEAT: u8 = 0x11;
    pub const READ_FEAT: u8 = 0x12;
    pub const SET_VQ: u8 = 0x13;
    pub const WRITE_CONF: u8 = 0x21;
    pub const READ_CONF: u8 = 0x22;
    pub const WRITE_STATUS: u8 = 0x31;
    pub const READ_VQ_CONF: u8 = 0x32;
    pub const VDEV_RESET: u8 = 0x33;
    pub const SET_IND: u8 = 0x43;
    pub const SET_CONF_IND: u8 = 0x53;
    pub const READ_STATUS: u8 = 0x72;
    pub const SET_IND_ADAPTER: u8 = 0x73;
    pub const SET_VIRTIO_REV: u8 = 0x83;
}

/// Control-unit type of virtio-ccw devices (SENSE ID); the model is the device type.
pub const CU_TYPE: u16 = 0x3832;
/// Highest transport revision: 1 = virtio 1.x, 2 = adds READ_STATUS.
pub const MAX_REVISION: u16 = 2;
/// Largest configuration-space access served.
const MAX_CONFIG: usize = 256;
/// SET_VQ's revision-1 block: desc(8) reserved(4) index(2) num(2) avail(8) used(8).
const VQ_INFO_LEN: usize = 32;
/// SET_IND_ADAPTER's block (Linux's `struct virtio_thinint_area`, packed): summary
/// indicator (8), queue-indicator area (8), first bit (8), ISC (1), big-endian.
pub const THININT_AREA_LEN: usize = 25;
/// What the device ORs into the summary indicator byte (as QEMU does).
pub const SUMMARY_SET: u8 = 0x01;

/// Two-stage queue indicators for adapter interrupts, as SET_IND_ADAPTER names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdapterIndicators {
    /// Guest absolute address of the summary indicator byte.
    pub summary: u64,
    /// Guest absolute address of the queue-indicator area.
    pub area: u64,
    /// This device's first bit in the area (queue `i` is bit `first_bit + i`).
    pub first_bit: u64,
    /// Interruption subclass of the adapter interruption.
    pub isc: u8,
}

impl AdapterIndicators {
    /// Decode a SET_IND_ADAPTER block.
    pub fn parse(b: &[u8; THININT_AREA_LEN]) -> Self {
        let be64 = |at: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(v)
        };
        Self {
            summary: be64(0),
            area: be64(8),
            first_bit: be64(16),
            isc: b[24],
        }
    }

    /// The byte holding queue `index`'s indicator and the mask of its bit: bit `n` of the
    /// area is in byte `n / 8`, counted from the most significant bit (the s390 bit
    /// numbering Linux's `airq_iv` bitmaps use). `None` when the address overflows.
    pub fn queue_bit(&self, index: u16) -> Option<(u64, u8)> {
        let n = self.first_bit.checked_add(u64::from(index))?;
        let addr = self.area.checked_add(n / 8)?;
        Some((addr, 0x80 >> (n % 8)))
    }
}

/// A backend that can set a device's adapter indicators and make the adapter interruption
/// pending itself (s390x KVM: `KVM_IRQ_ROUTING_S390_ADAPTER` routes, one irqfd per queue),
/// so the device only writes an `EventFd`. One per device.
pub trait AdapterRoutes: Send + Sync {
    /// Route used-buffer notifications of queues `0..queues` to the indicators `a` names;
    /// one `EventFd` per queue, or why not (the device then sets the bits itself).
    fn set(&self, a: &AdapterIndicators, queues: u16) -> Result<Vec<Arc<EventFd>>, String>;
    /// Forget the routes (the driver reset the device or set new indicators).
    fn clear(&self);
}

/// Where used-buffer notifications go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum QueueIndicators {
    /// Not set up yet (or reset): nothing to signal.
    #[default]
    None,
    /// SET_IND: the guest address of the classic indicator doubleword.
    Classic(u64),
    /// SET_IND_ADAPTER.
    Adapter(AdapterIndicators),
}

/// The driver's indicators: for the queues, and the configuration-change doubleword's
/// guest address (0: not set yet).
#[derive(Debug, Default)]
struct Indicators {
    queues: Mutex<QueueIndicators>,
    config: AtomicU64,
    /// With adapter indicators and [`AdapterRoutes`]: each queue's `EventFd`.
    routed: Mutex<Vec<Arc<EventFd>>>,
}

impl Indicators {
    /// Queue `index`'s routed `EventFd`, if the backend routes it.
    fn route(&self, index: u16) -> Option<Arc<EventFd>> {
        let routed = self.routed.lock().unwrap_or_else(|p| p.into_inner());
        routed.get(usize::from(index)).cloned()
    }

    fn set_routed(&self, events: Vec<Arc<EventFd>>) {
        *self.routed.lock().unwrap_or_else(|p| p.into_inner()) = events;
    }

    fn queues(&self) -> QueueIndicators {
        *self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_queues(&self, q: QueueIndicators) {
        *self.queues.lock().unwrap_or_else(|p| p.into_inner()) = q;
    }
}

/// OR `mask` into the byte at `addr` atomically; the byte's old value, `None` when it is
/// not guest memory.
fn or_byte(mem: &GuestMemory, addr: u64, mask: u8) -> Option<u8> {
    let slice = mem.get_slice(GuestAddress(addr), 1).ok()?;
    let byte = slice.get_atomic_ref::<AtomicU8>(0).ok()?;
    Some(byte.fetch_or(mask, Ordering::SeqCst))
}

/// Set `mask` (a bit as the guest numbers it in a big-endian doubleword) at `addr`,
/// atomically when the doubleword is aligned.
fn set_indicator(mem: &GuestMemory, addr: u64, mask: u64) {
    let be_mask = u64::from_ne_bytes(mask.to_be_bytes());
    if let Ok(slice) = mem.get_slice(GuestAddress(addr), 8) {
        if let Ok(word) = slice.get_atomic_ref::<AtomicU64>(0) {
            word.fetch_or(be_mask, Ordering::SeqCst);
            return;
        }
    }
    let mut b = [0u8; 8];
    if mem.read_slice(&mut b, GuestAddress(addr)).is_err() {
        log::debug!("virtio-ccw: indicator at {addr:#x} outside guest memory");
        return;
    }
    let v = u64::from_be_bytes(b) | mask;
    let _ = mem.write_slice(&v.to_be_bytes(), GuestAddress(addr));
}

/// How a virtio-ccw device interrupts its driver.
pub struct CcwInterrupt {
    mem: GuestMemory,
    indicators: Arc<Indicators>,
    subchannel: Arc<Subchannel>,
}

impl VirtioInterrupt for CcwInterrupt {
    fn signal_used_queue(&self, index: u16) {
        match self.indicators.queues() {
            QueueIndicators::None => {}
            QueueIndicators::Classic(addr) => {
                if index >= 64 {
                    return;
                }
                set_indicator(&self.mem, addr, 1 << index);
                self.subchannel.alert();
            }
            QueueIndicators::Adapter(a) => {
                if let Some(event) = self.indicators.route(index) {
                    match event.write(1) {
                        Ok(()) => return,
                        Err(e) => log::debug!("virtio-ccw: adapter route of queue {index}: {e}"),
                    }
                }
                let Some((addr, mask)) = a.queue_bit(index) else {
                    return;
                };
                if or_byte(&self.mem, addr, mask).is_none() {
                    log::debug!("virtio-ccw: queue indicator at {addr:#x} outside guest memory");
                    return;
                }
                // A summary already set means an adapter interruption is pending or its
                // handler has not scanned the area yet: it will see this bit too.
                if or_byte(&self.mem, a.summary, SUMMARY_SET) == Some(0) {
                    self.subchannel.inject_adapter(a.isc);
                }
            }
        }
    }

    fn signal_config_changed(&self) {
        let addr = self.indicators.config.load(Ordering::Acquire);
        if addr == 0 {
            return;
        }
        set_indicator(&self.mem, addr, 1);
        self.subchannel.alert();
    }
}

/// A virtio device on a subchannel: the channel commands and indicators here, everything
/// else in the [`TransportCore`].
pub struct VirtioCcw {
    core: TransportCore,
    mem: GuestMemory,
    indicators: Arc<Indicators>,
    revision: Option<u16>,
    routes: Option<Box<dyn AdapterRoutes>>,
}

fn reject(what: &str) -> CcwError {
    log::debug!("virtio-ccw: {what}: command reject");
    CcwError::CommandReject
}

/// What the core refused (and logged) ends the channel command with a command reject.
fn refused(_: DriverError) -> CcwError {
    CcwError::CommandReject
}

impl VirtioCcw {
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMemory, sch: Arc<Subchannel>) -> Self {
        let indicators = Arc::new(Indicators::default());
        let interrupt = Arc::new(CcwInterrupt {
            mem: mem.clone(),
            indicators: indicators.clone(),
            subchannel: sch,
        });
        Self {
            core: TransportCore::new("virtio-ccw", device, mem.clone(), interrupt),
            mem,
            indicators,
            revision: None,
            routes: None,
        }
    }

    /// Let the backend set adapter indicators itself (see [`AdapterRoutes`]).
    pub fn with_adapter_routes(mut self, routes: Box<dyn AdapterRoutes>) -> Self {
        self.routes = Some(routes);
        self
    }

    /// The negotiated revision (0, legacy, until SET_VIRTIO_REV).
    pub fn revision(&self) -> u16 {
        self.revision.unwrap_or(0)
    }

    pub fn status(&self) -> u8 {
        self.core.status()
    }

    /// The device's kick `EventFd`s in queue order, for the backend to bind to this
    /// subchannel's notifies (`KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY`).
    pub fn queue_events(&self) -> Vec<Arc<EventFd>> {
        self.core.queue_events()
    }

    /// Back to the state after plugging in, except for the revision.
    fn reset(&mut self) {
        self.core.reset();
        self.clear_routes();
        self.indicators.set_queues(QueueIndicators::None);
        self.indicators.config.store(0, Ordering::Release);
    }

    fn set_revision(&mut self, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        if data.count() < 4 {
            return Err(CcwError::ProgramCheck);
        }
        let mut b = [0u8; 4];
        data.read(&mut b)?;
        let (rev, len) = (
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        );
        if self.revision.is_some() || rev > MAX_REVISION || len != 0 || self.core.status() != 0 {
            return Err(reject("SET_VIRTIO_REV"));
        }
        self.revision = Some(rev);
        Ok(())
    }

    fn read_features(&mut self, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        data.expect(5)?;
        let mut index = [0u8; 1];
        data.skip(4);
        data.read(&mut index)?;
        let word = match index[0] {
            1 if self.revision() == 0 => 0,
            sel => self.core.device_features_word(sel.into()),
        };
        data.rewind();
        data.write(&word.to_le_bytes())?;
        data.skip(1);
        Ok(())
    }

    fn write_features(&mut self, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        data.expect(5)?;
        let mut b = [0u8; 5];
        data.read(&mut b)?;
        let word = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        match b[4] {
            // Revision 0 has only the first word.
            1 if self.revision() == 0 => Ok(()),
            sel => self
                .core
                .write_driver_features_word(sel.into(), word)
                .map_err(refused),
        }
    }

    fn config(&mut self, write: bool, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        let n = data.count().min(MAX_CONFIG);
        let mut buf = vec![0u8; n];
        if write {
            data.read(&mut buf)?;
            self.core.device_mut().write_config(0, &buf);
        } else {
            self.core.device().read_config(0, &mut buf);
            data.write(&buf)?;
        }
        Ok(())
    }

    fn set_vq(&mut self, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        if self.revision() == 0 {
            // The legacy layout (one address, ring alignment) is for legacy devices only.
            return Err(reject("SET_VQ in revision 0"));
        }
        data.expect(VQ_INFO_LEN)?;
        let mut b = [0u8; VQ_INFO_LEN];
        data.read(&mut b)?;
        let be64 = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
        let index = u16::from_be_bytes([b[12], b[13]]);
        let (desc, num, avail, used) = (
            be64(0),
            u16::from_be_bytes([b[14], b[15]]),
            be64(16),
            be64(24),
        );
        let max = self
            .core
            .queues()
            .get(usize::from(index))
            .ok_or(CcwError::ProgramCheck)?
            .max_size;
        if desc != 0 && (num == 0 || num > max) {
            log::debug!("virtio-ccw: queue {index} size {num} (max {max})");
            return Err(CcwError::ProgramCheck);
        }
        // A descriptor address of 0 releases the queue (allowed while it is set up, as
        // Linux does when it deletes its queues); anything else sets it up.
        let release = desc == 0;
        self.core
            .configure_queue(index.into(), release, |q| {
                q.ready = !release;
                q.size = if release { q.max_size } else { num };
                (q.desc, q.avail, q.used) = if release {
                    (0, 0, 0)
                } else {
                    (desc, avail, used)
                };
            })
            .map_err(refused)
    }

    fn read_vq_conf(&mut self, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        data.expect(4)?;
        let mut b = [0u8; 2];
        data.read(&mut b)?;
        let index = usize::from(u16::from_be_bytes(b));
        let num = self.core.queues().get(index).map_or(0, |q| q.max_size);
        data.write(&num.to_be_bytes())
    }

    fn set_indicator(&mut self, config: bool, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        data.expect(8)?;
        if !config && matches!(self.indicators.queues(), QueueIndicators::Adapter(_)) {
            // As QEMU: classic queue indicators after adapter ones is a driver confusion.
            return Err(reject("SET_IND with adapter indicators set"));
        }
        let mut b = [0u8; 8];
        data.read(&mut b)?;
        let addr = u64::from_be_bytes(b);
        if addr == 0 || addr % 8 != 0 || self.mem.get_slice(GuestAddress(addr), 8).is_err() {
            return Err(CcwError::ProgramCheck);
        }
        if config {
            self.indicators.config.store(addr, Ordering::Release);
        } else {
            self.indicators.set_queues(QueueIndicators::Classic(addr));
        }
        Ok(())
    }

    /// SET_IND_ADAPTER: two-stage indicators. Every indicator byte this device can set
    /// (the summary, and the bits of all its queues) must be guest memory, and the ISC one
    /// of 0-7; else a channel-program check.
    fn set_adapter_indicators(&mut self, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        data.expect(THININT_AREA_LEN)?;
        if matches!(self.indicators.queues(), QueueIndicators::Classic(_)) {
            // As QEMU: a driver that already set classic indicators keeps them.
            return Err(reject("SET_IND_ADAPTER with classic indicators set"));
        }
        let mut b = [0u8; THININT_AREA_LEN];
        data.read(&mut b)?;
        let a = AdapterIndicators::parse(&b);
        let in_memory = |addr: u64| self.mem.get_slice(GuestAddress(addr), 1).is_ok();
        let last = u16::try_from(self.core.queues().len().saturating_sub(1)).unwrap_or(u16::MAX);
        let queues_ok = [0, last]
            .into_iter()
            .all(|q| a.queue_bit(q).is_some_and(|(addr, _)| in_memory(addr)));
        if a.isc > 7 || !in_memory(a.summary) || !queues_ok {
            log::debug!("virtio-ccw: SET_IND_ADAPTER {a:x?}: program check");
            return Err(CcwError::ProgramCheck);
        }
        self.clear_routes();
        let queues = u16::try_from(self.core.queues().len()).unwrap_or(u16::MAX);
        log::debug!("virtio-ccw: adapter indicators {a:x?}");
        let how = match self.routes.as_ref().map(|r| r.set(&a, queues)) {
            Some(Ok(events)) => {
                self.indicators.set_routed(events);
                "set by KVM adapter routes".to_string()
            }
            Some(Err(why)) => format!("set by the device thread ({why})"),
            None => "set by the device thread".to_string(),
        };
        // Short: it ends up on Hercules' 3215 console in the nested tests, which cuts lines.
        log::info!("virtio-ccw: adapter indicators (ISC {}) {how}", a.isc);
        self.indicators.set_queues(QueueIndicators::Adapter(a));
        Ok(())
    }

    fn clear_routes(&mut self) {
        if let Some(routes) = &self.routes {
            if self.indicators.route(0).is_some() {
                routes.clear();
            }
        }
        self.indicators.set_routed(Vec::new());
    }

    fn write_status(&mut self, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        data.expect(1)?;
        let mut b = [0u8; 1];
        data.read(&mut b)?;
        if b[0] == 0 {
            self.reset();
            return Ok(());
        }
        self.core.write_status(b[0]).map_err(refused)
    }
}

impl CcwDevice for VirtioCcw {
    fn sense_id(&self) -> [u8; 8] {
        let [t0, t1] = CU_TYPE.to_be_bytes();
        [
            0xff,
            t0,
            t1,
            self.core.device().device_type() as u8,
            0,
            0,
            0,
            0,
        ]
    }

    fn execute(&mut self, cmd: u8, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        log::debug!("virtio-ccw: command {cmd:#04x}, {} bytes", data.count());
        match cmd {
            command::SET_VIRTIO_REV => self.set_revision(data),
            command::READ_FEAT => self.read_features(data),
            command::WRITE_FEAT => self.write_features(data),
            command::READ_CONF => self.config(false, data),
            command::WRITE_CONF => self.config(true, data),
            command::SET_VQ => self.set_vq(data),
            command::READ_VQ_CONF => self.read_vq_conf(data),
            command::SET_IND => self.set_indicator(false, data),
            command::SET_CONF_IND => self.set_indicator(true, data),
            command::WRITE_STATUS => self.write_status(data),
            command::READ_STATUS if self.revision() >= 2 => {
                data.expect(1)?;
                data.write(&[self.core.status()])
            }
            command::VDEV_RESET => {
                self.reset();
                Ok(())
            }
            command::SET_IND_ADAPTER => self.set_adapter_indicators(data),
            other => Err(reject(&format!("command {other:#04x}"))),
        }
    }

    fn disabled(&mut self) {
        self.reset();
        self.revision = None;
    }

    fn notify(&mut self, queue: u16) -> bool {
        log::trace!(
            "virtio-ccw: notify queue {queue} (active: {})",
            self.core.is_active()
        );
        // A queue that exists takes notifies before DRIVER_OK too (they are dropped; the
        // activation notifies every queue).
        !matches!(
            self.core.notify(queue.into()),
            Err(DriverError::NoSuchQueue(_))
        )
    }
}

#[cfg(test)]
mod tests;
