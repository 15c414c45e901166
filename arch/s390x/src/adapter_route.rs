// SPDX-License-Identifier: Apache-2.0
//! The KVM adapter route (`KVM_IRQ_ROUTING_S390_ADAPTER`) for one virtio-ccw queue, from
//! the indicators its driver named with SET_IND_ADAPTER. Portable, so the bit arithmetic is
//! tested on every target; the backend hands the entries to KVM.

use devices::virtio::ccw::AdapterIndicators;

use crate::kvm::bindings::{
    KvmIrqRoutingEntry, KvmIrqRoutingS390Adapter, KVM_IRQ_ROUTING_S390_ADAPTER,
};

/// The summary indicator bit virtio-ccw sets: bit 7 of the byte (0x01), as QEMU routes it.
pub const SUMMARY_BIT: u32 = 7;

/// The route entry that makes KVM set queue `index`'s bit as `a` names it (the byte
/// holding the bit as the address, so the bit never leaves the page KVM maps).
pub fn route(gsi: u32, a: &AdapterIndicators, index: u16) -> Option<KvmIrqRoutingEntry> {
    let bit = a.first_bit.checked_add(u64::from(index))?;
    Some(KvmIrqRoutingEntry {
        gsi,
        type_: KVM_IRQ_ROUTING_S390_ADAPTER,
        flags: 0,
        pad: 0,
        adapter: KvmIrqRoutingS390Adapter {
            ind_addr: a.area.checked_add(bit / 8)?,
            summary_addr: a.summary,
            ind_offset: bit % 8,
            summary_offset: SUMMARY_BIT,
            adapter_id: u32::from(a.isc),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With `swap` (bits numbered from the most significant one) KVM sets, in the page of
    /// `addr`, MSB-0 bit `offset + (addr % 4096) * 8`: byte `addr`, mask `0x80 >> offset`.
    fn kvm_sets(addr: u64, offset: u64) -> (u64, u8) {
        let bit = offset + (addr % 4096) * 8;
        (addr - addr % 4096 + bit / 8, 0x80 >> (bit % 8))
    }

    #[test]
    fn routes_set_the_bits_the_device_would_set() {
        let a = AdapterIndicators {
            summary: 0x5003,
            area: 0x6ff0,
            first_bit: 125,
            isc: 3,
        };
        for index in [0u16, 1, 2, 3, 200] {
            let e = route(9, &a, index).unwrap();
            assert_eq!((e.gsi, e.type_, e.adapter.adapter_id), (9, 3, 3));
            let r = e.adapter;
            assert_eq!(
                Some(kvm_sets(r.ind_addr, r.ind_offset)),
                a.queue_bit(index),
                "queue {index}"
            );
            assert_eq!(
                kvm_sets(r.summary_addr, r.summary_offset.into()),
                (0x5003, devices::virtio::ccw::SUMMARY_SET)
            );
        }
        let far = AdapterIndicators {
            first_bit: u64::MAX,
            ..a
        };
        assert_eq!(route(0, &far, 1), None);
    }
}
