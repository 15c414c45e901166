// SPDX-License-Identifier: Apache-2.0
//! Receive: one packet at a time from the tap into a buffer of [`MAX_PACKET_LEN`] bytes,
//! then into the driver's receive buffers: one chain per packet, or with `MRG_RXBUF` as
//! many as it takes (their count goes into the header's `num_buffers`, and they reach the
//! used ring together, in order, once the whole packet is in).
//!
//! A packet that finds no (or not enough) buffers is held, with the chains it already
//! fills, and the worker stops waiting on the tap ([`RxState::waiting_for_buffers`]): the
//! next receive-queue notify (with `EVENT_IDX`, `avail_event` asks for one as soon as a
//! buffer is added) resumes it. Without `MRG_RXBUF` a packet larger than the chain it gets
//! is dropped and the chain kept for the next one. A chain with a device-readable
//! descriptor, a buffer outside guest memory or no room is used with length 0 and counted
//! against the pass like a packet. A packet whose header asks for an offload the driver
//! did not take (queued in the tap while an earlier driver had them) is dropped.

use std::io;

use virtio_queue::QueueT;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend as _};

use super::handler::{budget_spent, NetQueues};
use super::{net_features, ETH_HLEN, HDR_LEN, MAX_PACKET_LEN, QUEUE_SIZE};
use crate::virtio::GuestMemory;

/// Offset of `num_buffers` (le16) in the header.
const NUM_BUFFERS: usize = 10;

/// The receive side's state between passes.
pub struct RxState {
    buf: Vec<u8>,
    /// Length of the packet in `buf` that waits for buffers.
    held: Option<usize>,
    /// Chains the held packet already fills: head and bytes.
    chains: Vec<(u16, u32)>,
    /// Bytes of the held packet already copied into `chains`.
    copied: usize,
    /// Where the packet's two `num_buffers` bytes landed in guest memory.
    num_buffers_at: [Option<GuestAddress>; 2],
    /// The tap may have packets (cleared when a read would block).
    readable: bool,
    /// The tap reported an error or hang-up: no more reading.
    gone: bool,
}

/// What one step of placing the held packet came to.
enum Step {
    /// The packet is in the used ring.
    Delivered,
    /// The packet was dropped (it can never fit) or a garbage chain was used up.
    Consumed,
    /// The driver has no more buffers: wait for its notify.
    NoBuffers,
}

impl RxState {
    pub(super) fn new() -> Self {
        Self {
            buf: vec![0; MAX_PACKET_LEN],
            held: None,
            chains: Vec::new(),
            copied: 0,
            num_buffers_at: [None; 2],
            readable: true,
            gone: false,
        }
    }

    /// A packet waits for the driver's buffers (so the tap is not read).
    pub fn waiting_for_buffers(&self) -> bool {
        self.held.is_some()
    }

    pub(super) fn tap_readable(&mut self) {
        self.readable = true;
    }

    pub(super) fn tap_gone(&mut self) {
        self.gone = true;
    }

    fn hold(&mut self, len: usize, features: u64) {
        if features & net_features::GUEST_CSUM == 0 {
            // No checksum flags for a driver that did not ask for them (virtio 1.2
            // §5.1.6.4.1); the tap gives whole checksums then.
            self.buf[0] = 0;
        }
        self.buf[NUM_BUFFERS..NUM_BUFFERS + 2].copy_from_slice(&1u16.to_le_bytes());
        self.held = Some(len);
        self.chains.clear();
        self.copied = 0;
        self.num_buffers_at = [None; 2];
    }

    fn release(&mut self) {
        self.held = None;
        self.chains.clear();
        self.copied = 0;
    }

    /// Copy what fits of the held packet into `segments` (checked to be in guest memory);
    /// returns the bytes copied.
    fn fill(&mut self, mem: &GuestMemory, len: usize, segments: &[(GuestAddress, usize)]) -> u32 {
        let start = self.copied;
        for &(addr, room) in segments {
            let n = room.min(len - self.copied);
            if n == 0 {
                break;
            }
            for (i, at) in self.num_buffers_at.iter_mut().enumerate() {
                let offset = NUM_BUFFERS + i;
                if (self.copied..self.copied + n).contains(&offset) {
                    *at = addr.checked_add((offset - self.copied) as u64);
                }
            }
            // In guest memory (checked when the chain was taken): cannot fail.
            let _ = mem.write_slice(&self.buf[self.copied..self.copied + n], addr);
            self.copied += n;
        }
        // At most MAX_PACKET_LEN.
        (self.copied - start) as u32
    }
}

/// `NEEDS_CSUM` in the header's flags.
const F_NEEDS_CSUM: u8 = 1;
/// `gso_type` values (virtio 1.2 §5.1.6), without the ECN bit (0x80).
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;

/// Whether the driver took what the header of the packet in `buf` asks of it: a partial
/// checksum needs `GUEST_CSUM`, a TCP segment `GUEST_TSO4/6`; anything else (UDP, ECN) was
/// never offered.
fn offloads_taken(buf: &[u8], features: u64) -> bool {
    use net_features::*;
    let csum_ok = buf[0] & F_NEEDS_CSUM == 0 || features & GUEST_CSUM != 0;
    let gso_ok = match buf[1] {
        GSO_NONE => true,
        GSO_TCPV4 => features & GUEST_TSO4 != 0,
        GSO_TCPV6 => features & GUEST_TSO6 != 0,
        _ => false,
    };
    csum_ok && gso_ok
}

/// The device-writable buffers of a receive chain and their total size (capped at
/// [`MAX_PACKET_LEN`]); why the chain is garbage otherwise.
fn writable_segments(
    mem: &GuestMemory,
    chain: virtio_queue::DescriptorChain<&GuestMemory>,
) -> Result<(Vec<(GuestAddress, usize)>, usize), String> {
    let mut segments = Vec::new();
    let mut room = 0usize;
    for desc in chain {
        if !desc.is_write_only() {
            return Err("a device-readable descriptor in a receive chain".into());
        }
        let len = (desc.len() as usize).min(MAX_PACKET_LEN - room);
        if !mem.check_range(desc.addr(), len) {
            return Err(format!(
                "buffer at {:#x} (+{}) is outside guest memory",
                desc.addr().0,
                desc.len()
            ));
        }
        if len > 0 {
            segments.push((desc.addr(), len));
            room += len;
        }
    }
    if room == 0 {
        return Err("no room".into());
    }
    Ok((segments, room))
}

impl NetQueues {
    /// Move up to one pass's worth of packets from the tap to the driver; returns how many
    /// were delivered and whether more are pending now.
    pub(super) fn serve_rx(&mut self) -> (usize, bool) {
        let mem = self.active.mem.clone();
        let mut delivered = 0;
        let mut steps = 0;
        loop {
            if budget_spent(steps) {
                return (delivered, true);
            }
            if self.rx.held.is_none() {
                if !self.rx.readable || self.rx.gone {
                    return (delivered, false);
                }
                match self.backend.read_packet(&mut self.rx.buf) {
                    Ok(n) if n < HDR_LEN + ETH_HLEN => {
                        self.warn(format_args!("a {n}-byte packet from the tap, dropped"));
                        steps += 1;
                        continue;
                    }
                    Ok(_) if !offloads_taken(&self.rx.buf, self.features) => {
                        // Queued in the tap while an earlier driver had taken offloads.
                        self.warn(format_args!(
                            "a packet from the tap needs offloads the driver did not take; dropped"
                        ));
                        steps += 1;
                        continue;
                    }
                    Ok(n) => self.rx.hold(n, self.features),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.rx.readable = false;
                        return (delivered, false);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        steps += 1;
                        continue;
                    }
                    Err(e) => {
                        self.warn(format_args!("reading the tap: {e}"));
                        self.rx.readable = false;
                        return (delivered, false);
                    }
                }
            }
            match self.place(&mem) {
                Step::Delivered => {
                    delivered += 1;
                    steps += 1;
                }
                Step::Consumed => steps += 1,
                Step::NoBuffers => return (delivered, false),
            }
        }
    }

    /// Put the held packet into the driver's buffers, as far as they go.
    fn place(&mut self, mem: &GuestMemory) -> Step {
        let Some(len) = self.rx.held else {
            return Step::Consumed;
        };
        let mergeable = self.features & net_features::MRG_RXBUF != 0;
        let mut asked = false;
        loop {
            if self.rx.copied == len {
                return self.deliver(mem);
            }
            if self.rx.chains.len() >= usize::from(QUEUE_SIZE) {
                self.warn(format_args!(
                    "a {len}-byte packet does not fit a whole queue of receive buffers; dropped"
                ));
                for (head, _) in std::mem::take(&mut self.rx.chains) {
                    let _ = self.active.rx.add_used(mem, head, 0);
                }
                self.rx.release();
                return Step::Consumed;
            }
            let Some(chain) = self.active.rx.pop_descriptor_chain(mem) else {
                if asked {
                    return Step::NoBuffers;
                }
                asked = true;
                // With EVENT_IDX this sets `avail_event` so the next buffer is notified;
                // `true`: buffers arrived meanwhile, look again (once).
                match self.active.rx.enable_notification(mem) {
                    Ok(true) => continue,
                    Ok(false) => return Step::NoBuffers,
                    Err(e) => {
                        self.warn(format_args!("receive queue: {e}"));
                        return Step::NoBuffers;
                    }
                }
            };
            let head = chain.head_index();
            let (segments, room) = match writable_segments(mem, chain) {
                Ok(s) => s,
                Err(why) => {
                    self.warn(format_args!("receive chain {head} returned unused: {why}"));
                    if let Err(e) = self.active.rx.add_used(mem, head, 0) {
                        self.warn(format_args!("receive chain {head}: {e}"));
                    }
                    return Step::Consumed;
                }
            };
            if !mergeable && room < len {
                self.warn(format_args!(
                    "a {len}-byte packet does not fit receive chain {head} ({room} bytes) \
                     and MRG_RXBUF is off; dropped"
                ));
                // The chain stays available for the next packet.
                let next = self.active.rx.next_avail();
                self.active.rx.set_next_avail(next.wrapping_sub(1));
                self.rx.release();
                return Step::Consumed;
            }
            let n = self.rx.fill(mem, len, &segments);
            self.rx.chains.push((head, n));
        }
    }

    /// The whole held packet is in its chains: set `num_buffers`, return them in order.
    fn deliver(&mut self, mem: &GuestMemory) -> Step {
        // At most QUEUE_SIZE chains.
        let count = (self.rx.chains.len() as u16).to_le_bytes();
        for (at, byte) in self.rx.num_buffers_at.into_iter().zip(count) {
            if let Some(at) = at {
                let _ = mem.write_obj(byte, at);
            }
        }
        for (head, n) in std::mem::take(&mut self.rx.chains) {
            if let Err(e) = self.active.rx.add_used(mem, head, n) {
                self.warn(format_args!("receive chain {head}: cannot return it: {e}"));
            }
        }
        self.rx.release();
        Step::Delivered
    }
}
