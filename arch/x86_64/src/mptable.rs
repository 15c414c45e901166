// SPDX-License-Identifier: Apache-2.0
//! Intel MultiProcessor Specification 1.4 tables: how a guest without ACPI finds its CPUs,
//! the I/O APIC and the ISA interrupt routing.
//!
//! Built byte by byte in little-endian order so the result is the same on any host.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{IOAPIC_ADDR, LAPIC_ADDR};

const MPF_SIGNATURE: &[u8; 4] = b"_MP_";
const MPC_SIGNATURE: &[u8; 4] = b"PCMP";
const MP_SPEC_REV: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
/// Family 6 signature and the FPU + APIC feature bits, as the MP spec's processor entry has.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// Polarity and trigger "conforms to the bus" (ISA: active high, edge).
const IRQ_FLAGS_CONFORMING: u16 = 0;
/// ISA IRQs 0..=15 routed to the same I/O APIC pins.
const ISA_IRQS: u8 = 16;

/// Largest vCPU count whose APIC ids fit the MP table's 8-bit fields next to the I/O APIC id.
pub const MAX_CPUS: u32 = 254;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the MP table describes at most {MAX_CPUS} CPUs, not {0}")]
    TooManyCpus(u32),
    #[error("the MP table does not fit in guest memory at {0:#x}")]
    NoRoom(u64),
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b)))
}

/// Build the floating pointer followed by the configuration table, for a table placed at
/// guest address `addr`.
pub fn build(addr: u64, cpus: u32) -> Result<Vec<u8>, Error> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(Error::TooManyCpus(cpus));
    }
    let ioapic_id = cpus as u8; // first id after the CPUs' APIC ids 0..cpus
    let config_addr = u32::try_from(addr + 16).map_err(|_| Error::NoRoom(addr))?;

    let mut entries = Vec::new();
    for id in 0..cpus {
        let mut flags = CPU_ENABLED;
        if id == 0 {
            flags |= CPU_BOOTPROCESSOR;
        }
        entries.extend_from_slice(&[ENTRY_PROCESSOR, id as u8, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0u8; 8]);
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    for irq in 0..ISA_IRQS {
        entries.push(ENTRY_IO_INTERRUPT);
        entries.push(INT_TYPE_INT);
        entries.extend_from_slice(&IRQ_FLAGS_CONFORMING.to_le_bytes());
        entries.extend_from_slice(&[0, irq, ioapic_id, irq]);
    }
    // LINT0 of the BSP takes the 8259's ExtINT; LINT1 of every CPU is NMI.
    for (kind, dest_apic, lint) in [(INT_TYPE_EXTINT, 0u8, 0u8), (INT_TYPE_NMI, 0xff, 1)] {
        entries.push(ENTRY_LOCAL_INTERRUPT);
        entries.push(kind);
        entries.extend_from_slice(&IRQ_FLAGS_CONFORMING.to_le_bytes());
        entries.extend_from_slice(&[0, 0, dest_apic, lint]);
    }
    let entry_count = cpus as u16 + 1 + 1 + u16::from(ISA_IRQS) + 2;

    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(MPC_SIGNATURE);
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.push(MP_SPEC_REV);
    table.push(0); // checksum, below
    table.extend_from_slice(b"POLYVSR ");
    table.extend_from_slice(b"000000000000");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&entry_count.to_le_bytes());
    table.extend_from_slice(&(LAPIC_ADDR as u32).to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes()); // extended table length/checksum
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut mpf = Vec::with_capacity(16);
    mpf.extend_from_slice(MPF_SIGNATURE);
    mpf.extend_from_slice(&config_addr.to_le_bytes());
    mpf.extend_from_slice(&[1, MP_SPEC_REV, 0, 0, 0, 0, 0, 0]);
    mpf[10] = checksum(&mpf);

    mpf.extend_from_slice(&table);
    Ok(mpf)
}

/// Write the MP table for `cpus` CPUs at `addr`.
pub fn write<M: GuestMemoryBackend>(mem: &M, addr: u64, cpus: u32) -> Result<(), Error> {
    let bytes = build(addr, cpus)?;
    mem.write_slice(&bytes, GuestAddress(addr))
        .map_err(|_| Error::NoRoom(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn floating_pointer_and_table_check_out() {
        let t = build(0x9fc00, 4).unwrap();
        assert_eq!(&t[0..4], b"_MP_");
        assert_eq!(
            &t[4..8],
            &[0x10, 0xfc, 0x09, 0],
            "points right after itself"
        );
        assert_eq!(t[8], 1, "length in 16-byte units");
        assert_eq!(t[9], 4);
        assert_eq!(sum(&t[..16]), 0);

        let cfg = &t[16..];
        assert_eq!(&cfg[0..4], b"PCMP");
        let len = u16::from_le_bytes([cfg[4], cfg[5]]) as usize;
        assert_eq!(len, cfg.len());
        assert_eq!(sum(cfg), 0);
        let count = u16::from_le_bytes([cfg[34], cfg[35]]);
        assert_eq!(count, 4 + 1 + 1 + 16 + 2);
        assert_eq!(&cfg[36..40], &[0, 0, 0xe0, 0xfe], "LAPIC at 0xfee00000");
        // Length: header + 4 processors of 20 bytes + 20 entries of 8 bytes.
        assert_eq!(len, 44 + 4 * 20 + 20 * 8);
        assert!(
            build(0x9fc00, MAX_CPUS).unwrap().len() < 0x60400,
            "fits below 1 MiB"
        );
    }

    #[test]
    fn processor_entries_mark_the_bsp() {
        let t = build(0x9fc00, 3).unwrap();
        let procs = &t[16 + 44..];
        for id in 0..3usize {
            let e = &procs[id * 20..id * 20 + 20];
            assert_eq!(e[0], 0);
            assert_eq!(e[1], id as u8);
            assert_eq!(e[3], if id == 0 { 3 } else { 1 });
        }
        let ioapic = &procs[3 * 20 + 8..3 * 20 + 16];
        assert_eq!(ioapic[..4], [2, 3, 0x11, 1]);
        assert_eq!(ioapic[4..], [0, 0, 0xc0, 0xfe]);
    }

    #[test]
    fn cpu_limits() {
        assert_eq!(build(0x9fc00, 0), Err(Error::TooManyCpus(0)));
        assert_eq!(build(0x9fc00, 255), Err(Error::TooManyCpus(255)));
        assert!(build(0x9fc00, 254).is_ok());
    }
}
