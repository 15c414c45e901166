// SPDX-License-Identifier: Apache-2.0
//! virtio-net (virtio 1.2 §5.1) over a host tap: one receive and one transmit queue, the
//! same device whether virtio-mmio (x86_64, aarch64) or virtio-ccw (s390x) carries it.
//!
//! Offered: `VERSION_1`, `RING_EVENT_IDX`, `RING_INDIRECT_DESC` (virtio-queue walks both),
//! `MAC`, `STATUS` (the link is always up), `MRG_RXBUF`, `CSUM` and `HOST_TSO4/6` (the
//! guest's checksum and segmentation requests go to the tap in the virtio-net header, and
//! the host kernel carries them out), `GUEST_CSUM` and `GUEST_TSO4/6` (set on the tap with
//! `TUNSETOFFLOAD` only when the driver accepts them, so the tap hands over partially
//! checksummed and large segments only then). Not offered: ECN and UFO/USO (not tested),
//! the control queue, multiqueue, MTU.
//!
//! The tap's virtio-net header is the device's: 12 bytes (`num_buffers` included), made
//! little-endian on every host with `TUNSETVNETLE`, so a packet's header goes between the
//! guest and the tap unchanged, except `num_buffers` (written by the device) and `flags`
//! (cleared on receive when the driver did not take `GUEST_CSUM`).
//!
//! I/O model: the device's worker thread ([`crate::virtio::worker`]) is woken by either
//! queue's notify (one `EventFd` bound to both) and by the tap's readability (a host fd of
//! the worker). Receive ([`rx`]) reads one packet at a time from the tap into a buffer and
//! copies it into the driver's receive buffers (several with `MRG_RXBUF`); when the guest has
//! none, the packet is held, the worker stops waiting on the tap (the kernel queues what
//! arrives meanwhile, up to the tap's queue length) and the next receive-queue notify
//! resumes: nothing is dropped by the VMM and nothing spins. Transmit ([`tx`]) gathers each
//! chain straight from guest memory into one `writev` on the tap, no copy. Each pass moves
//! at most [`MAX_PACKETS_PER_PASS`] packets per queue, then the worker looks at its stop
//! event before the next pass.
//!
//! Hostile drivers: chains with descriptors in the wrong direction or outside guest memory,
//! packets larger than [`MAX_PACKET_LEN`] or shorter than a header and an Ethernet header,
//! a receive queue that is never filled or whose ring is garbage: the packet or chain is
//! dropped (logged, rate-limited), the device goes on.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::VolatileSlice;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::worker::Worker;
use super::{device_type, features, ActivateError, GuestMemory, VirtioDevice, VirtioInterrupt};

mod handler;
pub mod rx;
#[cfg(any(test, feature = "fuzzing"))]
pub mod socket_tap;
pub mod tx;

pub use handler::NetQueues;

/// Receive (0) and transmit (1) queues' largest size.
pub const QUEUE_SIZE: u16 = 256;
/// Receive queue index.
pub const RX: u16 = 0;
/// Transmit queue index.
pub const TX: u16 = 1;
/// Bytes of the virtio-net header (`struct virtio_net_hdr_v1`).
pub const HDR_LEN: usize = 12;
/// Bytes of an Ethernet header: the least a frame has.
pub const ETH_HLEN: usize = 14;
/// The longest packet either way: the header and a 64 KiB segment with its Ethernet header
/// (what a tap gives with TSO, what Linux's driver sends with it).
pub const MAX_PACKET_LEN: usize = HDR_LEN + 65550;
/// The most packets one pass moves on each queue.
pub const MAX_PACKETS_PER_PASS: usize = 64;

/// virtio-net feature bits (virtio 1.2 §5.1.3).
pub mod net_features {
    pub const CSUM: u64 = 1 << 0;
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MAC: u64 = 1 << 5;
    pub const GUEST_TSO4: u64 = 1 << 7;
    pub const GUEST_TSO6: u64 = 1 << 8;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const HOST_TSO6: u64 = 1 << 12;
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const STATUS: u64 = 1 << 16;
}

/// `status` in the configuration space: the link is up.
pub const LINK_UP: u16 = 1;
/// Bytes of the configuration space: `mac`, `status`, `max_virtqueue_pairs`.
pub const CONFIG_LEN: usize = 10;

/// What the device needs from the host side of the link: a tap ([`tap::Tap`]), or in
/// tests a datagram socket.
pub trait Backend: Send + Sync {
    /// The descriptor the worker polls for readability.
    fn fd(&self) -> RawFd;
    /// Read one packet (header and frame) into `buf`; `WouldBlock` when none is queued.
    fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Write one packet (header and frame) gathered from `bufs`.
    fn write_packet(&self, bufs: &[VolatileSlice<'_, ()>]) -> io::Result<usize>;
    /// Which offloads the host may use towards the guest (`tap::TUN_F_*`).
    fn set_offload(&self, flags: u32) -> io::Result<()>;
}

impl Backend for tap::Tap {
    fn fd(&self) -> RawFd {
        self.file().as_raw_fd()
    }

    fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut self.file(), buf)
    }

    fn write_packet(&self, bufs: &[VolatileSlice<'_, ()>]) -> io::Result<usize> {
        tap::Tap::write_packet(self, bufs)
    }

    fn set_offload(&self, flags: u32) -> io::Result<()> {
        tap::Tap::set_offload(self, flags)
    }
}

/// A stable, locally administered unicast MAC address for the tap `name` (FNV-1a of the
/// name, mixed by MurmurHash3's finaliser so that names differing in one letter differ in
/// every byte; the locally administered bit set, the multicast bit clear): the same guest
/// on the same tap keeps its address across runs and hosts.
pub fn default_mac(name: &str) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    let b = h.to_be_bytes();
    [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

/// The `TUNSETOFFLOAD` flags for what the driver accepted (TSO only with checksums).
pub fn tap_offloads(driver_features: u64) -> u32 {
    use net_features::*;
    let mut flags = 0;
    if driver_features & GUEST_CSUM != 0 {
        flags |= tap::TUN_F_CSUM;
        if driver_features & GUEST_TSO4 != 0 {
            flags |= tap::TUN_F_TSO4;
        }
        if driver_features & GUEST_TSO6 != 0 {
            flags |= tap::TUN_F_TSO6;
        }
    }
    flags
}

enum State {
    Idle,
    Running(Worker<NetQueues>),
}

/// A virtio network device.
pub struct Net {
    backend: Arc<dyn Backend>,
    config: [u8; CONFIG_LEN],
    name: String,
    offered: u64,
    driver_features: u64,
    state: State,
    /// Wakes the worker: bound as both queues' ioeventfd, or written by `queue_notify`.
    kick: Option<Arc<EventFd>>,
}

impl Net {
    /// A network device on `backend` with the address `mac`, named `name` in log lines.
    pub fn new(backend: Arc<dyn Backend>, mac: [u8; 6], name: String) -> Self {
        use net_features::*;
        let offered = features::VERSION_1
            | features::RING_EVENT_IDX
            | features::RING_INDIRECT_DESC
            | MAC
            | STATUS
            | MRG_RXBUF
            | CSUM
            | HOST_TSO4
            | HOST_TSO6
            | GUEST_CSUM
            | GUEST_TSO4
            | GUEST_TSO6;
        let mut config = [0u8; CONFIG_LEN];
        config[..6].copy_from_slice(&mac);
        config[6..8].copy_from_slice(&LINK_UP.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        let kick = EventFd::new(EFD_NONBLOCK)
            .map_err(|e| log::warn!("{name}: no eventfd for notifies ({e})"))
            .ok()
            .map(Arc::new);
        Self {
            backend,
            config,
            name,
            offered,
            driver_features: 0,
            state: State::Idle,
            kick,
        }
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    fn stop_worker(&mut self) {
        if let State::Running(worker) = std::mem::replace(&mut self.state, State::Idle) {
            // A worker that does not stop is left behind (logged); it holds its own
            // reference to the backend.
            let _ = worker.stop();
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_type::NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        self.offered
    }

    fn set_driver_features(&mut self, features: u64) {
        self.driver_features = features & self.offered;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        log::debug!(
            "{}: {}-byte config write at {offset:#x} ignored (the MAC is read-only)",
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
        let [rx, tx] = super::take_queues(queues)?;
        self.stop_worker();
        let offload = tap_offloads(self.driver_features);
        self.backend.set_offload(offload).map_err(|e| {
            ActivateError::Device(format!("setting tap offloads {offload:#x}: {e}"))
        })?;
        let handler = NetQueues::new(
            self.backend.clone(),
            self.driver_features,
            handler::Active {
                mem,
                interrupt,
                rx,
                tx,
            },
            self.name.clone(),
        );
        let worker = match &self.kick {
            Some(kick) => Worker::spawn_on("virtio-net", kick.clone(), handler),
            None => Worker::spawn("virtio-net", handler),
        }
        .map_err(|e| ActivateError::Device(format!("starting the worker thread: {e}")))?;
        self.state = State::Running(worker);
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if index > TX {
            log::warn!(
                "{}: notify of queue {index}, which does not exist",
                self.name
            );
            return;
        }
        if let State::Running(worker) = &self.state {
            worker.kick();
        }
    }

    fn queue_events(&self) -> Vec<Arc<EventFd>> {
        // One worker serves both queues: either notify wakes it.
        match &self.kick {
            Some(kick) => vec![kick.clone(), kick.clone()],
            None => Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.stop_worker();
        self.driver_features = 0;
        if let Err(e) = self.backend.set_offload(0) {
            log::warn!("{}: clearing tap offloads: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests;
