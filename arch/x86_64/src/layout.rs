// SPDX-License-Identifier: Apache-2.0
//! Where the x86_64 backend puts things in guest physical memory.
//!
//! Low memory map (the tests' guest programs rely on it; keep `tests/` in step):
//!
//! | range               | what                                      |
//! |---------------------|-------------------------------------------|
//! | 0x500..0x520        | GDT (4 entries)                           |
//! | 0x520..0x528        | IDT (empty)                               |
//! | 0x6000..0x7000      | PVH `hvm_start_info`, module list, memmap |
//! | 0x7000..0x8000      | Linux zero page (`boot_params`)           |
//! | 0x8000..0x8ff0      | boot stack (grows down from 0x8ff0)       |
//! | 0x9000..0xc000      | identity page tables (PML4, PDPT, PD)     |
//! | 0x20000..0x30000    | kernel command line                       |
//! | 0x9fc00..0xa0000    | MP table (in the EBDA)                    |
//! | 0xa0000..0x100000   | legacy VGA/BIOS hole, not RAM in the e820 |
//! | 0xe0000..0xffff0    | ACPI tables, RSDP first (BIOS area)       |
//! | 0xffff0..0x100000   | reset vector F000:FFF0: resets through the FADT reset register |
//! | 1 MiB..             | kernel; initrd at the top of low RAM      |
//! | 0xc000_0000..4 GiB  | MMIO hole: boot timer at 0xc000_0000, ACPI GED 0xc000_1000, IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000 |
//! | 0xd000_0000..+8 * 0x200 | virtio-mmio slots (in the hole), GSI 16 + slot; DSDT `LNRO0005` |

use arch::{BusKind, DeviceKind, MemoryLayout, Platform, PlatformDevice};

pub const GDT_ADDR: u64 = 0x500;
pub const IDT_ADDR: u64 = 0x520;
pub const PVH_INFO_ADDR: u64 = 0x6000;
pub const PVH_MODLIST_ADDR: u64 = 0x6040;
pub const PVH_MEMMAP_ADDR: u64 = 0x6080;
/// Memmap entries that fit before the zero page (24 bytes each).
pub const PVH_MEMMAP_MAX_ENTRIES: usize = ((ZERO_PAGE_ADDR - PVH_MEMMAP_ADDR) / 24) as usize;
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
pub const PML4_ADDR: u64 = 0x9000;
pub const PDPT_ADDR: u64 = 0xa000;
pub const PD_ADDR: u64 = 0xb000;
pub const CMDLINE_ADDR: u64 = 0x20000;
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
pub const EBDA_START: u64 = 0x9fc00;
pub const MPTABLE_ADDR: u64 = EBDA_START;
pub const HIGH_MEMORY_START: u64 = 0x10_0000;
/// The BIOS area, where a guest without EFI scans for the RSDP (on 16-byte boundaries);
/// the ACPI tables follow it, up to the reset vector's code (`crate::reset_vector`) in the
/// last 16 bytes below 1 MiB. Reserved in the e820, used by nothing else.
pub const ACPI_TABLES_START: u64 = 0xe_0000;
pub const ACPI_TABLES_END: u64 = crate::reset_vector::RESET_VECTOR;
pub const RSDP_ADDR: u64 = ACPI_TABLES_START;
/// First of the hardware-reduced ACPI registers (`devices::legacy::acpi_pm`): sleep
/// control 0x600, sleep status 0x601, reset 0x602.
pub const ACPI_PM_PORT: u16 = 0x600;

pub const MMIO_HOLE_START: u64 = 0xc000_0000;
pub const MMIO_HOLE_SIZE: u64 = (1 << 32) - MMIO_HOLE_START;
/// Boot timer (one page): guests write 123 here when init starts.
pub const BOOT_TIMER_ADDR: u64 = MMIO_HOLE_START;
/// The ACPI Generic Event Device's event register (the power button), on ISA IRQ / GSI 5.
pub const ACPI_GED_ADDR: u64 = MMIO_HOLE_START + 0x1000;
pub const ACPI_GED_GSI: u32 = 5;
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// virtio-mmio devices: slot `n` at `VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SIZE`, I/O APIC
/// pin (GSI) `VIRTIO_MMIO_FIRST_GSI + n`. Pins 16..=23 are the I/O APIC's own: no ISA
/// device, MADT override or legacy PIC input shares them, so the DSDT's interrupt
/// descriptor (edge, active high: the line is an irqfd, which pulses) alone decides.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
pub const VIRTIO_MMIO_SIZE: u64 = devices::virtio::mmio::MMIO_WINDOW;
pub const VIRTIO_MMIO_SLOTS: u32 = 8;
pub const VIRTIO_MMIO_FIRST_GSI: u32 = 16;
/// KVM needs three pages for the VMX TSS and one for the identity map, inside the hole.
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

/// COM1: I/O port 0x3f8, ISA IRQ 4. i8042: ports 0x60..=0x64, ISA IRQ 1.
const COM1: PlatformDevice = PlatformDevice {
    kind: DeviceKind::Serial16550,
    bus: BusKind::Pio,
    base: 0x3f8,
    len: 8,
    irq: Some(4),
};
const I8042: PlatformDevice = PlatformDevice {
    kind: DeviceKind::I8042,
    bus: BusKind::Pio,
    base: 0x60,
    len: 5,
    irq: Some(1),
};
/// CMOS RTC/NVRAM: index port 0x70, data port 0x71.
const CMOS: PlatformDevice = PlatformDevice {
    kind: DeviceKind::Cmos,
    bus: BusKind::Pio,
    base: 0x70,
    len: 2,
    irq: None,
};

/// The hardware-reduced ACPI sleep control/status and reset registers the FADT names.
const ACPI_PM: PlatformDevice = PlatformDevice {
    kind: DeviceKind::AcpiPm,
    bus: BusKind::Pio,
    base: ACPI_PM_PORT as u64,
    len: devices::legacy::acpi_pm::WINDOW,
    irq: None,
};

/// The reset control register Linux's `reboot=p`/`reboot=q` write.
const RESET_CONTROL: PlatformDevice = PlatformDevice {
    kind: DeviceKind::ResetControl,
    bus: BusKind::Pio,
    base: devices::legacy::reset_control::PORT,
    len: devices::legacy::reset_control::WINDOW,
    irq: None,
};

/// The ACPI GED: the power button SIGTERM presses (`devices::legacy::acpi_ged`).
const ACPI_GED: PlatformDevice = PlatformDevice {
    kind: DeviceKind::AcpiGed,
    bus: BusKind::Mmio,
    base: ACPI_GED_ADDR,
    len: devices::legacy::acpi_ged::GED_WINDOW,
    irq: Some(ACPI_GED_GSI),
};

/// The boot timer: first page of the MMIO hole.
const BOOT_TIMER: PlatformDevice = PlatformDevice {
    kind: DeviceKind::BootTimer,
    bus: BusKind::Mmio,
    base: BOOT_TIMER_ADDR,
    len: devices::boot_timer::BOOT_TIMER_WINDOW,
    irq: None,
};

/// The pvpanic register at QEMU's default port (`devices::legacy::pvpanic`; the DSDT's
/// `QEMU0001`).
pub const PVPANIC: PlatformDevice = PlatformDevice {
    kind: DeviceKind::PvPanic,
    bus: BusKind::Pio,
    base: 0x505,
    len: 1,
    irq: None,
};

/// The fixed devices of an x86 guest (the ACPI tables describe them: the DSDT the port
/// devices and the GED, the FADT the PM registers).
pub fn platform() -> Platform {
    Platform::new(vec![
        COM1,
        I8042,
        BOOT_TIMER,
        CMOS,
        ACPI_PM,
        RESET_CONTROL,
        ACPI_GED,
        PVPANIC,
    ])
}

/// Slot `n` of the virtio-mmio window, or `None` past the last slot.
pub fn virtio_mmio_slot(n: u32) -> Option<PlatformDevice> {
    (n < VIRTIO_MMIO_SLOTS).then(|| PlatformDevice {
        kind: DeviceKind::VirtioMmio,
        bus: BusKind::Mmio,
        base: VIRTIO_MMIO_BASE + u64::from(n) * VIRTIO_MMIO_SIZE,
        len: VIRTIO_MMIO_SIZE,
        irq: Some(VIRTIO_MMIO_FIRST_GSI + n),
    })
}

/// The smallest guest that can hold the boot structures, a kernel and its stack.
pub const MIN_MEMORY: u64 = 4 << 20;

/// Guest RAM from 0, split around the 32-bit MMIO hole.
pub fn memory_layout(memory_bytes: u64) -> Option<MemoryLayout> {
    MemoryLayout::split_around_hole(0, memory_bytes, MMIO_HOLE_START, MMIO_HOLE_SIZE)
}

/// Type of an e820 / PVH memmap entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Type {
    Ram = 1,
    Reserved = 2,
}

/// One entry of the memory map the guest firmware interface reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: E820Type,
}

/// The memory map a guest sees: conventional memory below the EBDA, the EBDA and BIOS
/// area reserved, then RAM from 1 MiB in each RAM range.
pub fn e820_map(layout: &MemoryLayout) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820Type::Ram,
        },
        E820Entry {
            addr: EBDA_START,
            size: HIGH_MEMORY_START - EBDA_START,
            kind: E820Type::Reserved,
        },
    ];
    for r in &layout.ram {
        let start = r.start.max(HIGH_MEMORY_START);
        if r.end() > start {
            map.push(E820Entry {
                addr: start,
                size: r.end() - start,
                kind: E820Type::Ram,
            });
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_areas_do_not_overlap() {
        let areas = [
            (GDT_ADDR, 0x20),
            (IDT_ADDR, 8),
            (PVH_INFO_ADDR, 0x40),
            (PVH_MODLIST_ADDR, 0x40),
            (PVH_MEMMAP_ADDR, ZERO_PAGE_ADDR - PVH_MEMMAP_ADDR),
            (ZERO_PAGE_ADDR, 0x1000),
            (0x8000, 0x1000),
            (PML4_ADDR, 0x1000),
            (PDPT_ADDR, 0x1000),
            (PD_ADDR, 0x1000),
            (CMDLINE_ADDR, CMDLINE_MAX_SIZE as u64),
            (MPTABLE_ADDR, 0x400),
            (ACPI_TABLES_START, ACPI_TABLES_END - ACPI_TABLES_START),
            (
                crate::reset_vector::RESET_VECTOR,
                crate::reset_vector::RESET_VECTOR_LEN as u64,
            ),
        ];
        for (i, a) in areas.iter().enumerate() {
            assert!(a.0 + a.1 <= HIGH_MEMORY_START);
            for b in &areas[i + 1..] {
                assert!(a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0, "{a:x?} vs {b:x?}");
            }
        }
        const { assert!(BOOT_STACK_POINTER < PML4_ADDR) };
        // The virtio window sits in the MMIO hole, clear of the boot timer's page and the
        // I/O APIC, LAPIC and KVM's TSS pages; its GSIs are I/O APIC pins (24 in KVM's).
        let last = virtio_mmio_slot(VIRTIO_MMIO_SLOTS - 1).unwrap();
        assert!(virtio_mmio_slot(VIRTIO_MMIO_SLOTS).is_none());
        const { assert!(VIRTIO_MMIO_BASE >= BOOT_TIMER_ADDR + 0x1000) };
        assert!(last.base + last.len <= KVM_IDENTITY_MAP_ADDR);
        assert!(last.base + last.len <= IOAPIC_ADDR);
        assert_eq!(last.irq, Some(23));
        assert_eq!(virtio_mmio_slot(1).unwrap().base, 0xd000_0200);
        assert_eq!(PVH_MEMMAP_MAX_ENTRIES, 165);
    }

    #[test]
    fn e820_for_small_and_big_guests() {
        let small = e820_map(&memory_layout(128 << 20).unwrap());
        assert_eq!(small.len(), 3);
        assert_eq!(small[0].size, 0x9fc00);
        assert_eq!(small[1].kind, E820Type::Reserved);
        assert_eq!(small[2].addr, 0x10_0000);
        assert_eq!(small[2].size, (128 << 20) - 0x10_0000);

        let big = e820_map(&memory_layout(6 << 30).unwrap());
        assert_eq!(big.len(), 4);
        assert_eq!(big[2].addr + big[2].size, MMIO_HOLE_START);
        assert_eq!(big[3].addr, 1 << 32);
        assert_eq!(big[3].size, (6 << 30) - MMIO_HOLE_START);
    }
}
