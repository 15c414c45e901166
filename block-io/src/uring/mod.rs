// SPDX-License-Identifier: Apache-2.0
//! io_uring for the disk worker: reads and writes straight between an image file and guest
//! memory, and `fdatasync`, kept in flight while the worker goes on, with completions
//! signalled on an `eventfd` the worker waits on with epoll.
//!
//! Why it is safe to offer as safe functions: the kernel reads the `iovec`s and writes
//! guest memory after the submitting call has returned, so everything a request points to
//! must outlive it. [`Ring`] keeps, for every request in flight, a clone of the guest
//! memory (`GuestMemoryMmap` clones share its mappings, which stay mapped while any clone
//! lives), the file and the `iovec` array, and drops them only when the request's
//! completion has been read. Dropping the ring cancels what it can, waits for the rest for
//! [`DRAIN_DEADLINE`], and leaks what is still in flight after that (the memory stays
//! mapped for the process's life rather than be reused under a late write).
//!
//! Where io_uring is missing: the `io-uring` crate has bindings for x86_64 and aarch64
//! only, so on other targets [`Ring::new`] always fails with `Unsupported` (the caller keeps
//! its synchronous path); where the kernel refuses `io_uring_setup` (an old kernel,
//! seccomp, the `kernel.io_uring_disabled` sysctl) it fails with the kernel's error.
//!
//! System calls a ring makes on the thread that owns it: `io_uring_setup` and `mmap` (the
//! rings) in [`Ring::new`], `eventfd2` and `io_uring_register` (`IORING_REGISTER_EVENTFD`)
//! there too, `io_uring_enter` to submit, `read` on the eventfd, `poll` (`ppoll` on
//! aarch64) while draining, `munmap` and `close` when dropped.

use std::time::Duration;

/// How long dropping a [`Ring`] (or [`Ring::drain`] by default) waits for requests in flight.
pub const DRAIN_DEADLINE: Duration = Duration::from_millis(1500);

/// One request that ended: the tag it was submitted with and the bytes it moved (for a
/// read or write; 0 for a sync), or the error.
#[derive(Debug)]
pub struct Completion {
    pub tag: u64,
    pub result: std::io::Result<u32>,
}

/// Which way a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// File to guest memory.
    Read,
    /// Guest memory to file.
    Write,
}

// One decision, here in the host syscall crate: the `io-uring` crate ships bindings for
// x86_64 and aarch64 hosts only (s390x would need bindgen at build time), so elsewhere the
// ring is one that is never available. `devices` sees the same `Ring` either way and stays
// architecture-blind.
cfg_if::cfg_if! {
    if #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))] {
        mod ring;
        pub use ring::Ring;
    } else {
        mod unavailable;
        pub use unavailable::Ring;
    }
}

#[cfg(test)]
mod tests;
