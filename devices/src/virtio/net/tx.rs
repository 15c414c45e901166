// SPDX-License-Identifier: Apache-2.0
//! Transmit: each chain of the transmit queue is one packet (the virtio-net header, then
//! the frame), gathered straight from guest memory into one `writev` on the tap.
//!
//! A chain is dropped (used with length 0, logged) when it has a device-writable
//! descriptor, a buffer outside guest memory, more than [`MAX_PACKET_LEN`] bytes, fewer
//! than a header and an Ethernet header, or when the tap refuses it (a malformed header);
//! the device goes on with the next one. A tap that cannot take a packet now
//! (`WouldBlock`, only when its send buffer was made small) drops it too, as a full NIC
//! queue would.

use virtio_queue::QueueT;
use vm_memory::{GuestMemoryBackend as _, VolatileSlice};

use super::handler::{budget_spent, NetQueues};
use super::{ETH_HLEN, HDR_LEN, MAX_PACKET_LEN};
use crate::virtio::GuestMemory;

/// Why a transmit chain is not sent.
fn gather<'m>(
    mem: &'m GuestMemory,
    chain: virtio_queue::DescriptorChain<&GuestMemory>,
) -> Result<Vec<VolatileSlice<'m, ()>>, String> {
    let mut slices = Vec::new();
    let mut total = 0usize;
    for desc in chain {
        if desc.is_write_only() {
            return Err("a device-writable descriptor in a transmit chain".into());
        }
        let len = desc.len() as usize;
        total = total.saturating_add(len);
        if total > MAX_PACKET_LEN {
            return Err(format!(
                "more than {MAX_PACKET_LEN} bytes (header and frame)"
            ));
        }
        for slice in mem.get_slices(desc.addr(), len) {
            slices.push(slice.map_err(|e| format!("buffer at {:#x}: {e}", desc.addr().0))?);
        }
    }
    if total < HDR_LEN + ETH_HLEN {
        return Err(format!(
            "{total} bytes, less than a header and an Ethernet header"
        ));
    }
    if slices.len() > tap::IOV_MAX {
        return Err(format!("{} buffers", slices.len()));
    }
    Ok(slices)
}

impl NetQueues {
    /// Send up to one pass's worth of packets; returns how many chains were used and
    /// whether more are pending.
    pub(super) fn serve_tx(&mut self) -> (usize, bool) {
        let mem = self.active.mem.clone();
        let mut used = 0;
        loop {
            if budget_spent(used) {
                return (used, true);
            }
            let Some(chain) = self.active.tx.pop_descriptor_chain(&mem) else {
                // With EVENT_IDX this writes `avail_event`; `true` means more arrived.
                return match self.active.tx.enable_notification(&mem) {
                    Ok(more) => (used, more && used > 0),
                    Err(e) => {
                        self.warn(format_args!("transmit queue: {e}"));
                        (used, false)
                    }
                };
            };
            let head = chain.head_index();
            match gather(&mem, chain) {
                Ok(slices) => {
                    if let Err(e) = self.backend.write_packet(&slices) {
                        self.warn(format_args!("packet {head} not sent: the tap says {e}"));
                    }
                }
                Err(why) => self.warn(format_args!("transmit chain {head} dropped: {why}")),
            }
            if let Err(e) = self.active.tx.add_used(&mem, head, 0) {
                self.warn(format_args!("transmit chain {head}: cannot return it: {e}"));
                return (used, false);
            }
            used += 1;
        }
    }
}
