// SPDX-License-Identifier: Apache-2.0
//! What every virtio transport does the same way, whichever way the driver reaches it
//! (virtio-mmio registers, virtio-ccw channel commands): the queue configuration the driver
//! writes, feature negotiation, the device status state machine, building and checking
//! `virtio_queue::Queue`s, activation, notifies and reset. A transport keeps only how the
//! driver reaches this core and how it is interrupted.
//!
//! One set of rules for both transports:
//! - Features the device never offered are masked off (logged, not refused), as QEMU
//!   (`virtio_set_features`) and Cloud Hypervisor (`ack_features`) do; `FEATURES_OK` is
//!   refused only when the result lacks `VERSION_1` (both transports are modern-only).
//!   The device learns the accepted features once, when `FEATURES_OK` is accepted.
//! - Driver features are written only while `DRIVER` is set and neither `FEATURES_OK` nor
//!   `FAILED` is; a queue is configured only before `DRIVER_OK`, and (but for its ready
//!   flag) only while it is not ready.
//! - A status write that clears bits without going through 0 is refused; 0 resets.
//! - Whatever the core refuses leaves the state as it was: virtio-mmio logs and ignores it
//!   (a register write cannot fail), virtio-ccw ends the channel command with a command
//!   reject.
//! - `DRIVER_OK` without `FEATURES_OK`, or with a queue that is not valid in guest memory,
//!   or a device that refuses to start: the status gets `DEVICE_NEEDS_RESET` instead of
//!   `DRIVER_OK` and the driver gets a configuration-change interrupt (virtio 1.2 §2.1.2).
//! - After activation every queue is notified once: a driver may make buffers available
//!   (and notify) before `DRIVER_OK`, and a notify before activation reaches no worker, so
//!   without this those buffers would wait for the next kick. QEMU does the same when it
//!   starts its ioeventfds (`virtio_device_start_ioeventfd_impl` sets every host notifier
//!   "to catch anything that arrived before we started"); a spurious kick only makes the
//!   worker look at an empty queue.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use super::{features, status, GuestMemory, VirtioDevice, VirtioInterrupt};
use crate::log_limit::LogLimit;

/// What the driver wrote about one queue, before the device gets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueConfig {
    /// The largest size the device allows (its `queue_max_sizes` entry).
    pub max_size: u16,
    /// The size the driver chose (starts at `max_size`).
    pub size: u16,
    pub ready: bool,
    /// Descriptor table.
    pub desc: u64,
    /// Driver area (available ring).
    pub avail: u64,
    /// Device area (used ring).
    pub used: u64,
}

impl QueueConfig {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            ..Default::default()
        }
    }

    /// A `virtio_queue::Queue` with this configuration, checked against `mem`.
    fn build(&self, event_idx: bool, mem: &GuestMemory) -> Result<Queue, String> {
        let mut q = Queue::new(self.max_size).map_err(|e| e.to_string())?;
        q.try_set_size(self.size)
            .map_err(|e| format!("size {}: {e}", self.size))?;
        q.try_set_desc_table_address(GuestAddress(self.desc))
            .map_err(|e| format!("descriptor table {:#x}: {e}", self.desc))?;
        q.try_set_avail_ring_address(GuestAddress(self.avail))
            .map_err(|e| format!("driver area {:#x}: {e}", self.avail))?;
        q.try_set_used_ring_address(GuestAddress(self.used))
            .map_err(|e| format!("device area {:#x}: {e}", self.used))?;
        q.set_event_idx(event_idx);
        q.set_ready(self.ready);
        if !q.is_valid(mem) {
            return Err(format!("not ready or not in guest memory: {self:x?}"));
        }
        Ok(q)
    }
}

/// A driver action the core refused; the state is as it was before.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DriverError {
    #[error("driver features written in status {0:#x}")]
    FeaturesNotNegotiating(u8),
    #[error("queue {0} does not exist")]
    NoSuchQueue(u32),
    #[error("queue {0} configured while it is in use")]
    QueueInUse(u16),
    #[error("queue {index} size {size} is not 1..={max}")]
    QueueSize { index: u16, size: u32, max: u16 },
    #[error("status {old:#x} -> {new:#x} clears bits without a reset")]
    StatusClearsBits { old: u8, new: u8 },
    #[error("FEATURES_OK with driver features {0:#x}, which lack VERSION_1")]
    NoVersion1(u64),
    #[error("notify of queue {0} before DRIVER_OK")]
    NotActive(u16),
}

/// The transport-independent state of one virtio device.
pub struct TransportCore {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemory,
    interrupt: Arc<dyn VirtioInterrupt>,
    status: u8,
    driver_features: u64,
    queues: Vec<QueueConfig>,
    active: bool,
    /// Driver mistakes and activation failures, limited for this device.
    log: LogLimit,
}

impl TransportCore {
    /// `device`, reaching the driver's buffers in `mem` and interrupting it through
    /// `interrupt` (the transport's); `transport` names it in log lines.
    pub fn new(
        transport: &'static str,
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&max| QueueConfig::new(max))
            .collect();
        Self {
            device,
            mem,
            interrupt,
            status: 0,
            driver_features: 0,
            queues,
            active: false,
            log: LogLimit::new(transport),
        }
    }

    pub fn device(&self) -> &dyn VirtioDevice {
        &*self.device
    }

    pub fn device_mut(&mut self) -> &mut dyn VirtioDevice {
        &mut *self.device
    }

    pub fn memory(&self) -> &GuestMemory {
        &self.mem
    }

    /// The device status as the driver set it and the core confirmed it.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Whether the device runs (`DRIVER_OK` accepted, not reset since).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The features the driver has written so far (masked by the offer).
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// Word `sel` (32 bits) of the device's features; 0 past the second word.
    pub fn device_features_word(&self, sel: u32) -> u32 {
        match sel {
            0 => self.device.device_features() as u32,
            1 => (self.device.device_features() >> 32) as u32,
            _ => 0,
        }
    }

    /// The queues as configured, in order.
    pub fn queues(&self) -> &[QueueConfig] {
        &self.queues
    }

    /// Log a driver mistake (warn level for the first few of this device, then debug).
    pub fn driver_error(&self, args: std::fmt::Arguments) {
        self.log.warn(format_args!(
            "device type {}: {args}",
            self.device.device_type()
        ));
    }

    /// Log a refusal and hand it back.
    fn refuse<T>(&self, e: DriverError) -> Result<T, DriverError> {
        self.driver_error(format_args!("{e}"));
        Err(e)
    }

    /// The driver writes word `sel` of its features. Bits the device did not offer are
    /// masked off (and logged); words past the second are ignored unless non-zero.
    pub fn write_driver_features_word(&mut self, sel: u32, value: u32) -> Result<(), DriverError> {
        let negotiating = self.status & status::DRIVER != 0
            && self.status & (status::FEATURES_OK | status::FAILED) == 0;
        if !negotiating {
            return self.refuse(DriverError::FeaturesNotNegotiating(self.status));
        }
        let (shift, keep) = match sel {
            0 => (0, 0xffff_ffff_0000_0000),
            1 => (32, 0x0000_0000_ffff_ffff),
            _ => {
                if value != 0 {
                    self.driver_error(format_args!("driver features word {sel} = {value:#x}"));
                }
                return Ok(());
            }
        };
        let offered = self.device.device_features();
        let word = u64::from(value) << shift;
        if word & !offered != 0 {
            self.driver_error(format_args!(
                "driver accepts features {:#x} the device never offered: masked off",
                word & !offered
            ));
        }
        self.driver_features = (self.driver_features & keep) | (word & offered);
        Ok(())
    }

    /// Configure queue `index` through `f`, before `DRIVER_OK` and, unless `ready_only`
    /// (the driver writes only the ready flag), while the queue is not ready.
    pub fn configure_queue(
        &mut self,
        index: u32,
        ready_only: bool,
        f: impl FnOnce(&mut QueueConfig),
    ) -> Result<(), DriverError> {
        let in_use = self.status & status::DRIVER_OK != 0;
        let Some(q) = self.queues.get_mut(index as usize) else {
            return self.refuse(DriverError::NoSuchQueue(index));
        };
        if in_use || (q.ready && !ready_only) {
            let e = DriverError::QueueInUse(index as u16);
            return self.refuse(e);
        }
        f(q);
        Ok(())
    }

    /// The driver sets queue `index`'s size: 1 up to the device's maximum.
    pub fn set_queue_size(&mut self, index: u32, size: u32) -> Result<(), DriverError> {
        let max = match self.queues.get(index as usize) {
            Some(q) => q.max_size,
            None => return self.refuse(DriverError::NoSuchQueue(index)),
        };
        if size == 0 || size > u32::from(max) {
            return self.refuse(DriverError::QueueSize {
                index: index as u16,
                size,
                max,
            });
        }
        self.configure_queue(index, false, |q| q.size = size as u16)
    }

    /// The driver writes the device status. 0 resets; a refused write changes nothing.
    pub fn write_status(&mut self, new: u8) -> Result<(), DriverError> {
        if new == 0 {
            self.reset();
            return Ok(());
        }
        let old = self.status;
        if new & old != old {
            return self.refuse(DriverError::StatusClearsBits { old, new });
        }
        let added = new & !old;
        if added & status::FEATURES_OK != 0 {
            if self.driver_features & features::VERSION_1 == 0 {
                return self.refuse(DriverError::NoVersion1(self.driver_features));
            }
            self.device.set_driver_features(self.driver_features);
        }
        if added & status::DRIVER_OK != 0 {
            if let Err(why) = self.activate(new) {
                self.driver_error(format_args!("cannot start the device: {why}"));
                self.status = (new & !status::DRIVER_OK) | status::DEVICE_NEEDS_RESET;
                self.interrupt.signal_config_changed();
                return Ok(());
            }
        }
        self.status = new;
        Ok(())
    }

    fn activate(&mut self, status: u8) -> Result<(), String> {
        if status & status::FEATURES_OK == 0 {
            return Err("DRIVER_OK without FEATURES_OK".into());
        }
        let event_idx = self.driver_features & features::RING_EVENT_IDX != 0;
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.build(event_idx, &self.mem)
                    .map_err(|e| format!("queue {i}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.device
            .activate(self.mem.clone(), self.interrupt.clone(), queues)
            .map_err(|e| e.to_string())?;
        self.active = true;
        log::debug!(
            "{}: device type {} started, features {:#x}, queues {:x?}",
            self.log.site(),
            self.device.device_type(),
            self.driver_features,
            self.queues
        );
        // See the module documentation: buffers made available before DRIVER_OK.
        for q in 0..self.queues.len() as u16 {
            self.device.queue_notify(q);
        }
        Ok(())
    }

    /// The driver notified queue `index`: handed to the device when it runs.
    pub fn notify(&mut self, index: u32) -> Result<(), DriverError> {
        let Some(q) = u16::try_from(index)
            .ok()
            .filter(|&q| usize::from(q) < self.queues.len())
        else {
            return self.refuse(DriverError::NoSuchQueue(index));
        };
        if !self.active {
            // Not a mistake worth a warning: activation notifies every queue anyway.
            log::debug!("{}: {}", self.log.site(), DriverError::NotActive(q));
            return Err(DriverError::NotActive(q));
        }
        self.device.queue_notify(q);
        Ok(())
    }

    /// Back to the state after plugging in: the device forgets its queues and features.
    pub fn reset(&mut self) {
        self.device.reset();
        self.active = false;
        self.status = 0;
        self.driver_features = 0;
        for q in &mut self.queues {
            *q = QueueConfig::new(q.max_size);
        }
    }

    /// The device's kick `EventFd`s in queue order (see [`VirtioDevice::queue_events`]).
    pub fn queue_events(&self) -> Vec<Arc<EventFd>> {
        self.device.queue_events()
    }
}

#[cfg(test)]
mod tests;
