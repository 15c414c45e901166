// SPDX-License-Identifier: Apache-2.0
//! Turning a descriptor chain into a virtio-blk request (virtio 1.2 §5.2.6), trusting
//! nothing in it.
//!
//! The layout every driver uses (Linux, the firmwares, FreeBSD) and the one accepted here:
//! the 16-byte header (`type`, `reserved`, `sector`, little-endian) in the first,
//! device-readable descriptor; the data in the descriptors between; the status byte the
//! last byte of the last descriptor, which must be device-writable. A chain that does not
//! end (a loop, a `next` past the table: virtio-queue stops walking it) or whose last
//! descriptor cannot take the status is dropped: returned with a used length of 0, as
//! there is nowhere to say what went wrong. Anything else that is wrong gets its status.

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress};

use super::super::GuestMemory;

/// Request types (`VIRTIO_BLK_T_*`).
pub mod kind {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
    pub const DISCARD: u32 = 11;
    pub const WRITE_ZEROES: u32 = 13;
}

/// Status values (`VIRTIO_BLK_S_*`).
pub mod status {
    pub const OK: u8 = 0;
    pub const IOERR: u8 = 1;
    pub const UNSUPP: u8 = 2;
}

/// Bytes of the request header.
pub const HEADER_LEN: u32 = 16;
/// Bytes of one discard/write-zeroes segment.
pub const SEGMENT_LEN: u64 = 16;
/// The most descriptors one chain is looked at (virtio-queue already bounds a chain by the
/// queue or indirect table size; this bounds what is kept of it).
pub const MAX_DESCRIPTORS: usize = 1024;

/// A guest buffer of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub addr: GuestAddress,
    pub len: u32,
    pub writable: bool,
}

/// A request whose header and status byte could be found.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: u32,
    pub sector: u64,
    /// The data buffers, in order.
    pub data: Vec<Buffer>,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

impl Request {
    /// Bytes of data, summed without overflow (a `u32` per descriptor, at most
    /// [`MAX_DESCRIPTORS`] of them).
    pub fn data_len(&self) -> u64 {
        self.data.iter().map(|b| u64::from(b.len)).sum()
    }
}

/// What a chain is.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Well-formed as far as its layout goes (the contents are checked when executed).
    Request(Request),
    /// Malformed, but with a status byte: answer `IOERR` there.
    Reject {
        status: GuestAddress,
        reason: &'static str,
    },
    /// No status byte to answer in: return the chain with nothing written.
    Drop { reason: &'static str },
}

/// Look at a chain's descriptors (as virtio-queue walked them, in order).
pub fn parse(mem: &GuestMemory, chain: impl IntoIterator<Item = Descriptor>) -> Parsed {
    let mut descs: Vec<Buffer> = Vec::new();
    let mut last_has_next = false;
    for d in chain {
        if descs.len() == MAX_DESCRIPTORS {
            return Parsed::Drop {
                reason: "more descriptors than a request may have",
            };
        }
        last_has_next = d.has_next();
        descs.push(Buffer {
            addr: d.addr(),
            len: d.len(),
            writable: d.is_write_only(),
        });
    }
    let Some(last) = descs.last().copied() else {
        return Parsed::Drop {
            reason: "empty chain",
        };
    };
    if last_has_next {
        return Parsed::Drop {
            reason: "the chain does not end (a loop or a next index past the table)",
        };
    }
    if !last.writable || last.len == 0 {
        return Parsed::Drop {
            reason: "no device-writable status byte at the end of the chain",
        };
    }
    let Some(status) = last.addr.0.checked_add(u64::from(last.len) - 1) else {
        return Parsed::Drop {
            reason: "the status descriptor wraps around the address space",
        };
    };
    let status = GuestAddress(status);
    if descs.len() < 2 {
        return Parsed::Reject {
            status,
            reason: "no header descriptor",
        };
    }
    let header = descs[0];
    if header.writable {
        return Parsed::Reject {
            status,
            reason: "the header descriptor is device-writable",
        };
    }
    if header.len < HEADER_LEN {
        return Parsed::Reject {
            status,
            reason: "the header descriptor is shorter than 16 bytes",
        };
    }
    let mut raw = [0u8; HEADER_LEN as usize];
    if mem.read_slice(&mut raw, header.addr).is_err() {
        return Parsed::Reject {
            status,
            reason: "the header is outside guest memory",
        };
    }
    let kind = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let mut sector = [0u8; 8];
    sector.copy_from_slice(&raw[8..16]);
    Parsed::Request(Request {
        kind,
        sector: u64::from_le_bytes(sector),
        data: descs[1..descs.len() - 1].to_vec(),
        status,
    })
}
