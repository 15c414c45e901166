// SPDX-License-Identifier: Apache-2.0
//! The virtio-mmio transport, version 2 ("modern", virtio 1.2 §4.2.2): a 0x200-byte
//! register window on the MMIO bus, found by the guest through the device tree
//! (`virtio,mmio`) or the DSDT (`LNRO0005`).
//!
//! The driver reads the magic, version and device ID, negotiates features through the
//! 32-bit selection windows, configures each queue (size, descriptor table, driver/avail
//! ring, device/used ring, ready), and sets `DRIVER_OK`; the transport then builds
//! `virtio_queue::Queue`s, checks them against guest memory and hands them to the device
//! ([`VirtioDevice::activate`]). A write of the queue index to `QueueNotify` becomes
//! [`VirtioDevice::queue_notify`]. Writing status 0 resets the device.
//!
//! Registers below 0x100 are 32-bit, little-endian, and must be accessed as such; the
//! device configuration space from 0x100 takes any width. Anything a driver does that the
//! specification forbids (a badly sized access, a queue register written while the queue
//! is ready, features written after `FEATURES_OK`, a notify before `DRIVER_OK`) is logged
//! and ignored; reads of such registers return 0.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use super::{features, status, GuestMemory, VirtioDevice, VirtioInterrupt};
use crate::bus::BusDevice;
use crate::interrupt::InterruptLine;

/// Size of one virtio-mmio window: the registers and up to 0x100 bytes of configuration.
pub const MMIO_WINDOW: u64 = 0x200;
/// "virt" in little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// The modern (virtio 1.x) register layout.
pub const VERSION: u32 = 2;
/// Vendor ID: "PLVS" (no registered PCI vendor; virtio-mmio only shows it to drivers).
pub const VENDOR_ID: u32 = 0x5356_4c50;

/// Register offsets (virtio 1.2 §4.2.2, table "MMIO Device Register Layout").
pub mod reg {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_SEL: u64 = 0x0ac;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const QUEUE_RESET: u64 = 0x0c0;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// `InterruptStatus` bits.
pub const INT_USED_RING: u32 = 1;
pub const INT_CONFIG: u32 = 2;

/// Warnings about one transport's driver before they drop to debug level.
const WARN_LIMIT: u32 = 16;

/// What the driver wrote about one queue, before the device gets it.
#[derive(Clone, Copy, Debug, Default)]
struct QueueConfig {
    max_size: u16,
    size: u16,
    ready: bool,
    desc: u64,
    driver: u64,
    device: u64,
}

impl QueueConfig {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            ..Default::default()
        }
    }

    /// A `virtio_queue::Queue` with this configuration, or why not.
    fn build(&self, event_idx: bool) -> Result<Queue, String> {
        let mut q = Queue::new(self.max_size).map_err(|e| e.to_string())?;
        q.try_set_size(self.size)
            .map_err(|e| format!("size {}: {e}", self.size))?;
        q.try_set_desc_table_address(GuestAddress(self.desc))
            .map_err(|e| format!("descriptor table {:#x}: {e}", self.desc))?;
        q.try_set_avail_ring_address(GuestAddress(self.driver))
            .map_err(|e| format!("driver area {:#x}: {e}", self.driver))?;
        q.try_set_used_ring_address(GuestAddress(self.device))
            .map_err(|e| format!("device area {:#x}: {e}", self.device))?;
        q.set_event_idx(event_idx);
        q.set_ready(self.ready);
        Ok(q)
    }
}

/// The transport's side of interrupts: `InterruptStatus` and the line behind it. Shared
/// with the device, which signals through it from `queue_notify`.
pub struct MmioInterrupt {
    status: AtomicU32,
    config_generation: AtomicU32,
    line: Arc<dyn InterruptLine>,
}

impl MmioInterrupt {
    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        if let Err(e) = self.line.trigger() {
            log::warn!("virtio-mmio: cannot raise the interrupt: {e}");
        }
    }
}

impl VirtioInterrupt for MmioInterrupt {
    fn signal_used_queue(&self, _index: u16) {
        self.raise(INT_USED_RING);
    }

    fn signal_config_changed(&self) {
        self.config_generation.fetch_add(1, Ordering::SeqCst);
        self.raise(INT_CONFIG);
    }
}

/// One virtio device behind a virtio-mmio register window.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemory,
    interrupt: Arc<MmioInterrupt>,
    status: u8,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: Vec<QueueConfig>,
    active: bool,
    warnings: Cell<u32>,
}

impl MmioTransport {
    /// `device`'s transport, reaching the driver's buffers in `mem` and interrupting it
    /// through `line` (an edge: it is raised once per interrupt).
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        line: Arc<dyn InterruptLine>,
    ) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&max| QueueConfig::new(max))
            .collect();
        Self {
            device,
            mem,
            interrupt: Arc::new(MmioInterrupt {
                status: AtomicU32::new(0),
                config_generation: AtomicU32::new(0),
                line,
            }),
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues,
            active: false,
            warnings: Cell::new(0),
        }
    }

    /// The `EventFd`s to bind at `QueueNotify` (offset [`reg::QUEUE_NOTIFY`]), each with
    /// the queue index the driver writes as its datamatch.
    pub fn queue_notify_events(&self) -> Vec<(u32, Arc<vmm_sys_util::eventfd::EventFd>)> {
        self.device
            .queue_events()
            .into_iter()
            .enumerate()
            .map(|(i, e)| (i as u32, e))
            .collect()
    }

    /// The device's status as the driver last set it (and the transport confirmed).
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Log a driver mistake: a warning for the first few, then at debug level.
    fn driver_error(&self, args: std::fmt::Arguments) {
        let warnings = self.warnings.get();
        if warnings < WARN_LIMIT {
            self.warnings.set(warnings + 1);
            log::warn!(
                "virtio-mmio (device type {}): {args}{}",
                self.device.device_type(),
                if warnings + 1 == WARN_LIMIT {
                    " (further driver errors logged at debug level)"
                } else {
                    ""
                }
            );
        } else {
            log::debug!(
                "virtio-mmio (device type {}): {args}",
                self.device.device_type()
            );
        }
    }

    fn selected_queue(&self) -> Option<&QueueConfig> {
        self.queues.get(self.queue_sel as usize)
    }

    fn read_register(&self, offset: u64) -> u32 {
        let device_features = self.device.device_features();
        match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => device_features as u32,
                1 => (device_features >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| q.max_size.into()),
            reg::QUEUE_READY => self.selected_queue().map_or(0, |q| q.ready.into()),
            reg::INTERRUPT_STATUS => self.interrupt.status.load(Ordering::SeqCst),
            reg::STATUS => self.status.into(),
            // No shared memory regions: a length of all ones says so.
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            reg::CONFIG_GENERATION => self.interrupt.config_generation.load(Ordering::SeqCst),
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES => self.write_driver_features(value),
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM
            | reg::QUEUE_READY
            | reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH => self.write_queue_register(offset, value),
            reg::QUEUE_NOTIFY => self.notify(value),
            reg::INTERRUPT_ACK => {
                self.interrupt.status.fetch_and(!value, Ordering::SeqCst);
            }
            reg::STATUS => self.write_status(value),
            reg::SHM_SEL => {}
            _ => self.driver_error(format_args!("write of {value:#x} to register {offset:#x}")),
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        let negotiating = self.status & status::DRIVER != 0
            && self.status & (status::FEATURES_OK | status::FAILED) == 0;
        if !negotiating {
            self.driver_error(format_args!(
                "driver features written in status {:#x}",
                self.status
            ));
            return;
        }
        let (shift, keep) = match self.driver_features_sel {
            0 => (0, 0xffff_ffff_0000_0000),
            1 => (32, 0x0000_0000_ffff_ffff),
            sel => {
                if value != 0 {
                    self.driver_error(format_args!("driver features word {sel} = {value:#x}"));
                }
                return;
            }
        };
        self.driver_features = (self.driver_features & keep) | (u64::from(value) << shift);
    }

    fn write_queue_register(&mut self, offset: u64, value: u32) {
        let sel = self.queue_sel;
        let status = self.status;
        let Some(q) = self.queues.get_mut(sel as usize) else {
            self.driver_error(format_args!(
                "queue register {offset:#x} written for queue {sel}, which does not exist"
            ));
            return;
        };
        if status & status::DRIVER_OK != 0 || (q.ready && offset != reg::QUEUE_READY) {
            self.driver_error(format_args!(
                "queue {sel} register {offset:#x} written while the queue is in use"
            ));
            return;
        }
        let low = |old: u64| (old & !0xffff_ffff) | u64::from(value);
        let high = |old: u64| (old & 0xffff_ffff) | (u64::from(value) << 32);
        match offset {
            reg::QUEUE_NUM => q.size = value as u16,
            reg::QUEUE_READY => q.ready = value & 1 != 0,
            reg::QUEUE_DESC_LOW => q.desc = low(q.desc),
            reg::QUEUE_DESC_HIGH => q.desc = high(q.desc),
            reg::QUEUE_DRIVER_LOW => q.driver = low(q.driver),
            reg::QUEUE_DRIVER_HIGH => q.driver = high(q.driver),
            reg::QUEUE_DEVICE_LOW => q.device = low(q.device),
            reg::QUEUE_DEVICE_HIGH => q.device = high(q.device),
            _ => {}
        }
        if offset == reg::QUEUE_NUM && u32::from(q.size) != value {
            self.driver_error(format_args!("queue {sel} size {value} is out of range"));
        }
    }

    fn notify(&mut self, value: u32) {
        // Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index.
        match u16::try_from(value) {
            Ok(index) if self.active && usize::from(index) < self.queues.len() => {
                self.device.queue_notify(index)
            }
            _ => self.driver_error(format_args!(
                "notify of queue {value} (device {})",
                if self.active { "active" } else { "not active" }
            )),
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let Ok(new) = u8::try_from(value) else {
            self.driver_error(format_args!("status {value:#x}"));
            return;
        };
        let old = self.status;
        if new & old != old {
            self.driver_error(format_args!(
                "status {old:#x} -> {new:#x} clears bits without a reset"
            ));
            return;
        }
        let added = new & !old;
        let mut accepted = new;
        if added & status::FEATURES_OK != 0 && !self.features_ok() {
            // The driver reads the status back and sees FEATURES_OK unset (§3.1.1).
            accepted &= !status::FEATURES_OK;
        }
        if added & status::DRIVER_OK != 0 {
            if let Err(why) = self.activate(accepted) {
                self.driver_error(format_args!("cannot start the device: {why}"));
                accepted |= status::DEVICE_NEEDS_RESET;
                self.status = accepted & !status::DRIVER_OK;
                self.interrupt.signal_config_changed();
                return;
            }
        }
        self.status = accepted;
    }

    /// Whether the features the driver accepted can be used: a subset of what the device
    /// offers, including `VERSION_1` (this is a modern-only transport).
    fn features_ok(&mut self) -> bool {
        let offered = self.device.device_features();
        let accepted = self.driver_features;
        if accepted & !offered != 0 || accepted & features::VERSION_1 == 0 {
            self.driver_error(format_args!(
                "driver features {accepted:#x} do not fit the offered {offered:#x}"
            ));
            return false;
        }
        self.device.set_driver_features(accepted);
        true
    }

    fn activate(&mut self, status: u8) -> Result<(), String> {
        if status & status::FEATURES_OK == 0 {
            return Err("DRIVER_OK without FEATURES_OK".into());
        }
        let event_idx = self.driver_features & features::RING_EVENT_IDX != 0;
        let mut queues = Vec::with_capacity(self.queues.len());
        for (index, config) in self.queues.iter().enumerate() {
            let queue = config
                .build(event_idx)
                .map_err(|e| format!("queue {index}: {e}"))?;
            if !queue.is_valid(&self.mem) {
                return Err(format!(
                    "queue {index} is not ready or not in guest memory: {config:x?}"
                ));
            }
            queues.push(queue);
        }
        let interrupt: Arc<dyn VirtioInterrupt> = self.interrupt.clone();
        self.device
            .activate(self.mem.clone(), interrupt, queues)
            .map_err(|e| e.to_string())?;
        self.active = true;
        Ok(())
    }

    fn reset(&mut self) {
        self.device.reset();
        self.active = false;
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            *q = QueueConfig::new(q.max_size);
        }
        self.interrupt.status.store(0, Ordering::SeqCst);
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            self.device.read_config(offset - reg::CONFIG, data);
            return;
        }
        match <[u8; 4]>::try_from(&mut *data) {
            Ok(_) if offset % 4 == 0 => {
                data.copy_from_slice(&self.read_register(offset).to_le_bytes())
            }
            _ => {
                data.fill(0);
                self.driver_error(format_args!(
                    "{}-byte read at register offset {offset:#x}",
                    data.len()
                ));
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            self.device.write_config(offset - reg::CONFIG, data);
            return;
        }
        match <[u8; 4]>::try_from(data) {
            Ok(bytes) if offset % 4 == 0 => self.write_register(offset, u32::from_le_bytes(bytes)),
            _ => self.driver_error(format_args!(
                "{}-byte write at register offset {offset:#x}",
                data.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests;
