// SPDX-License-Identifier: Apache-2.0
//! What the fuzz targets share: guest memory filled from the input, interrupt lines and
//! sinks that only count, and the virtio devices with test doubles for their host side
//! (a temp-file disk image, a socket-pair tap, a vsock listener in a temp directory whose
//! host connections the input opens and writes to).

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

use arbitrary::Arbitrary;
use devices::css::{AccessFault, IoInterrupt, IoInterruptSink, OperandMemory};
use devices::virtio::block::{BlockOptions, DiskImage, ImageOptions};
use devices::virtio::net::socket_tap::socket_tap;
use devices::virtio::{Block, GuestMemory, Net, Rng, VirtioDevice, Vsock};
use devices::InterruptLine;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::tempdir::TempDir;

/// Guest RAM of every virtio target: 256 KiB at 0 (small: it is allocated per input).
pub const MEM_SIZE: u64 = 256 << 10;

pub fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).expect("guest memory")
}

/// Bytes the input puts into guest memory (rings, descriptors, buffers, CCWs, SCCBs);
/// the address wraps into RAM, the part past its end is dropped.
#[derive(Arbitrary, Debug)]
pub struct MemWrite {
    pub addr: u32,
    pub bytes: Vec<u8>,
}

impl MemWrite {
    pub fn apply(&self, mem: &GuestMemory) {
        let at = u64::from(self.addr) % MEM_SIZE;
        let n = self.bytes.len().min((MEM_SIZE - at) as usize);
        let _ = mem.write_slice(&self.bytes[..n], GuestAddress(at));
    }
}

/// One queue a driver sets up: a size that is a power of two more often than not, ring
/// addresses that are mostly in RAM and aligned (the fuzzer still gets the odd ones).
#[derive(Arbitrary, Debug)]
pub struct QueueSetup {
    size_log2: u8,
    desc: u16,
    avail: u16,
    used: u16,
    /// Descriptors written into the table, from index 0, with their buffers' contents.
    descs: Vec<Desc>,
    /// Heads made available (the available ring's entries, in order).
    heads: Vec<u16>,
}

/// A split-ring descriptor and the bytes its buffer holds.
#[derive(Arbitrary, Debug)]
pub struct Desc {
    /// Buffer address in 16-byte units (mostly in RAM).
    addr: u16,
    len: u16,
    /// NEXT (1), WRITE (2), INDIRECT (4).
    flags: u8,
    next: u8,
    data: Vec<u8>,
}

impl QueueSetup {
    /// 1..=512 (512 is past every device's maximum).
    pub fn size(&self) -> u16 {
        1 << (self.size_log2 % 10)
    }
    pub fn desc(&self) -> u64 {
        (u64::from(self.desc) << 4) % MEM_SIZE
    }
    pub fn avail(&self) -> u64 {
        (u64::from(self.avail) << 1) % MEM_SIZE
    }
    pub fn used(&self) -> u64 {
        (u64::from(self.used) << 2) % MEM_SIZE
    }

    /// Write the descriptors, their buffers and the available ring (little-endian, as a
    /// modern driver does) into `mem`.
    pub fn fill(&self, mem: &GuestMemory) {
        let size = u64::from(self.size());
        for (i, d) in self.descs.iter().take(self.size().into()).enumerate() {
            let addr = (u64::from(d.addr) << 4) % MEM_SIZE;
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&addr.to_le_bytes());
            b[8..12].copy_from_slice(&u32::from(d.len).to_le_bytes());
            b[12..14].copy_from_slice(&u16::from(d.flags & 7).to_le_bytes());
            b[14..16].copy_from_slice(&(u16::from(d.next) % self.size()).to_le_bytes());
            let _ = mem.write_slice(&b, GuestAddress(self.desc() + 16 * i as u64));
            MemWrite {
                addr: addr as u32,
                bytes: d.data.clone(),
            }
            .apply(mem);
        }
        let heads = self.heads.len().min(usize::from(self.size()));
        for (i, h) in self.heads.iter().take(heads).enumerate() {
            let at = self.avail() + 4 + 2 * (i as u64 % size);
            let _ = mem.write_slice(&(h % self.size()).to_le_bytes(), GuestAddress(at));
        }
        let _ = mem.write_slice(&0u16.to_le_bytes(), GuestAddress(self.avail()));
        let _ = mem.write_slice(
            &(heads as u16).to_le_bytes(),
            GuestAddress(self.avail() + 2),
        );
    }
}

/// Driver features as the input offers them, with `VERSION_1` (bit 32) unless the input's
/// top bit says to leave it out.
pub fn driver_features(raw: u64) -> u64 {
    if raw >> 63 != 0 {
        raw & !(1 << 63)
    } else {
        raw | 1 << 32
    }
}

/// An interrupt line that goes nowhere.
pub struct NullLine;

impl InterruptLine for NullLine {
    fn trigger(&self) -> io::Result<()> {
        Ok(())
    }
}

/// An I/O-interrupt sink that drops them.
pub struct NullSink;

impl IoInterruptSink for NullSink {
    fn inject(&self, _irq: IoInterrupt) {}
    fn channel_report_pending(&self) {}
}

/// Instruction operands at absolute addresses (no DAT, no prefixing).
pub struct FlatOperands<'a>(pub &'a GuestMemory);

impl OperandMemory for FlatOperands<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), AccessFault> {
        self.0
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| AccessFault)
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessFault> {
        self.0
            .write_slice(data, GuestAddress(addr))
            .map_err(|_| AccessFault)
    }
}

/// A fixed entropy source, so a run repeats.
struct Pattern(u8);

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for b in buf.iter_mut() {
            self.0 = self.0.wrapping_mul(31).wrapping_add(7);
            *b = self.0;
        }
        Ok(buf.len())
    }
}

/// Which virtio device a target drives.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Kind {
    Rng,
    Block { readonly: bool },
    Net,
    Vsock,
}

/// A virtio device and its host side.
pub struct Device {
    pub device: Box<dyn VirtioDevice>,
    pub host: Host,
}

/// The host side of a device: keep it as long as the device runs.
pub struct Host {
    /// The host's end of the net device's socket pair.
    net: Option<UnixDatagram>,
    /// The vsock device's listening socket, and the host connections made to it.
    vsock: Option<PathBuf>,
    vsock_conns: Vec<UnixStream>,
    _dir: Option<TempDir>,
}

/// Host connections one input may open to the vsock socket (below the listener's backlog,
/// so a connect the worker has not accepted yet never blocks).
pub const MAX_HOST_CONNS: usize = 16;

/// The disk image's size: 64 KiB of zeros, new for every input.
pub const DISK_BYTES: u64 = 64 << 10;

impl Device {
    pub fn new(kind: Kind) -> Self {
        match kind {
            Kind::Rng => Self {
                device: Box::new(Rng::with_source(Box::new(Pattern(1)))),
                host: Host::new(None, None, None),
            },
            Kind::Block { readonly } => {
                let dir = TempDir::new().expect("temp dir");
                let path = dir.as_path().join("disk.img");
                std::fs::write(&path, vec![0u8; DISK_BYTES as usize]).expect("disk image");
                let image = DiskImage::open(
                    &path,
                    &ImageOptions {
                        readonly,
                        direct: false,
                    },
                )
                .expect("disk image");
                let options = BlockOptions {
                    serial: b"fuzz".to_vec(),
                    name: "virtio-blk fuzz".into(),
                    block_device: false,
                };
                Self {
                    device: Box::new(Block::new(Arc::new(image), options)),
                    host: Host::new(None, None, Some(dir)),
                }
            }
            Kind::Net => {
                let (tap, host) = socket_tap().expect("socket pair");
                Self {
                    device: Box::new(Net::new(
                        tap,
                        [0x52, 0x54, 0, 0x12, 0x34, 0x56],
                        "fuzz".into(),
                    )),
                    host: Host::new(Some(host), None, None),
                }
            }
            Kind::Vsock => {
                let dir = TempDir::new().expect("temp dir");
                let path = dir.as_path().join("vsock.sock");
                let listener = Arc::new(UnixListener::bind(&path).expect("vsock listener"));
                let device =
                    Vsock::new(3, listener, path.clone(), "vsock fuzz".into()).expect("vsock");
                Self {
                    device: Box::new(device),
                    host: Host::new(None, Some(path), Some(dir)),
                }
            }
        }
    }
}

impl Host {
    fn new(net: Option<UnixDatagram>, vsock: Option<PathBuf>, dir: Option<TempDir>) -> Self {
        Self {
            net,
            vsock,
            vsock_conns: Vec::new(),
            _dir: dir,
        }
    }

    /// The host sends the guest a packet (net: what a tap would deliver; vsock: bytes on
    /// the newest host connection, after its `CONNECT` line).
    pub fn send(&mut self, packet: &[u8]) {
        if let Some(net) = &self.net {
            let _ = net.send(packet);
        }
        if let Some(conn) = self.vsock_conns.last_mut() {
            let _ = conn.write(packet);
        }
    }

    /// vsock: a host process connects to the device's socket and writes `bytes` (a
    /// `CONNECT <port>\n` line, or whatever the input makes of it, and what follows). At
    /// most [`MAX_HOST_CONNS`] per input; nothing for the other devices.
    pub fn vsock_connect(&mut self, bytes: &[u8]) {
        let Some(path) = &self.vsock else { return };
        if self.vsock_conns.len() >= MAX_HOST_CONNS {
            return;
        }
        let Ok(mut conn) = UnixStream::connect(path) else {
            return;
        };
        // Never block the input on a full socket buffer.
        let _ = conn.set_nonblocking(true);
        let _ = conn.write(bytes);
        self.vsock_conns.push(conn);
    }

    /// vsock: the host process of connection `index` (modulo those open) goes away.
    pub fn vsock_close(&mut self, index: u8) {
        if !self.vsock_conns.is_empty() {
            let i = usize::from(index) % self.vsock_conns.len();
            self.vsock_conns.remove(i);
        }
    }
}
