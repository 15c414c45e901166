// SPDX-License-Identifier: Apache-2.0
//! Interrupt lines: how a device asks for the guest's attention.
//!
//! The backend decides what a line is (an irqfd bound to a GSI on x86, a GIC SPI on arm64,
//! an adapter or classic I/O indicator on s390x); devices only call [`InterruptLine::trigger`].

use std::io;

/// One edge-triggered interrupt line of a device.
pub trait InterruptLine: Send + Sync {
    /// Raise the line once.
    fn trigger(&self) -> io::Result<()>;
    /// The `EventFd` behind the line, when it is one (an irqfd): a device thread, or later
    /// a vhost-user backend, may write it to interrupt the guest directly.
    fn event(&self) -> Option<&vmm_sys_util::eventfd::EventFd> {
        None
    }
}

/// Adapts an [`InterruptLine`] to vm-superio's `Trigger` trait.
pub struct SuperioTrigger(pub std::sync::Arc<dyn InterruptLine>);

impl vm_superio::Trigger for SuperioTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.trigger()
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts how often it was triggered.
    #[derive(Default)]
    pub struct CountingLine(pub AtomicUsize);

    impl InterruptLine for CountingLine {
        fn trigger(&self) -> io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    impl CountingLine {
        pub fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }
}
