// SPDX-License-Identifier: Apache-2.0
//! The request queue of an activated virtio-blk device, served on its worker thread:
//! requests are taken in order and done one at a time, synchronously, straight between the
//! image and guest memory, in passes bounded by [`MAX_REQUESTS_PER_PASS`] and
//! [`MAX_BYTES_PER_PASS`].

use std::sync::Arc;

use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _, VolatileSlice};

use super::image::{IoBackend, SECTOR_SIZE};
use super::request::{self, kind, status, Buffer, Parsed, Request, SEGMENT_LEN};
use super::{blk_features, Limits, SERIAL_LEN};
use crate::virtio::worker::{ActiveQueue, QueueHandler};
use crate::virtio::GuestMemory;

/// The most requests one pass serves; the rest wait for the next pass, after the worker
/// has looked for a stop request.
pub const MAX_REQUESTS_PER_PASS: usize = 64;
/// The most data bytes one pass moves (a pass always serves at least one request).
pub const MAX_BYTES_PER_PASS: u64 = 8 << 20;
/// The largest read or write one request may ask for; larger ones get `IOERR`. A driver
/// that keeps to `size_max` and `seg_max` never asks for more (Linux's requests are at
/// most `max_sectors_kb`, 1280 KiB by default).
pub const MAX_REQUEST_BYTES: u64 = 64 << 20;
/// Warnings about one device's driver before they drop to debug level.
const WARN_LIMIT: u32 = 16;

/// What serves the request queue.
pub struct BlockQueue {
    pub(super) image: Arc<dyn IoBackend>,
    pub(super) serial: [u8; SERIAL_LEN],
    pub(super) features: u64,
    pub(super) limits: Limits,
    pub(super) active: ActiveQueue,
    pub(super) name: String,
    warnings: u32,
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
            warnings: 0,
        }
    }

    fn warn(&mut self, args: std::fmt::Arguments) {
        warn(&mut self.warnings, &self.name, args);
    }

    /// Serve up to one pass's worth of requests; returns how many were used and whether
    /// the pass ran out of budget.
    fn serve_available(&mut self) -> (usize, bool) {
        let mem = self.active.mem.clone();
        let mut used = 0;
        let mut bytes = 0u64;
        while used < MAX_REQUESTS_PER_PASS && bytes < MAX_BYTES_PER_PASS {
            let Some(chain) = self.active.queue.pop_descriptor_chain(&mem) else {
                return (used, false);
            };
            let head = chain.head_index();
            let len = match request::parse(&mem, chain) {
                Parsed::Drop { reason } => {
                    self.warn(format_args!("request {head} dropped: {reason}"));
                    0
                }
                Parsed::Reject { status, reason } => {
                    self.warn(format_args!("request {head}: {reason}"));
                    self.finish(&mem, head, status, Outcome::status(status::IOERR))
                }
                Parsed::Request(req) => {
                    bytes += req.data_len().min(MAX_REQUEST_BYTES);
                    let outcome = self.execute(&mem, head, &req);
                    self.finish(&mem, head, req.status, outcome)
                }
            };
            if let Err(e) = self.active.queue.add_used(&mem, head, len) {
                self.warn(format_args!("request {head}: cannot return it: {e}"));
                continue;
            }
            used += 1;
        }
        (used, true)
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

    fn execute(&mut self, mem: &GuestMemory, head: u16, req: &Request) -> Outcome {
        match req.kind {
            kind::IN | kind::OUT => self.read_write(mem, head, req),
            kind::FLUSH => match self.image.flush() {
                Ok(()) => Outcome::status(status::OK),
                Err(e) => {
                    self.warn(format_args!("request {head}: flush: {e}"));
                    Outcome::status(status::IOERR)
                }
            },
            kind::GET_ID => self.get_id(mem, head, req),
            kind::DISCARD | kind::WRITE_ZEROES => self.discard_or_zero(mem, head, req),
            other => {
                log::debug!("{}: request {head}: type {other} unsupported", self.name);
                Outcome::status(status::UNSUPP)
            }
        }
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

    fn read_write(&mut self, mem: &GuestMemory, head: u16, req: &Request) -> Outcome {
        let write = req.kind == kind::OUT;
        if req.data.iter().any(|b| b.writable == write) {
            return self.reject(
                head,
                format_args!(
                    "a data buffer of a {} is device-{}",
                    if write { "write" } else { "read" },
                    if write { "writable" } else { "readable" }
                ),
            );
        }
        let len = req.data_len();
        if len % SECTOR_SIZE != 0 || len > MAX_REQUEST_BYTES {
            return self.reject(
                head,
                format_args!("{len} data bytes (not a whole number of sectors, or too many)"),
            );
        }
        let Some(offset) = self.range(req.sector, len) else {
            return self.reject(
                head,
                format_args!(
                    "sector {} + {len} bytes is past the disk's {} bytes",
                    req.sector,
                    self.image.capacity()
                ),
            );
        };
        if write && self.image.readonly() {
            return self.reject(head, format_args!("write to a read-only disk"));
        }
        let slices = match guest_slices(mem, &req.data) {
            Ok(s) => s,
            Err(e) => return self.reject(head, format_args!("data buffer: {e}")),
        };
        let result = if write {
            self.image.write_at(offset, &slices)
        } else {
            self.image.read_at(offset, &slices)
        };
        match result {
            Ok(()) => Outcome {
                status: status::OK,
                // At most MAX_REQUEST_BYTES.
                written: if write { 0 } else { len as u32 },
            },
            Err(e) => self.reject(head, format_args!("host I/O at {offset:#x}: {e}")),
        }
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

/// Warn about the driver, up to [`WARN_LIMIT`] times, then at debug level.
fn warn(count: &mut u32, name: &str, args: std::fmt::Arguments) {
    if *count < WARN_LIMIT {
        *count += 1;
        log::warn!("{name}: {args}");
    } else {
        log::debug!("{name}: {args}");
    }
}

impl QueueHandler for BlockQueue {
    fn serve(&mut self) -> bool {
        let (used, out_of_budget) = self.serve_available();
        let (warnings, name) = (&mut self.warnings, &self.name);
        self.active.end_pass(0, used, out_of_budget, &mut |args| {
            warn(warnings, name, args)
        })
    }
}
