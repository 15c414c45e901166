// SPDX-License-Identifier: Apache-2.0
//! virtio-vsock (virtio 1.2 §5.10): stream sockets between the guest and host processes,
//! the host side on a Unix socket as Firecracker and Cloud Hypervisor do it, so their
//! clients work unchanged. Architecture-blind: virtio-mmio or virtio-ccw carries it.
//!
//! Queues: rx (0), tx (1), event (2, held and unused: only a migration puts events there).
//! Configuration space: `guest_cid`, le64. Offered features: `VERSION_1` (stream sockets
//! only; `SEQPACKET` is not offered).
//!
//! Host side, on the Unix socket `PATH` the device listens on:
//! - a host process connects to `PATH` and writes `CONNECT <port>\n`; the device sends
//!   the guest a `REQUEST` from a local port it allocates (from 2^30 up) and, once the guest
//!   answers `RESPONSE`, writes `OK <local port>\n` to the host process, after which the
//!   socket carries the stream (a guest `RST` closes it);
//! - a guest connecting to host port P (CID 2) reaches the Unix socket `PATH_P`: the
//!   device connects to it and answers `RESPONSE`, or `RST` when nobody listens there.
//!
//! Flow control is credit-based both ways ([`conn`]); `SHUTDOWN` passes half-closes on
//! (host end of file is the guest's `SHUTDOWN` with `SEND`, the guest's `SEND` a
//! `shutdown(SHUT_WR)` of the host socket); a connection both sides finished, or that
//! broke, ends with a `RST`. Threads and events: the device's worker thread
//! ([`crate::virtio::worker`]) waits on the queue kick, the listening socket and every
//! connection's socket, and serves them in bounded passes ([`backend`]).
//!
//! Hostile guests: packets from another CID are dropped; to another CID than the host's,
//! of another type than stream, with an unknown op or for no connection, they get a `RST`;
//! chains in the wrong direction, outside guest memory, shorter than their `len` or longer
//! than [`packet::MAX_PKT_LEN`] are dropped (logged); a guest that sends past its credit
//! has that connection reset. The device never sends the guest more than its credit, and
//! reads a host socket at most [`conn::RX_STAGE`] (64 KiB) ahead of the guest, never past
//! its credit: that is all a connection holds for the guest.
//! A host's `CONNECT` the guest does not answer within [`backend::CONNECT_TIMEOUT`] (2 s,
//! as Firecracker) is given up: RST to the guest, the host connection closed (a timerfd
//! the worker also waits on).

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::worker::Worker;
use super::{device_type, features, ActivateError, GuestMemory, VirtioDevice, VirtioInterrupt};

pub mod backend;
pub mod conn;
pub mod packet;

pub use backend::{port_path, VsockQueues};

/// Each queue's largest size.
pub const QUEUE_SIZE: u16 = 256;
/// The lowest guest CID (0, 1 and 2 are reserved, 2 being the host).
pub const MIN_GUEST_CID: u64 = 3;
/// The highest guest CID: `u32::MAX` (`VMADDR_CID_ANY`) is reserved and the CID is 32-bit
/// in practice (Linux's `sockaddr_vm`).
pub const MAX_GUEST_CID: u64 = u32::MAX as u64 - 1;

/// One virtio-vsock device.
pub struct Vsock {
    guest_cid: u64,
    listener: Arc<UnixListener>,
    path: PathBuf,
    name: String,
    driver_features: u64,
    worker: Option<Worker<VsockQueues>>,
    kicks: Vec<Arc<EventFd>>,
}

impl Vsock {
    /// A device for guest CID `guest_cid`, whose host side listens on `listener`, bound at
    /// `path` (guest connections to host port P go to `path_P`).
    pub fn new(
        guest_cid: u64,
        listener: Arc<UnixListener>,
        path: PathBuf,
        name: String,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        // One kick for the three queues: any notify means "look at the queues".
        let kick = Arc::new(EventFd::new(EFD_NONBLOCK)?);
        Ok(Self {
            guest_cid,
            listener,
            path,
            name,
            driver_features: 0,
            worker: None,
            kicks: vec![kick; 3],
        })
    }

    fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            // Dropping the handler closes every connection's host socket.
            let _ = worker.stop();
        }
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_type::VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 3]
    }

    fn device_features(&self) -> u64 {
        features::VERSION_1
    }

    fn set_driver_features(&mut self, features: u64) {
        self.driver_features = features & self.device_features();
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.guest_cid.to_le_bytes(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        log::debug!(
            "{}: {}-byte config write at {offset:#x} ignored (guest_cid is read-only)",
            self.name,
            data.len()
        );
    }

    fn activate(
        &mut self,
        mem: GuestMemory,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError> {
        let [rx, tx, event] = super::take_queues(queues)?;
        self.stop_worker();
        let handler = VsockQueues::new(
            backend::Active {
                mem,
                interrupt,
                rx,
                tx,
                _event: event,
            },
            self.guest_cid,
            self.listener.clone(),
            self.path.clone(),
            self.name.clone(),
        );
        let worker = Worker::spawn_on("virtio-vsock", self.kicks[0].clone(), handler)
            .map_err(|e| ActivateError::Device(format!("starting the worker thread: {e}")))?;
        self.worker = Some(worker);
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if index > 2 {
            log::warn!(
                "{}: notify of queue {index}, which does not exist",
                self.name
            );
            return;
        }
        if let Some(worker) = &self.worker {
            worker.kick();
        }
    }

    fn queue_events(&self) -> Vec<Arc<EventFd>> {
        self.kicks.clone()
    }

    fn reset(&mut self) {
        self.stop_worker();
        self.driver_features = 0;
    }
}

#[cfg(test)]
mod tests;
