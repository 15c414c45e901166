// SPDX-License-Identifier: Apache-2.0
//! virtio-rng ("entropy device", virtio 1.2 §5.4): one request queue; the driver offers
//! device-writable buffers and the device fills them with random bytes from the host.
//!
//! The host's entropy comes from `/dev/urandom`, opened once when the device is created
//! (it never blocks once the host's pool is initialised, unlike `/dev/random` on old
//! kernels). Each request is filled up to [`MAX_REQUEST_BYTES`]; the used length tells the
//! driver how much it got, as the specification allows. A chain with no writable
//! buffer, a buffer outside guest memory or a looping chain is logged and returned
//! with what was written before the fault.

use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::worker::{ActiveQueue, QueueHandler, Worker};
use super::{device_type, features, ActivateError, GuestMemory, VirtioDevice, VirtioInterrupt};

/// The request queue's largest size.
pub const QUEUE_SIZE: u16 = 256;
/// The most bytes one request gets (Linux asks for at most a page or so at a time).
pub const MAX_REQUEST_BYTES: usize = 64 << 10;

/// The most requests one pass of the worker serves; whatever the driver made available
/// beyond it is served in the next pass, after the worker has looked for a stop request.
pub const MAX_REQUESTS_PER_PASS: usize = 64;
/// The most bytes one pass writes into guest memory.
pub const MAX_BYTES_PER_PASS: usize = 1 << 20;
/// Warnings about one device's driver before they drop to debug level.
const WARN_LIMIT: u32 = 16;

/// The request queue of an activated device and what serves it: runs on the device's
/// worker thread ([`Worker`]), in passes bounded by [`MAX_REQUESTS_PER_PASS`] and
/// [`MAX_BYTES_PER_PASS`].
pub struct RngQueue {
    source: Box<dyn Read + Send>,
    active: ActiveQueue,
    buffer: Vec<u8>,
    warnings: u32,
}

impl RngQueue {
    fn new(source: Box<dyn Read + Send>, active: ActiveQueue) -> Self {
        Self {
            source,
            active,
            buffer: Vec::new(),
            warnings: 0,
        }
    }

    fn warn(&mut self, args: std::fmt::Arguments) {
        warn(&mut self.warnings, args);
    }

    /// Serve up to one pass's worth of available requests and interrupt the driver if it
    /// wants; returns how many were used and whether the pass ran out of budget.
    fn serve_available(&mut self) -> (usize, bool) {
        let mem = self.active.mem.clone();
        let mut used = 0;
        let mut bytes = 0usize;
        while used < MAX_REQUESTS_PER_PASS && bytes < MAX_BYTES_PER_PASS {
            let Some(chain) = self.active.queue.pop_descriptor_chain(&mem) else {
                return (used, false);
            };
            let head = chain.head_index();
            let mut budget = MAX_REQUEST_BYTES.min(MAX_BYTES_PER_PASS - bytes);
            let mut written = 0u32;
            let mut readable = 0;
            for desc in chain {
                if !desc.is_write_only() {
                    readable += 1;
                    continue;
                }
                let len = (desc.len() as usize).min(budget);
                if len == 0 {
                    continue;
                }
                match self.fill(&mem, desc.addr(), len) {
                    Ok(()) => {
                        written += len as u32;
                        budget -= len;
                    }
                    Err(why) => {
                        self.warn(format_args!("request {head}: {why}"));
                        break;
                    }
                }
            }
            bytes += written as usize;
            if readable > 0 {
                self.warn(format_args!(
                    "request {head} has {readable} device-readable buffers (skipped)"
                ));
            }
            if let Err(e) = self.active.queue.add_used(&mem, head, written) {
                self.warn(format_args!("request {head}: cannot return it: {e}"));
                continue;
            }
            used += 1;
        }
        (used, true)
    }

    /// Write `len` random bytes at `addr`.
    fn fill(&mut self, mem: &GuestMemory, addr: GuestAddress, len: usize) -> Result<(), String> {
        self.buffer.resize(len, 0);
        self.source
            .read_exact(&mut self.buffer)
            .map_err(|e| format!("host entropy source: {e}"))?;
        mem.write_slice(&self.buffer, addr)
            .map_err(|e| format!("buffer {:#x}+{len:#x}: {e}", addr.0))
    }
}

/// Warn about the driver, up to [`WARN_LIMIT`] times, then at debug level.
fn warn(count: &mut u32, args: std::fmt::Arguments) {
    if *count < WARN_LIMIT {
        *count += 1;
        log::warn!("virtio-rng: {args}");
    } else {
        log::debug!("virtio-rng: {args}");
    }
}

impl QueueHandler for RngQueue {
    fn serve(&mut self) -> bool {
        let (used, out_of_budget) = self.serve_available();
        log::trace!("virtio-rng: {used} requests served");
        let mut warnings = self.warnings;
        let more = self.active.end_pass(0, used, out_of_budget, &mut |args| {
            warn(&mut warnings, args)
        });
        self.warnings = warnings;
        more
    }
}

enum State {
    /// Not activated: the entropy source waits for the driver.
    Idle(Box<dyn Read + Send>),
    /// Activated: the worker thread owns the queue and the source.
    Running(Worker<RngQueue>),
    /// The worker could not be stopped, so its source is gone.
    Lost,
}

/// A virtio entropy device.
pub struct Rng {
    state: State,
    driver_features: u64,
    /// Wakes the worker: written on a notify (bound as the queue's ioeventfd, or by
    /// [`VirtioDevice::queue_notify`]).
    kick: Option<Arc<EventFd>>,
}

impl Rng {
    /// An entropy device reading the host's `/dev/urandom`.
    pub fn new() -> io::Result<Self> {
        Ok(Self::with_source(Box::new(File::open("/dev/urandom")?)))
    }

    /// An entropy device reading `source` (tests use a fixed pattern).
    pub fn with_source(source: Box<dyn Read + Send>) -> Self {
        let kick = EventFd::new(EFD_NONBLOCK)
            .map_err(|e| log::warn!("virtio-rng: no eventfd for notifies ({e})"))
            .ok()
            .map(Arc::new);
        Self {
            state: State::Idle(source),
            driver_features: 0,
            kick,
        }
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// Stop the worker, if one runs, and keep its source for the next activation.
    fn stop_worker(&mut self) {
        self.state = match std::mem::replace(&mut self.state, State::Lost) {
            State::Running(worker) => match worker.stop() {
                Some(queue) => State::Idle(queue.source),
                None => State::Lost,
            },
            other => other,
        };
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_type::RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        features::VERSION_1 | features::RING_EVENT_IDX
    }

    fn set_driver_features(&mut self, features: u64) {
        self.driver_features = features & self.device_features();
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        // No configuration space.
        data.fill(0);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        log::debug!(
            "virtio-rng: {}-byte config write at {offset:#x} ignored (no config space)",
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
        let State::Idle(source) = std::mem::replace(&mut self.state, State::Lost) else {
            return Err(ActivateError::Device(
                "the entropy source was lost with a worker that did not stop".into(),
            ));
        };
        let handler = RngQueue::new(source, active);
        let worker = Worker::start("virtio-rng", self.kick.as_ref(), handler)
            .map_err(|e| ActivateError::Device(format!("starting the worker thread: {e}")))?;
        self.state = State::Running(worker);
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if index != 0 {
            log::warn!("virtio-rng: notify of queue {index}, which does not exist");
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
