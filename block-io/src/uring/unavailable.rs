// SPDX-License-Identifier: Apache-2.0
//! Hosts the `io-uring` crate has no bindings for (s390x among them): no ring, ever; the
//! caller keeps its synchronous path. Same interface as the real ring.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::{Completion, Direction};

/// Never constructed: [`Ring::new`] always fails.
pub struct Ring {
    never: std::convert::Infallible,
}

impl Ring {
    /// Always `Unsupported` on this architecture.
    pub fn new(_capacity: u32) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring is not built for this architecture",
        ))
    }

    pub fn event_fd(&self) -> RawFd {
        match self.never {}
    }

    pub fn capacity(&self) -> usize {
        match self.never {}
    }

    pub fn in_flight(&self) -> usize {
        match self.never {}
    }

    pub fn transfer(
        &mut self,
        _dir: Direction,
        _file: &Arc<File>,
        _offset: u64,
        _mem: &GuestMemoryMmap<()>,
        _bufs: &[(GuestAddress, usize)],
        _tag: u64,
    ) -> io::Result<()> {
        match self.never {}
    }

    pub fn fdatasync(&mut self, _file: &Arc<File>, _tag: u64) -> io::Result<()> {
        match self.never {}
    }

    pub fn submit(&mut self) -> io::Result<()> {
        match self.never {}
    }

    pub fn reap(&mut self, _out: &mut Vec<Completion>) {
        match self.never {}
    }

    pub fn drain(&mut self, _deadline: Duration) -> (Vec<Completion>, usize) {
        match self.never {}
    }

    pub fn wait(&self, _timeout: Duration) {
        match self.never {}
    }
}
