// SPDX-License-Identifier: Apache-2.0
//! Virtio devices and what a transport (virtio-mmio, virtio-ccw) needs from them.
//!
//! A device ([`VirtioDevice`]) knows its queues, features and configuration space; a
//! transport knows how the driver reaches it (MMIO registers on x86_64/aarch64, [`mmio`];
//! channel commands on s390x, [`ccw`]) and how to signal the driver ([`VirtioInterrupt`]).
//! Both share one [`transport::TransportCore`]: it keeps the queue configuration the
//! driver writes, negotiates features, runs the device status, builds `virtio_queue::Queue`s
//! and hands them over in [`VirtioDevice::activate`] once the driver sets `DRIVER_OK`.
//!
//! A notification ([`VirtioDevice::queue_notify`]) only wakes the device's worker thread
//! ([`worker::Worker`]); the queue is served there, in passes of bounded size, so a vCPU
//! never runs device code and a guest that keeps adding requests cannot keep the VMM from
//! stopping.
//!
//! Everything here is little-endian as virtio 1.x requires, on every host (virtio-queue
//! and vm-memory's `Le*` types do the conversion), so the same tests run on s390x.

use std::sync::Arc;

pub mod block;
pub mod ccw;
pub mod mmio;
pub mod net;
pub mod rng;
#[cfg(test)]
pub(crate) mod test_util;
pub mod transport;
pub mod vsock;
pub mod worker;

pub use block::Block;
pub use mmio::MmioTransport;
pub use net::Net;
pub use rng::Rng;
pub use virtio_queue::{Queue, QueueT};
pub use vsock::Vsock;

/// Guest memory as devices see it (the same mapping every backend creates).
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;

/// Virtio device IDs (virtio 1.2 §5).
pub mod device_type {
    pub const NET: u32 = 1;
    pub const BLOCK: u32 = 2;
    pub const CONSOLE: u32 = 3;
    pub const RNG: u32 = 4;
    pub const VSOCK: u32 = 19;
}

/// Device-independent feature bits (virtio 1.2 §6).
pub mod features {
    /// The device complies with virtio 1.x (no legacy interface).
    pub const VERSION_1: u64 = 1 << 32;
    /// The driver may use the `used_event`/`avail_event` fields.
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// The device accepts indirect descriptors.
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
}

/// Device status bits the driver writes (virtio 1.2 §2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// Warnings about one device's driver: the first [`DriverWarnings::LIMIT`] at warn level,
/// the rest at debug level (a hostile driver cannot fill the log).
#[derive(Debug, Default)]
pub struct DriverWarnings {
    count: u32,
}

impl DriverWarnings {
    pub const LIMIT: u32 = 16;

    /// Log `args` for device `name`.
    pub fn warn(&mut self, name: &str, args: std::fmt::Arguments) {
        if self.count < Self::LIMIT {
            self.count += 1;
            log::warn!("{name}: {args}");
        } else {
            log::debug!("{name}: {args}");
        }
    }
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("the driver configured {got} queues, the device needs {want}")]
    QueueCount { got: usize, want: usize },
    #[error("queue {index} is not valid: {reason}")]
    BadQueue { index: usize, reason: String },
    #[error("{0}")]
    Device(String),
}

/// Read `data.len()` bytes of the configuration space `config` at `offset`, as
/// [`VirtioDevice::read_config`] does for a device whose space is a byte array: bytes past
/// its end read as 0.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if start >= config.len() {
        return;
    }
    let n = data.len().min(config.len() - start);
    data[..n].copy_from_slice(&config[start..start + n]);
}

/// The queues a transport hands to [`VirtioDevice::activate`] as the `N` a device has, in
/// order; another count is [`ActivateError::QueueCount`].
pub fn take_queues<const N: usize>(queues: Vec<Queue>) -> Result<[Queue; N], ActivateError> {
    queues
        .try_into()
        .map_err(|q: Vec<Queue>| ActivateError::QueueCount {
            got: q.len(),
            want: N,
        })
}

/// How a device asks its transport to interrupt the driver.
pub trait VirtioInterrupt: Send + Sync {
    /// The device put buffers in the used ring of queue `index`.
    fn signal_used_queue(&self, index: u16);
    /// The device's configuration space changed.
    fn signal_config_changed(&self);
}

/// One virtio device, independent of the transport that carries it.
pub trait VirtioDevice: Send {
    /// Virtio device ID ([`device_type`]).
    fn device_type(&self) -> u32;
    /// The largest size each of the device's queues may have; its length is the number of
    /// queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// The feature bits the device offers (including [`features::VERSION_1`]).
    fn device_features(&self) -> u64;
    /// The features the driver accepted (a subset of [`VirtioDevice::device_features`];
    /// the transport masks anything else off).
    fn set_driver_features(&mut self, features: u64);
    /// Read `data.len()` bytes of the device configuration space at `offset`; bytes past
    /// its end read as 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Write the device configuration space; writes to read-only fields are ignored.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// The driver set `DRIVER_OK`: serve `queues` (one per [`queue_max_sizes`] entry, in
    /// order, already checked valid by the transport) in `mem`, interrupting the driver
    /// through `interrupt`.
    ///
    /// [`queue_max_sizes`]: VirtioDevice::queue_max_sizes
    fn activate(
        &mut self,
        mem: GuestMemory,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError>;
    /// The driver notified queue `index`. Called on the notifying vCPU's thread: it must
    /// not block or do the queue's work there (wake a worker); garbage in the queue is
    /// logged and skipped, never a panic.
    fn queue_notify(&mut self, index: u16);
    /// The driver reset the device (status 0): forget the queues and the accepted features.
    fn reset(&mut self);
    /// The `EventFd` that wakes the device's worker for each queue, in queue order, when the
    /// device has them: the backend binds each to the transport's notify register
    /// (`KVM_IOEVENTFD`), so a driver's notify reaches the worker without a VM exit. Empty
    /// (the default) means notifies go through [`VirtioDevice::queue_notify`] only.
    fn queue_events(&self) -> Vec<Arc<vmm_sys_util::eventfd::EventFd>> {
        Vec::new()
    }
}
