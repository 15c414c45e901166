// SPDX-License-Identifier: Apache-2.0
//! The request queue of an activated virtio-blk device, served on its worker thread:
//! requests are taken in order, checked, and done straight between the image and guest
//! memory, in passes bounded by [`MAX_REQUESTS_PER_PASS`] and [`MAX_BYTES_PER_PASS`]:
//! synchronously, one at a time, or (reads, writes and flushes of a disk with an io_uring,
//! see [`super::engine`]) submitted and finished when their completions come back.

use std::sync::Arc;

use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _, VolatileSlice};
use vmm_sys_util::epoll::EventSet;

use super::engine::{self, AsyncIo, InFlight, Op, Pending};
use super::image::{IoBackend, SECTOR_SIZE};
use super::request::{self, kind, status, Buffer, Parsed, Request, SEGMENT_LEN};
use super::{blk_features, Limits, SERIAL_LEN};
use crate::virtio::worker::{ActiveQueue, QueueHandler, WorkerFds};
use crate::virtio::{DriverWarnings, GuestMemory};

/// The most requests one pass serves; the rest wait for the next pass, after the worker
/// has looked for a stop request.
pub const MAX_REQUESTS_PER_PASS: usize = 64;
/// The most data bytes one pass moves (a pass always serves at least one request).
pub const MAX_BYTES_PER_PASS: u64 = 8 << 20;
/// The largest read or write one request may ask for; larger ones get `IOERR`. A driver
/// that keeps to `size_max` and `seg_max` never asks for more (Linux's requests are at
/// most `max_sectors_kb`, 1280 KiB by default).
pub const MAX_REQUEST_BYTES: u64 = 64 << 20;

/// What serves the request queue.
pub struct BlockQueue {
    pub(super) image: Arc<dyn IoBackend>,
    pub(super) serial: [u8; SERIAL_LEN],
    pub(super) features: u64,
    pub(super) limits: Limits,
    pub(super) active: ActiveQueue,
    pub(super) name: String,
    warnings: DriverWarnings,
    /// Requests in flight, for a disk with an io_uring.
    pub(super) in_flight: Option<InFlight>,
}

/// The worker token of the io_uring's completion eventfd.
const COMPLETIONS: u64 = 0;

/// What starting a request came to.
enum Started {
    /// Done now: its outcome.
    Done(Outcome),
    /// Submitted; it is finished when its completion comes.
    InFlight,
}

/// What one request came to: the status and the bytes written into the guest's buffers.
struct Outcome {
    status: u8,
    written: u32,
}

impl Outcome {
    fn status(status: u8) -> Self {
        Self { status, written: 0 }
    }
}

impl BlockQueue {
    pub(super) fn new(
        image: Arc<dyn IoBackend>,
        serial: [u8; SERIAL_LEN],
        features: u64,
        limits: Limits,
        active: ActiveQueue,
        name: String,
    ) -> Self {
        Self {
            image,
            serial,
            features,
            limits,
            active,
            name,
            warnings: DriverWarnings::default(),
            in_flight: None,
        }
    }

    /// Keep reads, writes and flushes in flight on `io` from now on.
    pub(super) fn use_async(&mut self, io: Box<dyn AsyncIo>) {
        self.in_flight = Some(InFlight::new(io));
    }

    /// Give up the requests in flight (waiting for them, bounded), without completing
    /// them: the device is being reset or dropped.
    pub(super) fn abandon_in_flight(&mut self) {
        if let Some(f) = &mut self.in_flight {
            let n = f.count();
            let left = f.abandon(engine::DRAIN_DEADLINE);
            if n > 0 {
                log::debug!("{}: reset with {n} requests in flight", self.name);
            }
            if left > 0 {
                log::warn!(
                    "{}: {left} requests still in flight at reset; their memory stays mapped",
                    self.name
                );
            }
        }
    }

    /// Return the requests whose completions came; how many went to the used ring.
    fn complete_in_flight(&mut self, mem: &GuestMemory) -> usize {
        let Some(f) = &mut self.in_flight else {
            return 0;
        };
        let done = f.reap();
        let mut used = 0;
        for (p, result) in done {
            let outcome = self.completed(mem, &p, result);
            let len = self.finish(mem, p.head, p.status, outcome);
            if let Err(e) = self.active.queue.add_used(mem, p.head, len) {
                self.warn(format_args!("request {}: cannot return it: {e}", p.head));
                continue;
            }
            used += 1;
        }
        used
    }

    /// What a completion means for its request. A short read or write (the kernel may
    /// stop early) is finished synchronously.
    fn completed(
        &mut self,
        mem: &GuestMemory,
        p: &Pending,
        result: std::io::Result<u32>,
    ) -> Outcome {
        let head = p.head;
        let done = match result {
            // The kernel would have had to wait (a file marked non-blocking): do it here.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if p.op != Op::Flush {
                    0
                } else if let Err(e) = self.image.flush() {
                    return self.reject(head, format_args!("flush: {e}"));
                } else {
                    return Outcome::status(status::OK);
                }
            }
            Err(e) => {
                let what = if p.op == Op::Flush {
                    "flush"
                } else {
                    "host I/O"
                };
                return self.reject(head, format_args!("{what} at {:#x}: {e}", p.offset));
            }
            Ok(n) => u64::from(n),
        };
        let write = match p.op {
            Op::Flush => return Outcome::status(status::OK),
            Op::Read => false,
            Op::Write => true,
        };
        if done < p.len {
            let rest = guest_slices(mem, &p.data).map(|s| skip(s, done as usize));
            let result = match rest {
                Err(e) => Err(std::io::Error::other(e)),
                Ok(rest) if write => self.image.write_at(p.offset + done, &rest),
                Ok(rest) => self.image.read_at(p.offset + done, &rest),
            };
            if let Err(e) = result {
                return self.reject(head, format_args!("host I/O at {:#x}: {e}", p.offset));
            }
        }
        Outcome {
            status: status::OK,
            written: if write { 0 } else { p.len as u32 },
        }
    }

    fn warn(&mut self, args: std::fmt::Arguments) {
        self.warnings.warn(&self.name, args);
    }

    /// Serve up to one pass's worth of requests; returns how many were used and whether
    /// the pass ran out of budget.
    /// Requests submitted count against the pass like those done; a disk at its bound of
    /// requests in flight leaves the rest in the avail ring until completions make room.
    fn serve_available(&mut self) -> (usize, bool) {
        let mem = self.active.mem.clone();
        let mut used = self.complete_in_flight(&mem);
        let (mut used, out_of_budget) = self.pop_and_start(&mem, &mut used);
        if let Some(f) = &mut self.in_flight {
            if let Err(e) = f.submit() {
                self.warnings.warn(
                    &self.name,
                    format_args!("io_uring submit: {e} (retried on the next pass)"),
                );
                return (used, true);
            }
            // What completed during the submit (a cached read, a fast disk) goes back in
            // this pass rather than after another wake-up.
            used += self.complete_in_flight(&mem);
        }
        (used, out_of_budget)
    }

    fn pop_and_start(&mut self, mem: &GuestMemory, used: &mut usize) -> (usize, bool) {
        let mut taken = 0;
        let mut bytes = 0u64;
        while taken < MAX_REQUESTS_PER_PASS && bytes < MAX_BYTES_PER_PASS {
            if self.in_flight.as_ref().is_some_and(|f| !f.has_room()) {
                // Completions wake the worker; nothing to do until then.
                return (*used, false);
            }
            let Some(chain) = self.active.queue.pop_descriptor_chain(mem) else {
                return (*used, false);
            };
            taken += 1;
            let head = chain.head_index();
            let len = match request::parse(mem, chain) {
                Parsed::Drop { reason } => {
                    self.warn(format_args!("request {head} dropped: {reason}"));
                    0
                }
                Parsed::Reject { status, reason } => {
                    self.warn(format_args!("request {head}: {reason}"));
                    self.finish(mem, head, status, Outcome::status(status::IOERR))
                }
                Parsed::Request(req) => {
                    bytes += req.data_len().min(MAX_REQUEST_BYTES);
                    match self.execute(mem, head, req) {
                        (_, Started::InFlight) => continue,
                        (at, Started::Done(outcome)) => self.finish(mem, head, at, outcome),
                    }
                }
            };
            if let Err(e) = self.active.queue.add_used(mem, head, len) {
                self.warn(format_args!("request {head}: cannot return it: {e}"));
                continue;
            }
            *used += 1;
        }
        (*used, true)
    }

    /// Write the status byte; the used length (data written plus the status byte, or 0
    /// when the status cannot be written).
    fn finish(&mut self, mem: &GuestMemory, head: u16, at: GuestAddress, out: Outcome) -> u32 {
        match mem.write_obj(out.status, at) {
            Ok(()) => out.written.saturating_add(1),
            Err(e) => {
                self.warn(format_args!(
                    "request {head}: status byte at {:#x}: {e}",
                    at.0
                ));
                0
            }
        }
    }

    /// Do `req` now or submit it; where its status byte goes.
    fn execute(&mut self, mem: &GuestMemory, head: u16, req: Request) -> (GuestAddress, Started) {
        let at = req.status;
        let started = match req.kind {
            kind::IN | kind::OUT => self.read_write(mem, head, req),
            kind::FLUSH => self.flush(mem, head, at),
            kind::GET_ID => Started::Done(self.get_id(mem, head, &req)),
            kind::DISCARD | kind::WRITE_ZEROES => {
                Started::Done(self.discard_or_zero(mem, head, &req))
            }
            other => {
                log::debug!("{}: request {head}: type {other} unsupported", self.name);
                Started::Done(Outcome::status(status::UNSUPP))
            }
        };
        (at, started)
    }

    fn flush(&mut self, mem: &GuestMemory, head: u16, at: GuestAddress) -> Started {
        if let (Some(f), Some(file)) = (&mut self.in_flight, self.image.queued_flush_file()) {
            let p = Pending {
                head,
                status: at,
                op: Op::Flush,
                offset: 0,
                data: Vec::new(),
                len: 0,
            };
            if f.start(&file, mem, p).is_ok() {
                return Started::InFlight;
            }
        }
        Started::Done(match self.image.flush() {
            Ok(()) => Outcome::status(status::OK),
            Err(e) => {
                self.warn(format_args!("request {head}: flush: {e}"));
                Outcome::status(status::IOERR)
            }
        })
    }

    fn reject(&mut self, head: u16, why: std::fmt::Arguments) -> Outcome {
        self.warn(format_args!("request {head}: {why}"));
        Outcome::status(status::IOERR)
    }

    /// The byte range `sector`.. of `len` bytes, if it lies within the disk.
    fn range(&self, sector: u64, len: u64) -> Option<u64> {
        let offset = sector.checked_mul(SECTOR_SIZE)?;
        let end = offset.checked_add(len)?;
        (end <= self.image.capacity()).then_some(offset)
    }

    fn read_write(&mut self, mem: &GuestMemory, head: u16, req: Request) -> Started {
        match self.check_read_write(mem, head, &req) {
            Err(outcome) => Started::Done(outcome),
            Ok(offset) => self.start_read_write(mem, head, req, offset),
        }
    }

    /// Every check a read or write passes before any I/O; its byte offset.
    fn check_read_write(
        &mut self,
        mem: &GuestMemory,
        head: u16,
        req: &Request,
    ) -> Result<u64, Outcome> {
        let write = req.kind == kind::OUT;
        if req.data.iter().any(|b| b.writable == write) {
            return Err(self.reject(
                head,
                format_args!(
                    "a data buffer of a {} is device-{}",
                    if write { "write" } else { "read" },
                    if write { "writable" } else { "readable" }
                ),
            ));
        }
        let len = req.data_len();
        if len % SECTOR_SIZE != 0 || len > MAX_REQUEST_BYTES {
            return Err(self.reject(
                head,
                format_args!("{len} data bytes (not a whole number of sectors, or too many)"),
            ));
        }
        let Some(offset) = self.range(req.sector, len) else {
            return Err(self.reject(
                head,
                format_args!(
                    "sector {} + {len} bytes is past the disk's {} bytes",
                    req.sector,
                    self.image.capacity()
                ),
            ));
        };
        if write && self.image.readonly() {
            return Err(self.reject(head, format_args!("write to a read-only disk")));
        }
        if let Err(e) = guest_slices(mem, &req.data) {
            return Err(self.reject(head, format_args!("data buffer: {e}")));
        }
        Ok(offset)
    }

    /// Submit a checked read or write where the disk keeps requests in flight (and the
    /// ring takes it), else do it now.
    fn start_read_write(
        &mut self,
        mem: &GuestMemory,
        head: u16,
        req: Request,
        offset: u64,
    ) -> Started {
        let write = req.kind == kind::OUT;
        let len = req.data_len();
        let Ok(slices) = guest_slices(mem, &req.data) else {
            return Started::Done(self.reject(head, format_args!("data buffer moved")));
        };
        if let Some(f) = &mut self.in_flight {
            if let Some(file) = self.image.queued_file(offset, &slices) {
                let p = Pending {
                    head,
                    status: req.status,
                    op: if write { Op::Write } else { Op::Read },
                    offset,
                    data: req.data,
                    len,
                };
                // A request the ring cannot take (over IOV_MAX pieces) is done now.
                if f.start(&file, mem, p).is_ok() {
                    return Started::InFlight;
                }
            }
        }
        let result = if write {
            self.image.write_at(offset, &slices)
        } else {
            self.image.read_at(offset, &slices)
        };
        Started::Done(match result {
            Ok(()) => Outcome {
                status: status::OK,
                // At most MAX_REQUEST_BYTES.
                written: if write { 0 } else { len as u32 },
            },
            Err(e) => self.reject(head, format_args!("host I/O at {offset:#x}: {e}")),
        })
    }

    fn get_id(&mut self, mem: &GuestMemory, head: u16, req: &Request) -> Outcome {
        if req.data.iter().any(|b| !b.writable) {
            return self.reject(head, format_args!("a GET_ID buffer is device-readable"));
        }
        let mut written = 0usize;
        for b in &req.data {
            let n = (b.len as usize).min(SERIAL_LEN - written);
            if n == 0 {
                break;
            }
            if let Err(e) = mem.write_slice(&self.serial[written..written + n], b.addr) {
                return self.reject(head, format_args!("GET_ID buffer: {e}"));
            }
            written += n;
        }
        Outcome {
            status: status::OK,
            written: written as u32,
        }
    }

    fn discard_or_zero(&mut self, mem: &GuestMemory, head: u16, req: &Request) -> Outcome {
        let zeroes = req.kind == kind::WRITE_ZEROES;
        let (feature, max_sectors, max_seg) = if zeroes {
            (
                blk_features::WRITE_ZEROES,
                self.limits.max_write_zeroes_sectors,
                self.limits.max_write_zeroes_seg,
            )
        } else {
            (
                blk_features::DISCARD,
                self.limits.max_discard_sectors,
                self.limits.max_discard_seg,
            )
        };
        if self.image.readonly() {
            return self.reject(
                head,
                format_args!("discard or write-zeroes on a read-only disk"),
            );
        }
        if self.features & feature == 0 {
            return Outcome::status(status::UNSUPP);
        }
        if req.data.iter().any(|b| b.writable) {
            return self.reject(head, format_args!("a segment buffer is device-writable"));
        }
        let len = req.data_len();
        let count = len / SEGMENT_LEN;
        if len % SEGMENT_LEN != 0 || count == 0 || count > u64::from(max_seg) {
            return self.reject(head, format_args!("{len} bytes of segments"));
        }
        // At most max_seg (16) segments of 16 bytes: gather them, across buffers.
        let mut raw = Vec::with_capacity(len as usize);
        for b in &req.data {
            let start = raw.len();
            raw.resize(start + b.len as usize, 0);
            if let Err(e) = mem.read_slice(&mut raw[start..], b.addr) {
                return self.reject(head, format_args!("segment buffer: {e}"));
            }
        }
        for seg in raw.chunks_exact(SEGMENT_LEN as usize) {
            let sector = u64::from_le_bytes(seg[0..8].try_into().unwrap_or_default());
            let sectors = u32::from_le_bytes(seg[8..12].try_into().unwrap_or_default());
            let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap_or_default());
            let unmap = flags & 1 != 0;
            // Reserved flags, and unmap on a discard, are UNSUPP (virtio 1.2 §5.2.6.2).
            if flags & !1 != 0 || (unmap && !zeroes) {
                return Outcome::status(status::UNSUPP);
            }
            if sectors > max_sectors {
                return self.reject(head, format_args!("{sectors} sectors in one segment"));
            }
            let bytes = u64::from(sectors) * SECTOR_SIZE;
            let Some(offset) = self.range(sector, bytes) else {
                return self.reject(
                    head,
                    format_args!("segment at sector {sector} is past the disk's end"),
                );
            };
            let result = if zeroes {
                self.image.write_zeroes(offset, bytes, unmap)
            } else {
                self.image.discard(offset, bytes)
            };
            if let Err(e) = result {
                return self.reject(head, format_args!("host I/O at {offset:#x}: {e}"));
            }
        }
        Outcome::status(status::OK)
    }
}

/// The host memory behind `bufs`, in order (a buffer across two memory regions gives two
/// slices); an error when any byte is outside guest memory.
fn guest_slices<'m>(
    mem: &'m GuestMemory,
    bufs: &[Buffer],
) -> Result<Vec<VolatileSlice<'m, ()>>, vm_memory::GuestMemoryError> {
    let mut out = Vec::with_capacity(bufs.len());
    for b in bufs {
        for slice in mem.get_slices(b.addr, b.len as usize) {
            out.push(slice?);
        }
    }
    Ok(out)
}

/// `slices` without their first `n` bytes.
fn skip(slices: Vec<VolatileSlice<'_, ()>>, mut n: usize) -> Vec<VolatileSlice<'_, ()>> {
    let mut out = Vec::with_capacity(slices.len());
    for s in slices {
        if n >= s.len() {
            n -= s.len();
            continue;
        }
        match s.offset(n) {
            Ok(rest) => out.push(rest),
            Err(_) => out.push(s),
        }
        n = 0;
    }
    out
}

impl QueueHandler for BlockQueue {
    /// A disk whose backend wants requests in flight gets an io_uring here, on the worker
    /// thread, its completions' eventfd added to the worker's epoll.
    fn attach(&mut self, fds: WorkerFds) {
        if self.in_flight.is_some() || self.image.queued_flush_file().is_none() {
            return;
        }
        let Some(io) = engine::ring(&self.name) else {
            return;
        };
        let fd = engine::Fd(io.event_fd());
        match fds.add(&fd, COMPLETIONS, EventSet::IN) {
            Ok(()) => self.use_async(io),
            Err(e) => log::warn!(
                "{}: cannot wait on io_uring completions ({e}); one request at a time",
                self.name
            ),
        }
    }

    /// Completions are read at the start of the pass that follows.
    fn ready(&mut self, _token: u64, _events: EventSet) {}

    fn stop(&mut self) {
        self.abandon_in_flight();
    }

    fn serve(&mut self) -> bool {
        let (used, out_of_budget) = self.serve_available();
        let (warnings, name) = (&mut self.warnings, &self.name);
        self.active.end_pass(0, used, out_of_budget, &mut |args| {
            warnings.warn(name, args)
        })
    }
}
