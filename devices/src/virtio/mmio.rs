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

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::transport::{DriverError, QueueConfig, TransportCore};
use super::{GuestMemory, VirtioDevice, VirtioInterrupt};
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

/// One virtio device behind a virtio-mmio register window: the selection registers here,
/// everything else in the [`TransportCore`].
pub struct MmioTransport {
    core: TransportCore,
    interrupt: Arc<MmioInterrupt>,
    device_features_sel: u32,
    driver_features_sel: u32,
    queue_sel: u32,
}

impl MmioTransport {
    /// `device`'s transport, reaching the driver's buffers in `mem` and interrupting it
    /// through `line` (an edge: it is raised once per interrupt).
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        line: Arc<dyn InterruptLine>,
    ) -> Self {
        let interrupt = Arc::new(MmioInterrupt {
            status: AtomicU32::new(0),
            config_generation: AtomicU32::new(0),
            line,
        });
        Self {
            core: TransportCore::new("virtio-mmio", device, mem, interrupt.clone()),
            interrupt,
            device_features_sel: 0,
            driver_features_sel: 0,
            queue_sel: 0,
        }
    }

    /// The `EventFd`s to bind at `QueueNotify` (offset [`reg::QUEUE_NOTIFY`]), each with
    /// the queue index the driver writes as its datamatch.
    pub fn queue_notify_events(&self) -> Vec<(u32, Arc<vmm_sys_util::eventfd::EventFd>)> {
        self.core
            .queue_events()
            .into_iter()
            .enumerate()
            .map(|(i, e)| (i as u32, e))
            .collect()
    }

    /// The device's status as the driver last set it (and the transport confirmed).
    pub fn status(&self) -> u8 {
        self.core.status()
    }

    fn selected_queue(&self) -> Option<&QueueConfig> {
        self.core.queues().get(self.queue_sel as usize)
    }

    fn read_register(&self, offset: u64) -> u32 {
        match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.core.device().device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => self.core.device_features_word(self.device_features_sel),
            reg::QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| q.max_size.into()),
            reg::QUEUE_READY => self.selected_queue().map_or(0, |q| q.ready.into()),
            reg::INTERRUPT_STATUS => self.interrupt.status.load(Ordering::SeqCst),
            reg::STATUS => self.core.status().into(),
            // No shared memory regions: a length of all ones says so.
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            reg::CONFIG_GENERATION => self.interrupt.config_generation.load(Ordering::SeqCst),
            _ => 0,
        }
    }

    /// Registers cannot fail: what the core refuses it has logged, and is ignored here.
    fn write_register(&mut self, offset: u64, value: u32) {
        let sel = self.queue_sel;
        let low = |old: u64| (old & !0xffff_ffff) | u64::from(value);
        let high = |old: u64| (old & 0xffff_ffff) | (u64::from(value) << 32);
        let _refused = match offset {
            reg::DEVICE_FEATURES_SEL => {
                self.device_features_sel = value;
                Ok(())
            }
            reg::DRIVER_FEATURES_SEL => {
                self.driver_features_sel = value;
                Ok(())
            }
            reg::DRIVER_FEATURES => self
                .core
                .write_driver_features_word(self.driver_features_sel, value),
            reg::QUEUE_SEL => {
                self.queue_sel = value;
                Ok(())
            }
            reg::QUEUE_NUM => self.core.set_queue_size(sel, value),
            reg::QUEUE_READY => self
                .core
                .configure_queue(sel, true, |q| q.ready = value & 1 != 0),
            reg::QUEUE_DESC_LOW => self
                .core
                .configure_queue(sel, false, |q| q.desc = low(q.desc)),
            reg::QUEUE_DESC_HIGH => self
                .core
                .configure_queue(sel, false, |q| q.desc = high(q.desc)),
            reg::QUEUE_DRIVER_LOW => self
                .core
                .configure_queue(sel, false, |q| q.avail = low(q.avail)),
            reg::QUEUE_DRIVER_HIGH => self
                .core
                .configure_queue(sel, false, |q| q.avail = high(q.avail)),
            reg::QUEUE_DEVICE_LOW => self
                .core
                .configure_queue(sel, false, |q| q.used = low(q.used)),
            reg::QUEUE_DEVICE_HIGH => self
                .core
                .configure_queue(sel, false, |q| q.used = high(q.used)),
            // Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index.
            reg::QUEUE_NOTIFY => self.core.notify(value),
            reg::INTERRUPT_ACK => {
                self.interrupt.status.fetch_and(!value, Ordering::SeqCst);
                Ok(())
            }
            reg::STATUS => self.write_status(value),
            reg::SHM_SEL => Ok(()),
            _ => {
                self.core
                    .driver_error(format_args!("write of {value:#x} to register {offset:#x}"));
                Ok(())
            }
        };
    }

    fn write_status(&mut self, value: u32) -> Result<(), DriverError> {
        let Ok(new) = u8::try_from(value) else {
            self.core.driver_error(format_args!("status {value:#x}"));
            return Ok(());
        };
        self.core.write_status(new)?;
        if new == 0 {
            self.device_features_sel = 0;
            self.driver_features_sel = 0;
            self.queue_sel = 0;
            self.interrupt.status.store(0, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            self.core.device().read_config(offset - reg::CONFIG, data);
            return;
        }
        match <[u8; 4]>::try_from(&mut *data) {
            Ok(_) if offset % 4 == 0 => {
                data.copy_from_slice(&self.read_register(offset).to_le_bytes())
            }
            _ => {
                data.fill(0);
                self.core.driver_error(format_args!(
                    "{}-byte read at register offset {offset:#x}",
                    data.len()
                ));
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            self.core
                .device_mut()
                .write_config(offset - reg::CONFIG, data);
            return;
        }
        match <[u8; 4]>::try_from(data) {
            Ok(bytes) if offset % 4 == 0 => self.write_register(offset, u32::from_le_bytes(bytes)),
            _ => self.core.driver_error(format_args!(
                "{}-byte write at register offset {offset:#x}",
                data.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests;
