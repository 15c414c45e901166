//! virtio-rng ("entropy device", virtio 1.2 §5.4): one request queue; the driver offers
//! device-writable buffers and the device fills them with random bytes from the host.
//!
//! The host's entropy comes from `/dev/urandom`, opened once when the device is created
//! (it never blocks once the host's pool is initialised, unlike `/dev/random` on old
//! kernels). Each request is filled up to [`MAX_REQUEST_BYTES`]; the used length tells the
//! driver how much it got, as the specification allows. A chain with no writable
//! buffer, a buffer outside guest memory or a looping chain is logged and returned
//! with what was written before the fault.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::{device_type, features, ActivateError, GuestMemory, VirtioDevice, VirtioInterrupt};

/// The request queue's largest size.
pub const QUEUE_SIZE: u16 = 256;
/// The most bytes one request gets (Linux asks for at most a page or so at a time).
pub const MAX_REQUEST_BYTES: usize = 64 << 10;

/// Passes over the available ring per notification while the driver keeps adding
/// requests (each pass serves at most a queue's worth).
const MAX_ROUNDS: usize = 16;
/// Warnings about one device's driver before they drop to debug level.
const WARN_LIMIT: u32 = 16;

struct Active {
    mem: GuestMemory,
    interrupt: Arc<dyn VirtioInterrupt>,
    queue: Queue,
}

/// A virtio entropy device.
pub struct Rng {
    source: Box<dyn Read + Send>,
    active: Option<Active>,
    driver_features: u64,
    buffer: Vec<u8>,
    warnings: Cell<u32>,
}

impl Rng {
    /// An entropy device reading the host's `/dev/urandom`.
    pub fn new() -> io::Result<Self> {
        Ok(Self::with_source(Box::new(File::open("/dev/urandom")?)))
    }

    /// An entropy device reading `source` (tests use a fixed pattern).
    pub fn with_source(source: Box<dyn Read + Send>) -> Self {
        Self {
            source,
            active: None,
            driver_features: 0,
            buffer: Vec::new(),
            warnings: Cell::new(0),
        }
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    fn warn(&self, args: std::fmt::Arguments) {
        let warnings = self.warnings.get();
        if warnings < WARN_LIMIT {
            self.warnings.set(warnings + 1);
            log::warn!("virtio-rng: {args}");
        } else {
            log::debug!("virtio-rng: {args}");
        }
    }

    /// Serve every request the driver made available, interrupt it if it wants, and ask
    /// for the next notification; returns how many requests were used.
    fn process_queue(&mut self) -> usize {
        let Some(mut active) = self.active.take() else {
            return 0;
        };
        let mut used = 0;
        for _ in 0..MAX_ROUNDS {
            let served = self.serve_available(&mut active);
            used += served;
            // With VIRTIO_F_EVENT_IDX this writes `avail_event`, without which the driver
            // stops notifying after its first request; `true` means more arrived meanwhile.
            match active.queue.enable_notification(&active.mem) {
                Ok(true) if served > 0 => continue,
                Ok(_) => break,
                Err(e) => {
                    self.warn(format_args!("cannot re-enable notifications: {e}"));
                    break;
                }
            }
        }
        if used > 0 {
            match active.queue.needs_notification(&active.mem) {
                Ok(false) => {}
                Ok(true) => active.interrupt.signal_used_queue(0),
                Err(e) => {
                    self.warn(format_args!("reading the used event: {e}"));
                    active.interrupt.signal_used_queue(0);
                }
            }
        }
        self.active = Some(active);
        used
    }

    /// Fill and return every chain in the available ring; returns how many.
    fn serve_available(&mut self, active: &mut Active) -> usize {
        let mut used = 0;
        while let Some(chain) = active.queue.pop_descriptor_chain(&active.mem) {
            let head = chain.head_index();
            let mut budget = MAX_REQUEST_BYTES;
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
                match self.fill(&active.mem, desc.addr(), len) {
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
            if readable > 0 {
                self.warn(format_args!(
                    "request {head} has {readable} device-readable buffers (skipped)"
                ));
            }
            if let Err(e) = active.queue.add_used(&active.mem, head, written) {
                self.warn(format_args!("request {head}: cannot return it: {e}"));
                continue;
            }
            used += 1;
        }
        used
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
        mut queues: Vec<Queue>,
    ) -> Result<(), ActivateError> {
        if queues.len() != 1 {
            return Err(ActivateError::QueueCount {
                got: queues.len(),
                want: 1,
            });
        }
        let queue = queues.remove(0);
        self.active = Some(Active {
            mem,
            interrupt,
            queue,
        });
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if index != 0 {
            self.warn(format_args!(
                "notify of queue {index}, which does not exist"
            ));
            return;
        }
        let used = self.process_queue();
        log::trace!("virtio-rng: {used} requests served");
    }

    fn reset(&mut self) {
        self.active = None;
        self.driver_features = 0;
    }
}

#[cfg(test)]
mod tests;
