// SPDX-License-Identifier: Apache-2.0
//! Where the aarch64 backend puts things in guest physical memory.
//!
//! Devices live below 1 GiB, RAM starts at 1 GiB (as in crosvm, Firecracker and QEMU's
//! `virt` machine, whose device addresses these follow where it has the same device):
//!
//! | range                        | what                                              |
//! |------------------------------|---------------------------------------------------|
//! | 0x0800_0000..0x0801_0000     | GIC distributor (v3 and v2)                       |
//! | 0x0801_0000..0x0801_2000     | GICv2 CPU interface (v2 only)                     |
//! | 0x080a_0000..0x0900_0000     | GICv3 redistributors, 128 KiB per vCPU            |
//! | 0x0900_0000..0x0900_1000     | 16550 UART (`ns16550a`, byte registers), SPI 1    |
//! | 0x0901_0000..0x0901_1000     | PL031 RTC, SPI 2                                  |
//! | 0x0902_0000..0x0902_1000     | boot timer (`devices::boot_timer`), no interrupt   |
//! | 0x0903_0000..0x0903_1000     | PL061 GPIO (power key), SPI 3                     |
//! | 0x0904_0000..0x0904_1000     | pvpanic (`qemu,pvpanic-mmio`), no interrupt       |
//! | 0x0a00_0000..0x0a00_0000 + 32 * 0x200 | virtio-mmio slots, SPI 16 + slot         |
//! | 0x4000_0000..                | RAM: kernel at the start (2 MiB aligned),         |
//! |                              | initrd below the FDT, FDT in the last 2 MiB       |

use arch::{BusKind, DeviceKind, MemoryLayout, Platform, PlatformDevice};

/// Guest RAM starts here.
pub const RAM_START: u64 = 0x4000_0000;
/// Everything below RAM is the device window.
pub const MMIO_START: u64 = 0;
pub const MMIO_SIZE: u64 = RAM_START;

pub const GIC_DIST_BASE: u64 = 0x0800_0000;
pub const GIC_DIST_SIZE: u64 = 0x1_0000;
/// GICv2 CPU interface (KVM's `KVM_VGIC_V2_CPU_SIZE`).
pub const GIC_CPU_BASE: u64 = 0x0801_0000;
pub const GIC_CPU_SIZE: u64 = 0x2000;
pub const GIC_REDIST_BASE: u64 = 0x080a_0000;
/// One GICv3 redistributor: RD_base and SGI_base frames, 64 KiB each.
pub const GIC_REDIST_SIZE_PER_CPU: u64 = 0x2_0000;
pub const GIC_REDIST_LIMIT: u64 = 0x0900_0000;

pub const UART_BASE: u64 = 0x0900_0000;
pub const UART_SIZE: u64 = 0x1000;
pub const UART_SPI: u32 = 1;
pub const RTC_BASE: u64 = 0x0901_0000;
pub const RTC_SIZE: u64 = 0x1000;
pub const RTC_SPI: u32 = 2;
pub const BOOT_TIMER_BASE: u64 = 0x0902_0000;
pub const BOOT_TIMER_SIZE: u64 = 0x1000;
/// The pvpanic register (`devices::legacy::pvpanic`; a page of MMIO, one byte decoded).
pub const PVPANIC_BASE: u64 = 0x0904_0000;
pub const PVPANIC_SIZE: u64 = 0x1000;
/// The PL061 GPIO controller carrying the power key.
pub const GPIO_BASE: u64 = 0x0903_0000;
pub const GPIO_SIZE: u64 = 0x1000;
pub const GPIO_SPI: u32 = 3;

/// virtio-mmio devices: slot `n` at `VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SIZE`, SPI
/// `VIRTIO_MMIO_FIRST_SPI + n` (see [`crate::fdt::VirtioMmioNode`]).
pub const VIRTIO_MMIO_BASE: u64 = 0x0a00_0000;
pub const VIRTIO_MMIO_SIZE: u64 = 0x200;
pub const VIRTIO_MMIO_SLOTS: u32 = 32;
pub const VIRTIO_MMIO_FIRST_SPI: u32 = 16;

/// Interrupt lines the vGIC has: 32 private (SGI + PPI) and 96 SPIs. KVM wants a multiple
/// of 32.
pub const GIC_NR_IRQS: u32 = 128;
pub const GIC_NR_SPIS: u32 = GIC_NR_IRQS - 32;

/// The most vCPUs whose GICv3 redistributors fit below the UART.
pub const MAX_VCPUS: u32 = ((GIC_REDIST_LIMIT - GIC_REDIST_BASE) / GIC_REDIST_SIZE_PER_CPU) as u32;
/// GICv2 addresses at most 8 CPUs.
pub const MAX_VCPUS_GICV2: u32 = 8;

/// The kernel's base must be 2 MiB aligned (arm64 boot protocol).
pub const KERNEL_ALIGN: u64 = 2 << 20;
/// The FDT may be at most 2 MiB and must not cross a 2 MiB boundary: it gets the last
/// 2 MiB block of RAM.
pub const FDT_MAX_SIZE: u64 = 2 << 20;

/// The smallest guest that holds a kernel, an FDT and room to run.
pub const MIN_MEMORY: u64 = 16 << 20;

/// The UART and RTC as the VMM registers them.
pub const UART: PlatformDevice = PlatformDevice {
    kind: DeviceKind::Serial16550,
    bus: BusKind::Mmio,
    base: UART_BASE,
    len: UART_SIZE,
    irq: Some(UART_SPI),
};
pub const RTC: PlatformDevice = PlatformDevice {
    kind: DeviceKind::Pl031Rtc,
    bus: BusKind::Mmio,
    base: RTC_BASE,
    len: RTC_SIZE,
    irq: Some(RTC_SPI),
};

pub const GPIO: PlatformDevice = PlatformDevice {
    kind: DeviceKind::Pl061Gpio,
    bus: BusKind::Mmio,
    base: GPIO_BASE,
    len: GPIO_SIZE,
    irq: Some(GPIO_SPI),
};

pub const PVPANIC: PlatformDevice = PlatformDevice {
    kind: DeviceKind::PvPanic,
    bus: BusKind::Mmio,
    base: PVPANIC_BASE,
    len: PVPANIC_SIZE,
    irq: None,
};

pub const BOOT_TIMER: PlatformDevice = PlatformDevice {
    kind: DeviceKind::BootTimer,
    bus: BusKind::Mmio,
    base: BOOT_TIMER_BASE,
    len: BOOT_TIMER_SIZE,
    irq: None,
};

/// The fixed devices of an arm64 guest (the FDT describes all but the boot timer).
pub fn platform() -> Platform {
    Platform::new(vec![UART, RTC, GPIO, PVPANIC, BOOT_TIMER])
}

/// Size of the GICv3 redistributor region for `vcpus` vCPUs.
pub fn gic_redist_size(vcpus: u32) -> u64 {
    u64::from(vcpus) * GIC_REDIST_SIZE_PER_CPU
}

/// Guest RAM from [`RAM_START`], one range (the device window is all below it).
pub fn memory_layout(memory_bytes: u64) -> Option<MemoryLayout> {
    MemoryLayout::split_around_hole(RAM_START, memory_bytes, MMIO_START, MMIO_SIZE)
}

/// The MPIDR_EL1 affinity KVM gives vCPU `index` (Aff0 = low 4 bits, Aff1, Aff2 above,
/// as `reset_mpidr` in the kernel's arm64 KVM does); the FDT's `cpu@` `reg`.
pub fn mpidr_affinity(index: u32) -> u64 {
    let i = u64::from(index);
    (i & 0xf) | (((i >> 4) & 0xff) << 8) | (((i >> 12) & 0xff) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_starts_at_one_gib_in_one_range() {
        let l = memory_layout(256 << 20).unwrap();
        assert_eq!(l.ram.len(), 1);
        assert_eq!(l.ram[0].start, 0x4000_0000);
        assert_eq!(l.ram_bytes(), 256 << 20);
        assert_eq!(l.mmio_start + l.mmio_size, RAM_START);
        assert!(memory_layout(u64::MAX).is_none());
    }

    #[test]
    fn device_regions_do_not_overlap_and_sit_below_ram() {
        let regions = [
            (GIC_DIST_BASE, GIC_DIST_SIZE),
            (GIC_CPU_BASE, GIC_CPU_SIZE),
            (GIC_REDIST_BASE, gic_redist_size(MAX_VCPUS)),
            (UART_BASE, UART_SIZE),
            (RTC_BASE, RTC_SIZE),
            (BOOT_TIMER_BASE, BOOT_TIMER_SIZE),
            (GPIO_BASE, GPIO_SIZE),
            (PVPANIC_BASE, PVPANIC_SIZE),
            (
                VIRTIO_MMIO_BASE,
                u64::from(VIRTIO_MMIO_SLOTS) * VIRTIO_MMIO_SIZE,
            ),
        ];
        for (i, a) in regions.iter().enumerate() {
            assert!(a.0 + a.1 <= RAM_START, "{a:x?}");
            for b in &regions[i + 1..] {
                assert!(a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0, "{a:x?} vs {b:x?}");
            }
        }
        assert_eq!(MAX_VCPUS, 123);
        const {
            assert!(VIRTIO_MMIO_FIRST_SPI + VIRTIO_MMIO_SLOTS <= GIC_NR_SPIS);
            assert!(UART_SPI < VIRTIO_MMIO_FIRST_SPI && RTC_SPI < VIRTIO_MMIO_FIRST_SPI);
            assert!(GIC_NR_IRQS % 32 == 0);
        }
    }

    #[test]
    fn mpidr_follows_kvm() {
        assert_eq!(mpidr_affinity(0), 0);
        assert_eq!(mpidr_affinity(1), 1);
        assert_eq!(mpidr_affinity(15), 0xf);
        assert_eq!(mpidr_affinity(16), 0x100);
        assert_eq!(mpidr_affinity(17), 0x101);
        assert_eq!(mpidr_affinity(0x1234), 0x01_2304);
    }
}
