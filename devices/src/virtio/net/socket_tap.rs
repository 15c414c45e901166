// SPDX-License-Identifier: Apache-2.0
//! A fake tap for tests and the fuzz targets (feature `fuzzing`): one end of a datagram
//! socket pair (one packet per message, like a tap); the caller holds the other end.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};

use vm_memory::VolatileSlice;

use super::Backend;

/// The device's end of the socket pair, recording the offloads it is given.
pub struct SocketTap {
    pub sock: UnixDatagram,
    pub offloads: Mutex<Vec<u32>>,
}

impl Backend for SocketTap {
    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
    fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf)
    }
    fn write_packet(&self, bufs: &[VolatileSlice<'_, ()>]) -> io::Result<usize> {
        tap::write_packet(&self.sock, bufs)
    }
    fn set_offload(&self, flags: u32) -> io::Result<()> {
        self.offloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(flags);
        Ok(())
    }
}

/// A fake tap and the host's end of it (both non-blocking).
pub fn socket_tap() -> io::Result<(Arc<SocketTap>, UnixDatagram)> {
    let (dev, host) = UnixDatagram::pair()?;
    dev.set_nonblocking(true)?;
    host.set_nonblocking(true)?;
    let tap = Arc::new(SocketTap {
        sock: dev,
        offloads: Mutex::new(Vec::new()),
    });
    Ok((tap, host))
}
