// SPDX-License-Identifier: Apache-2.0
//! virtio-blk (virtio 1.2 §5.2): one request queue over a raw disk image, the same device
//! whether virtio-mmio (x86_64, aarch64) or virtio-ccw (s390x) carries it.
//!
//! Offered: `VERSION_1`, `RING_EVENT_IDX`, `RING_INDIRECT_DESC` (virtio-queue walks both),
//! `SIZE_MAX` and `SEG_MAX` (a request is at most 63.5 MiB), `BLK_SIZE` (512), `FLUSH` (a flush completes only after `fdatasync`),
//! `RO` for `readonly=on` disks, and on writable disks `DISCARD` (punch hole on a regular
//! file, `BLKDISCARD` on a block device) and `WRITE_ZEROES` (zero range or punch hole,
//! written zeros where the filesystem has neither; `BLKZEROOUT`). `GET_ID` (no feature bit)
//! answers the serial, up to 20 bytes, zero-padded.
//!
//! I/O model: the device's worker thread ([`crate::virtio::worker`]) takes requests from the
//! queue in order, in passes bounded by [`MAX_REQUESTS_PER_PASS`] requests and
//! [`MAX_BYTES_PER_PASS`] bytes, checks each one, and moves data straight between the image
//! and guest memory (no copy; see the `block-io` crate). Two engines:
//! - `direct=on` disks ([`IoBackend::queued_flush_file`]) keep up to
//!   [`engine::MAX_IN_FLIGHT`] reads, writes and flushes in flight on an io_uring and return
//!   them as their completions come, in any order ([`engine`]): reads that reach the host's
//!   disk measured 5.5× faster at 8 in flight than one at a time (docs/bench.md);
//! - buffered disks, and every disk where io_uring is missing (s390x, or refused by the
//!   kernel), do one request at a time with `preadv`/`pwritev`/`fdatasync`: page-cache hits
//!   complete inside the system call, and io_uring only added its own cost there.
//!
//! Discard, write-zeroes and `GET_ID` are synchronous on both.
//!
//! Hostile drivers: see [`request`] for what a chain must look like; requests past the
//! disk's end (with overflow-checked arithmetic), with data in the wrong direction or
//! outside guest memory, larger than [`MAX_REQUEST_BYTES`], or writing a read-only disk
//! get `IOERR`; unknown types get `UNSUPP`; the device goes on with the next request.

use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::worker::{ActiveQueue, Worker};
use super::{device_type, features, ActivateError, GuestMemory, VirtioDevice, VirtioInterrupt};

pub mod engine;
mod image;
mod queue;
pub mod request;

pub use image::{DiskImage, FileIdentity, ImageError, ImageOptions, IoBackend, SECTOR_SIZE};
pub use queue::{BlockQueue, MAX_BYTES_PER_PASS, MAX_REQUESTS_PER_PASS, MAX_REQUEST_BYTES};

/// The request queue's largest size.
pub const QUEUE_SIZE: u16 = 256;
/// Bytes of a serial (`GET_ID`): 20, zero-padded, no terminator when it is full.
pub const SERIAL_LEN: usize = 20;
/// The most data segments a request may have (the header and status take two
/// descriptors of a full queue).
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// The largest data segment (`size_max`): with [`SEG_MAX`] it keeps a compliant driver's
/// requests under [`MAX_REQUEST_BYTES`] (254 x 256 KiB = 63.5 MiB).
pub const SIZE_MAX: u32 = 256 << 10;
const _: () = assert!(SEG_MAX as u64 * SIZE_MAX as u64 <= MAX_REQUEST_BYTES);

/// virtio-blk feature bits (virtio 1.2 §5.2.3).
pub mod blk_features {
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// Discard and write-zeroes limits the device announces and enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_discard_sectors: u32,
    pub max_discard_seg: u32,
    pub discard_sector_alignment: u32,
    pub max_write_zeroes_sectors: u32,
    pub max_write_zeroes_seg: u32,
    pub write_zeroes_may_unmap: bool,
}

impl Limits {
    /// One segment may discard 1 GiB (a punch hole or `BLKDISCARD` is quick whatever the
    /// size) and zero 32 MiB (which may be written zeros); 16 segments a request.
    fn new(block_device: bool) -> Self {
        Self {
            max_discard_sectors: (1 << 30) / SECTOR_SIZE as u32,
            max_discard_seg: 16,
            discard_sector_alignment: 4096 / SECTOR_SIZE as u32,
            max_write_zeroes_sectors: (32 << 20) / SECTOR_SIZE as u32,
            max_write_zeroes_seg: 16,
            // A punched hole reads as zeros; BLKZEROOUT is asked not to unmap.
            write_zeroes_may_unmap: !block_device,
        }
    }
}

/// Bytes of the configuration space (through `write_zeroes_may_unmap` and its padding).
pub const CONFIG_LEN: usize = 60;

/// How a disk looks to the guest beyond its image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockOptions {
    /// The `GET_ID` answer, at most [`SERIAL_LEN`] bytes (longer is cut).
    pub serial: Vec<u8>,
    /// Name in log lines (e.g. `virtio-blk vda` or the user's `id=`).
    pub name: String,
    /// Whether the image is a host block device (write-zeroes then does not unmap).
    pub block_device: bool,
}

enum State {
    Idle,
    Running(Worker<BlockQueue>),
}

/// A virtio block device.
pub struct Block {
    image: Arc<dyn IoBackend>,
    serial: [u8; SERIAL_LEN],
    name: String,
    limits: Limits,
    config: [u8; CONFIG_LEN],
    offered: u64,
    driver_features: u64,
    state: State,
    /// Wakes the worker (bound as the queue's ioeventfd, or written by `queue_notify`).
    kick: Option<Arc<EventFd>>,
}

impl Block {
    /// A block device serving `image`.
    pub fn new(image: Arc<dyn IoBackend>, options: BlockOptions) -> Self {
        let limits = Limits::new(options.block_device);
        let mut serial = [0u8; SERIAL_LEN];
        let n = options.serial.len().min(SERIAL_LEN);
        serial[..n].copy_from_slice(&options.serial[..n]);
        let mut offered = features::VERSION_1
            | features::RING_EVENT_IDX
            | features::RING_INDIRECT_DESC
            | blk_features::SIZE_MAX
            | blk_features::SEG_MAX
            | blk_features::BLK_SIZE
            | blk_features::FLUSH;
        if image.readonly() {
            offered |= blk_features::RO;
        } else {
            offered |= blk_features::DISCARD | blk_features::WRITE_ZEROES;
        }
        let kick = EventFd::new(EFD_NONBLOCK)
            .map_err(|e| log::warn!("{}: no eventfd for notifies ({e})", options.name))
            .ok()
            .map(Arc::new);
        Self {
            config: config_space(image.capacity(), &limits),
            image,
            serial,
            name: options.name,
            limits,
            offered,
            driver_features: 0,
            state: State::Idle,
            kick,
        }
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    fn stop_worker(&mut self) {
        if let State::Running(worker) = std::mem::replace(&mut self.state, State::Idle) {
            // A worker that does not stop is left behind (logged); it holds its own
            // reference to the image, so nothing is lost here.
            let _ = worker.stop();
        }
    }
}

/// The configuration space, little-endian (virtio 1.2 §5.2.4).
fn config_space(capacity: u64, limits: &Limits) -> [u8; CONFIG_LEN] {
    let mut c = [0u8; CONFIG_LEN];
    let mut put = |at: usize, bytes: &[u8]| c[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &(capacity / SECTOR_SIZE).to_le_bytes());
    put(8, &SIZE_MAX.to_le_bytes());
    put(12, &SEG_MAX.to_le_bytes());
    // geometry (16..20) unused.
    put(20, &(SECTOR_SIZE as u32).to_le_bytes());
    // topology (24..32), writeback (32), num_queues (34) unused.
    put(36, &limits.max_discard_sectors.to_le_bytes());
    put(40, &limits.max_discard_seg.to_le_bytes());
    put(44, &limits.discard_sector_alignment.to_le_bytes());
    put(48, &limits.max_write_zeroes_sectors.to_le_bytes());
    put(52, &limits.max_write_zeroes_seg.to_le_bytes());
    put(56, &[u8::from(limits.write_zeroes_may_unmap)]);
    c
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        self.offered
    }

    fn set_driver_features(&mut self, features: u64) {
        self.driver_features = features & self.offered;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        log::debug!(
            "{}: {}-byte config write at {offset:#x} ignored (writeback is not offered)",
            self.name,
            data.len()
        );
    }

    fn activate(
        &mut self,
        mem: GuestMemory,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError> {
        let active = ActiveQueue::single(mem, interrupt, queues)?;
        self.stop_worker();
        let handler = BlockQueue::new(
            self.image.clone(),
            self.serial,
            self.driver_features,
            self.limits,
            active,
            self.name.clone(),
        );
        let worker = Worker::start("virtio-blk", self.kick.as_ref(), handler)
            .map_err(|e| ActivateError::Device(format!("starting the worker thread: {e}")))?;
        self.state = State::Running(worker);
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if index != 0 {
            log::warn!(
                "{}: notify of queue {index}, which does not exist",
                self.name
            );
            return;
        }
        if let State::Running(worker) = &self.state {
            worker.kick();
        }
    }

    fn queue_events(&self) -> Vec<Arc<EventFd>> {
        self.kick.iter().cloned().collect()
    }

    fn reset(&mut self) {
        self.stop_worker();
        self.driver_features = 0;
    }
}

#[cfg(test)]
mod tests;
