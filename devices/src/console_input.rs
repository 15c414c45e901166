// SPDX-License-Identifier: Apache-2.0
//! Where the VMM's console input goes: the UART's receive FIFO, or a console the backend
//! serves itself (the s390x SCLP VT220 console).

use std::io;
use std::sync::Mutex;

use crate::legacy::Serial16550;

/// A console that takes host input for the guest.
pub trait ConsoleInput: Send + Sync {
    /// Queue `bytes` for the guest; returns how many it took (0: full for now, try again).
    fn enqueue_input(&self, bytes: &[u8]) -> io::Result<usize>;
}

impl ConsoleInput for Mutex<Serial16550> {
    fn enqueue_input(&self, bytes: &[u8]) -> io::Result<usize> {
        self.lock()
            .unwrap_or_else(|e| e.into_inner())
            .enqueue_input(bytes)
    }
}
