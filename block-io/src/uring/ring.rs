// SPDX-License-Identifier: Apache-2.0
//! The io_uring ring on hosts the `io-uring` crate has bindings for (x86_64, aarch64).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::{Completion, Direction, DRAIN_DEADLINE};
use crate::IOV_MAX;

/// `user_data` of cancel requests (their completions are not reported).
const CANCEL: u64 = u64::MAX;

/// What a request in flight points to, kept until its completion is read.
struct Slot {
    tag: u64,
    _mem: Option<GuestMemoryMmap<()>>,
    _file: Arc<File>,
    _iov: Vec<libc::iovec>,
}

// SAFETY: the raw pointers in `_iov` are never dereferenced by this process; they are
// addresses the kernel uses, kept alive by `_mem`, which is Send.
unsafe impl Send for Slot {}

/// An io_uring with at most `capacity` requests in flight, whose completions write an
/// eventfd (see the module documentation of [`super`]).
pub struct Ring {
    ring: IoUring,
    event: OwnedFd,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    cancels: usize,
    /// Requests given up on by [`Ring::drain`] while still in the kernel: their slots are
    /// leaked, and the ring takes nothing more.
    abandoned: usize,
}

impl Ring {
    /// A ring for `capacity` requests in flight (1..=4096), its completions signalled on
    /// its own eventfd ([`Ring::event_fd`]).
    pub fn new(capacity: u32) -> io::Result<Self> {
        let capacity = capacity.clamp(1, 4096);
        // Room for a cancel per request in flight, when dropping.
        let ring = IoUring::builder().build(capacity.next_power_of_two() * 2)?;
        // SAFETY: eventfd2 takes no pointers; a non-negative return is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let event = unsafe { OwnedFd::from_raw_fd(fd) };
        ring.submitter().register_eventfd(event.as_raw_fd())?;
        Ok(Self {
            ring,
            event,
            slots: (0..capacity).map(|_| None).collect(),
            free: (0..capacity as usize).rev().collect(),
            cancels: 0,
            abandoned: 0,
        })
    }

    /// The eventfd written when completions arrive (readable while any may be unread).
    pub fn event_fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }

    /// The most requests in flight.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Requests submitted whose completion has not been read.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len() - self.abandoned
    }

    /// Queue a read of `bufs` (guest addresses and lengths, in order) from `file` at
    /// `offset`, or a write of them to it; sent to the kernel by the next [`Ring::submit`].
    /// Errors: `WouldBlock` when [`Ring::capacity`] requests are in flight,
    /// `InvalidInput` for more than [`IOV_MAX`] pieces, `EFAULT` when a buffer is outside
    /// `mem`.
    pub fn transfer(
        &mut self,
        dir: Direction,
        file: &Arc<File>,
        offset: u64,
        mem: &GuestMemoryMmap<()>,
        bufs: &[(GuestAddress, usize)],
        tag: u64,
    ) -> io::Result<()> {
        if self.free.is_empty() || self.abandoned > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut iov = Vec::with_capacity(bufs.len());
        for &(addr, len) in bufs {
            for slice in mem.get_slices(addr, len) {
                let slice = slice.map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
                if slice.is_empty() {
                    continue;
                }
                iov.push(libc::iovec {
                    iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                    iov_len: slice.len(),
                });
            }
        }
        if iov.len() > IOV_MAX {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let fd = types::Fd(file.as_raw_fd());
        let n = iov.len() as u32;
        let entry = if dir == Direction::Write {
            opcode::Writev::new(fd, iov.as_ptr(), n)
                .offset(offset)
                .build()
        } else {
            opcode::Readv::new(fd, iov.as_ptr(), n)
                .offset(offset)
                .build()
        };
        self.push(entry, tag, Some(mem.clone()), file, iov)
    }

    /// Queue an `fdatasync` of `file`. It starts when submitted, unordered with requests
    /// in flight: it covers the writes whose completions were read before it was queued.
    pub fn fdatasync(&mut self, file: &Arc<File>, tag: u64) -> io::Result<()> {
        let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        self.push(entry, tag, None, file, Vec::new())
    }

    fn push(
        &mut self,
        entry: squeue::Entry,
        tag: u64,
        mem: Option<GuestMemoryMmap<()>>,
        file: &Arc<File>,
        iov: Vec<libc::iovec>,
    ) -> io::Result<()> {
        if self.abandoned > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let Some(index) = self.free.pop() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let entry = entry.user_data(index as u64);
        // SAFETY: everything the entry points to (the iovec array, the guest memory its
        // iovecs point into, the file) is moved into `slots[index]` below and kept there
        // until the entry's completion has been read (`reap`), or leaked if it never is
        // (`Drop`). Moving the Vec does not move its heap buffer.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            // The submission queue is twice the capacity: only full if submits failed.
            self.free.push(index);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.slots[index] = Some(Slot {
            tag,
            _mem: mem,
            _file: file.clone(),
            _iov: iov,
        });
        Ok(())
    }

    /// Send the queued requests to the kernel (`io_uring_enter`), without waiting.
    pub fn submit(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(_) => return Ok(()),
            }
        }
    }

    /// Read the completions that arrived into `out` (and reset the eventfd first, so a
    /// completion after this call writes it again).
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        let mut counter = 0u64;
        // SAFETY: reads 8 bytes into a local u64 that lives across the call.
        let _ = unsafe {
            libc::read(
                self.event.as_raw_fd(),
                (&mut counter as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        for cqe in self.ring.completion() {
            let data = cqe.user_data();
            if data == CANCEL {
                self.cancels = self.cancels.saturating_sub(1);
                continue;
            }
            let index = data as usize;
            let Some(slot) = self.slots.get_mut(index).and_then(Option::take) else {
                continue;
            };
            self.free.push(index);
            let r = cqe.result();
            out.push(Completion {
                tag: slot.tag,
                result: if r < 0 {
                    Err(io::Error::from_raw_os_error(-r))
                } else {
                    Ok(r as u32)
                },
            });
        }
    }

    /// Ask the kernel to cancel every request in flight (those already at the disk finish
    /// anyway), submit, and wait up to `deadline` for all completions; returns them and
    /// how many were still in flight at the deadline. Those are given up: what they point
    /// to is leaked (the kernel may still write guest memory, which so stays mapped), and
    /// the ring takes no more requests.
    pub fn drain(&mut self, deadline: Duration) -> (Vec<Completion>, usize) {
        let mut done = Vec::new();
        self.reap(&mut done);
        let in_flight: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .collect();
        for index in in_flight {
            let cancel = opcode::AsyncCancel::new(index as u64)
                .build()
                .user_data(CANCEL);
            // SAFETY: a cancel entry points to nothing.
            if unsafe { self.ring.submission().push(&cancel) }.is_ok() {
                self.cancels += 1;
            }
        }
        let _ = self.submit();
        let start = Instant::now();
        while self.in_flight() > 0 {
            let left = deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            let mut pfd = libc::pollfd {
                fd: self.event.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd, a local that lives across the call.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
            self.reap(&mut done);
        }
        let left = self.in_flight();
        if left > 0 {
            for slot in self.slots.iter_mut() {
                if let Some(slot) = slot.take() {
                    std::mem::forget(slot);
                }
            }
            self.abandoned += left;
        }
        (done, left)
    }

    /// Wait (at most `timeout`) until a completion arrives or one is already unread.
    pub fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.event.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, a local that lives across the call.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().max(1) as libc::c_int) };
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.in_flight() == 0 {
            return;
        }
        // What is still in flight at the deadline is leaked by `drain`.
        let _ = self.drain(DRAIN_DEADLINE);
    }
}
