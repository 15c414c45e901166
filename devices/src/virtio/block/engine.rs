// SPDX-License-Identifier: Apache-2.0
//! Keeping several requests in flight: reads, writes and flushes submitted to an io_uring
//! (the `block-io` crate's [`Ring`]) while the worker goes on popping the queue, their
//! completions returned to the driver as they come, in any order (virtio allows it).
//!
//! Which disks: those whose [`IoBackend`](super::IoBackend) asks for it (a `direct=on`
//! image: its reads and writes reach the host's disk, where io_uring measured 5.5× at 8 in
//! flight; page-cache hits gain nothing, see docs/bench.md). Where io_uring is missing
//! (not built for the architecture, as on s390x, or refused by the kernel: an old kernel,
//! seccomp, `kernel.io_uring_disabled`) the disk keeps the synchronous path; the log says
//! so once.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] requests in flight per disk; the worker leaves the
//! rest in the avail ring until completions make room. Every request is checked (chain,
//! direction, guest memory, sector range, size) before it is submitted, as on the
//! synchronous path.
//!
//! Flush: an `fdatasync` submitted when the flush is popped. It covers every write whose
//! completion the device has read, and so every write the driver has seen completed
//! before it sent the flush, which is what a flush promises (virtio 1.2 §5.2.6); writes
//! still in flight when it is submitted are not waited for.
//!
//! Reset and stop: the worker cancels what it can and waits for the rest before its
//! thread ends ([`super::BlockQueue`]'s `stop`), without writing the used ring, so no
//! request completes into a queue the driver has reset; the ring keeps the guest memory
//! mapped while anything is in flight.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use block_io::uring::{Completion, Direction, Ring, DRAIN_DEADLINE};
use vm_memory::GuestAddress;

use super::request::Buffer;
use crate::virtio::GuestMemory;

/// The most requests one disk keeps in flight.
pub const MAX_IN_FLIGHT: usize = 64;

/// What keeps requests in flight: the io_uring [`Ring`], or a fake in tests.
pub trait AsyncIo: Send {
    /// Readable when completions may be waiting.
    fn event_fd(&self) -> RawFd;
    /// Requests submitted and not yet reaped.
    fn in_flight(&self) -> usize;
    fn transfer(
        &mut self,
        dir: Direction,
        file: &Arc<File>,
        offset: u64,
        mem: &GuestMemory,
        bufs: &[(GuestAddress, usize)],
        tag: u64,
    ) -> io::Result<()>;
    fn fdatasync(&mut self, file: &Arc<File>, tag: u64) -> io::Result<()>;
    /// Send what was queued to the kernel.
    fn submit(&mut self) -> io::Result<()>;
    /// Completions that arrived.
    fn reap(&mut self, out: &mut Vec<Completion>);
    /// Cancel and wait (bounded) for everything in flight; how many are left.
    fn drain(&mut self, deadline: Duration) -> usize;
}

impl AsyncIo for Ring {
    fn event_fd(&self) -> RawFd {
        Ring::event_fd(self)
    }
    fn in_flight(&self) -> usize {
        Ring::in_flight(self)
    }
    fn transfer(
        &mut self,
        dir: Direction,
        file: &Arc<File>,
        offset: u64,
        mem: &GuestMemory,
        bufs: &[(GuestAddress, usize)],
        tag: u64,
    ) -> io::Result<()> {
        Ring::transfer(self, dir, file, offset, mem, bufs, tag)
    }
    fn fdatasync(&mut self, file: &Arc<File>, tag: u64) -> io::Result<()> {
        Ring::fdatasync(self, file, tag)
    }
    fn submit(&mut self) -> io::Result<()> {
        Ring::submit(self)
    }
    fn reap(&mut self, out: &mut Vec<Completion>) {
        Ring::reap(self, out)
    }
    fn drain(&mut self, deadline: Duration) -> usize {
        Ring::drain(self, deadline).1
    }
}

/// An io_uring for one disk, or `None` (said once per process at info level) where there
/// is none.
pub fn ring(name: &str) -> Option<Box<dyn AsyncIo>> {
    static SAID: AtomicBool = AtomicBool::new(false);
    match Ring::new(MAX_IN_FLIGHT as u32) {
        Ok(ring) => {
            log::debug!("{name}: io_uring, up to {MAX_IN_FLIGHT} requests in flight");
            Some(Box::new(ring))
        }
        Err(e) => {
            if !SAID.swap(true, Ordering::Relaxed) {
                log::info!(
                    "io_uring unavailable ({e}): direct=on disks serve one request at a time"
                );
            }
            None
        }
    }
}

/// A raw descriptor as `AsRawFd`, to register with the worker's epoll.
pub struct Fd(pub RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// What a request in flight is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Flush,
}

/// A request submitted: what is needed to finish it when its completion comes.
#[derive(Debug)]
pub struct Pending {
    pub head: u16,
    pub status: GuestAddress,
    pub op: Op,
    pub offset: u64,
    pub data: Vec<Buffer>,
    pub len: u64,
}

/// The requests of one disk in flight.
pub struct InFlight {
    io: Box<dyn AsyncIo>,
    pending: HashMap<u64, Pending>,
    next_tag: u64,
    unsubmitted: bool,
}

impl InFlight {
    pub fn new(io: Box<dyn AsyncIo>) -> Self {
        Self {
            io,
            pending: HashMap::with_capacity(MAX_IN_FLIGHT),
            next_tag: 0,
            unsubmitted: false,
        }
    }

    pub fn event_fd(&self) -> RawFd {
        self.io.event_fd()
    }

    /// Requests submitted and not finished.
    pub fn count(&self) -> usize {
        self.pending.len()
    }

    /// Whether another request may be submitted.
    pub fn has_room(&self) -> bool {
        self.pending.len() < MAX_IN_FLIGHT
    }

    /// Queue `p` (a read or write of `file`, or a flush of it); its buffers are checked to
    /// be in guest memory already. An error leaves nothing queued.
    pub fn start(&mut self, file: &Arc<File>, mem: &GuestMemory, p: Pending) -> io::Result<()> {
        if !self.has_room() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let tag = self.next_tag;
        let bufs: Vec<(GuestAddress, usize)> =
            p.data.iter().map(|b| (b.addr, b.len as usize)).collect();
        match p.op {
            Op::Read => self
                .io
                .transfer(Direction::Read, file, p.offset, mem, &bufs, tag)?,
            Op::Write => self
                .io
                .transfer(Direction::Write, file, p.offset, mem, &bufs, tag)?,
            Op::Flush => self.io.fdatasync(file, tag)?,
        }
        self.next_tag = tag.wrapping_add(1);
        self.pending.insert(tag, p);
        self.unsubmitted = true;
        Ok(())
    }

    /// Send what was queued (kept for the next call if the kernel refuses now).
    pub fn submit(&mut self) -> io::Result<()> {
        if !self.unsubmitted {
            return Ok(());
        }
        self.io.submit()?;
        self.unsubmitted = false;
        Ok(())
    }

    /// The requests that completed, with what the kernel said.
    pub fn reap(&mut self) -> Vec<(Pending, io::Result<u32>)> {
        let mut done = Vec::new();
        self.io.reap(&mut done);
        done.into_iter()
            .filter_map(|c| self.pending.remove(&c.tag).map(|p| (p, c.result)))
            .collect()
    }

    /// Cancel what can be, wait for the rest (at most `deadline`) and forget it all: the
    /// driver reset the queue. How many were still in flight at the deadline.
    pub fn abandon(&mut self, deadline: Duration) -> usize {
        let left = if self.pending.is_empty() {
            0
        } else {
            self.io.drain(deadline)
        };
        self.pending.clear();
        self.unsubmitted = false;
        left
    }
}
