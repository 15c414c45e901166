// SPDX-License-Identifier: Apache-2.0
//! The vsock packet header (virtio 1.2 §5.10.6, `struct virtio_vsock_hdr`, 44 bytes,
//! little-endian) and moving packets between descriptor chains and host buffers.

use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress};

use crate::virtio::GuestMemory;

/// Bytes of a packet header.
pub const HDR_LEN: usize = 44;
/// The most payload one packet carries, either way (Linux's `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`);
/// a guest packet announcing more is refused.
pub const MAX_PKT_LEN: u32 = 64 << 10;

/// The host's CID (virtio 1.2 §5.10.4: 0, 1 and 2 are reserved, 2 is the host).
pub const HOST_CID: u64 = 2;

/// Socket types (`type`).
pub const TYPE_STREAM: u16 = 1;

/// Operations (`op`).
pub mod op {
    pub const REQUEST: u16 = 1;
    pub const RESPONSE: u16 = 2;
    pub const RST: u16 = 3;
    pub const SHUTDOWN: u16 = 4;
    pub const RW: u16 = 5;
    pub const CREDIT_UPDATE: u16 = 6;
    pub const CREDIT_REQUEST: u16 = 7;
}

/// `flags` of a `SHUTDOWN`: the sender will receive no more, send no more.
pub const SHUTDOWN_RCV: u32 = 1;
pub const SHUTDOWN_SEND: u32 = 2;

/// A packet header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

fn u32_at(b: &[u8; HDR_LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8; HDR_LEN], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}

impl Header {
    pub fn from_bytes(b: &[u8; HDR_LEN]) -> Self {
        Self {
            src_cid: u64_at(b, 0),
            dst_cid: u64_at(b, 8),
            src_port: u32_at(b, 16),
            dst_port: u32_at(b, 20),
            len: u32_at(b, 24),
            type_: u16::from_le_bytes([b[28], b[29]]),
            op: u16::from_le_bytes([b[30], b[31]]),
            flags: u32_at(b, 32),
            buf_alloc: u32_at(b, 36),
            fwd_cnt: u32_at(b, 40),
        }
    }

    pub fn to_bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// Why a chain could not be used.
#[derive(Debug, PartialEq, Eq)]
pub enum ChainError {
    /// A descriptor in the wrong direction (device-writable on tx, readable on rx).
    Direction,
    /// The chain is shorter than the header (tx: or than header plus `len`).
    Short { have: u64, need: u64 },
    /// A tx packet announcing more than [`MAX_PKT_LEN`] bytes.
    TooLong(u32),
    /// A buffer outside guest memory.
    Memory(String),
}

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainError::Direction => write!(f, "a descriptor points the wrong way"),
            ChainError::Short { have, need } => {
                write!(f, "{have} bytes of buffers, the packet needs {need}")
            }
            ChainError::TooLong(len) => {
                write!(f, "len {len} is more than the {MAX_PKT_LEN}-byte maximum")
            }
            ChainError::Memory(e) => write!(f, "{e}"),
        }
    }
}

/// The buffers of a chain, all in one direction.
fn buffers(
    chain: DescriptorChain<&GuestMemory>,
    writable: bool,
) -> Result<Vec<(GuestAddress, u64)>, ChainError> {
    let mut out = Vec::new();
    for d in chain {
        if d.is_write_only() != writable {
            return Err(ChainError::Direction);
        }
        out.push((d.addr(), u64::from(d.len())));
    }
    Ok(out)
}

/// Copy `into.len()` bytes from the buffers starting `skip` bytes in.
fn gather(
    mem: &GuestMemory,
    bufs: &[(GuestAddress, u64)],
    mut skip: u64,
    into: &mut [u8],
) -> Result<(), ChainError> {
    let mut done = 0usize;
    for &(addr, len) in bufs {
        if done == into.len() {
            break;
        }
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = ((len - skip) as usize).min(into.len() - done);
        let at = addr
            .checked_add(skip)
            .ok_or_else(|| ChainError::Memory("buffer address overflows".into()))?;
        mem.read_slice(&mut into[done..done + n], at)
            .map_err(|e| ChainError::Memory(e.to_string()))?;
        done += n;
        skip = 0;
    }
    Ok(())
}

/// Read a tx packet: its header and its `len` bytes of payload (bytes past them are
/// ignored).
pub fn read_tx(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
) -> Result<(Header, Vec<u8>), ChainError> {
    let bufs = buffers(chain, false)?;
    let have = bufs.iter().fold(0u64, |a, b| a.saturating_add(b.1));
    if have < HDR_LEN as u64 {
        return Err(ChainError::Short {
            have,
            need: HDR_LEN as u64,
        });
    }
    let mut raw = [0u8; HDR_LEN];
    gather(mem, &bufs, 0, &mut raw)?;
    let hdr = Header::from_bytes(&raw);
    if hdr.len > MAX_PKT_LEN {
        return Err(ChainError::TooLong(hdr.len));
    }
    let need = HDR_LEN as u64 + u64::from(hdr.len);
    if have < need {
        return Err(ChainError::Short { have, need });
    }
    let mut data = vec![0u8; hdr.len as usize];
    gather(mem, &bufs, HDR_LEN as u64, &mut data)?;
    Ok((hdr, data))
}

/// The device-writable buffers of an rx chain, checked to hold at least a header: walked
/// once, then asked for their payload room and written.
pub struct RxChain {
    bufs: Vec<(GuestAddress, u64)>,
    room: u64,
}

impl RxChain {
    pub fn new(chain: DescriptorChain<&GuestMemory>) -> Result<Self, ChainError> {
        let bufs = buffers(chain, true)?;
        let have = bufs.iter().fold(0u64, |a, b| a.saturating_add(b.1));
        let room = have.checked_sub(HDR_LEN as u64).ok_or(ChainError::Short {
            have,
            need: HDR_LEN as u64,
        })?;
        Ok(Self { bufs, room })
    }

    /// The payload bytes a packet in this chain can carry.
    pub fn room(&self) -> u64 {
        self.room
    }

    /// Write `hdr` and `data` (at most [`RxChain::room`] bytes); returns the bytes written.
    pub fn write(&self, mem: &GuestMemory, hdr: &Header, data: &[u8]) -> Result<u32, ChainError> {
        let head = hdr.to_bytes();
        let mut parts = [&head[..], data];
        let mut written = 0u32;
        for &(addr, len) in &self.bufs {
            let mut at = addr;
            let mut room = len;
            for part in parts.iter_mut() {
                if room == 0 {
                    break;
                }
                let n = (part.len() as u64).min(room) as usize;
                if n == 0 {
                    continue;
                }
                mem.write_slice(&part[..n], at)
                    .map_err(|e| ChainError::Memory(e.to_string()))?;
                *part = &part[n..];
                at = at
                    .checked_add(n as u64)
                    .ok_or_else(|| ChainError::Memory("buffer address overflows".into()))?;
                room -= n as u64;
                written += n as u32;
            }
        }
        if parts.iter().any(|p| !p.is_empty()) {
            return Err(ChainError::Short {
                have: u64::from(written),
                need: (HDR_LEN + data.len()) as u64,
            });
        }
        Ok(written)
    }
}
