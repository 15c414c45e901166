// SPDX-License-Identifier: Apache-2.0
//! The platform devices an architecture's guests expect, and where they sit: a list the
//! backend builds to describe its machine, that the VMM's device manager walks to create
//! and place the devices, and that the firmware tables (the x86 DSDT, the arm64 FDT)
//! describe.

/// Which bus a device sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusKind {
    /// x86 port I/O.
    Pio,
    /// Memory-mapped I/O.
    Mmio,
}

/// The hardware a platform device models (the VMM picks the model by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// The 16550 UART the kernel's `console=ttyS0` talks to.
    Serial16550,
    /// A keyboard controller whose CPU-reset command resets the machine (x86 i8042).
    I8042,
    /// The boot timer guests write milestones to (see `devices::boot_timer`); mapped only
    /// with `--boot-timer`, and described to no guest.
    BootTimer,
    /// A PL031 real-time clock on MMIO (arm64).
    Pl031Rtc,
    /// An MC146818 CMOS RTC/NVRAM at an index/data port pair (x86 ports 0x70/0x71).
    Cmos,
    /// The hardware-reduced ACPI sleep control, sleep status and reset registers the
    /// FADT points at (`devices::legacy::AcpiPm`; x86 ports 0x600..=0x602).
    AcpiPm,
    /// The PC reset control register (port 0xCF9, `devices::legacy::ResetControl`) that
    /// Linux's `reboot=p`/`reboot=q` write (x86).
    ResetControl,
    /// A PL061 GPIO controller whose line 3 is the guest's power key (`gpio-keys`,
    /// `KEY_POWER`; arm64). The VMM presses it on SIGTERM.
    Pl061Gpio,
    /// An ACPI Generic Event Device on MMIO whose event bit 0 is the guest's power button
    /// (the DSDT's `ACPI0013` and `PNP0C0C`; x86). The VMM presses it on SIGTERM.
    AcpiGed,
    /// A pvpanic register (`devices::legacy::PvPanic`; x86: an I/O port described in the
    /// DSDT as `QEMU0001`; arm64: MMIO, `qemu,pvpanic-mmio` in the FDT).
    PvPanic,
    /// A virtio-mmio transport's register window (placed by the backend's
    /// `add_virtio_device`, not listed in [`Platform`]).
    VirtioMmio,
}

/// A device at a fixed address with an optional interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformDevice {
    pub kind: DeviceKind,
    pub bus: BusKind,
    pub base: u64,
    pub len: u64,
    pub irq: Option<u32>,
}

/// The fixed devices of a machine, in the order the VMM creates them. A kind missing here
/// means the architecture has no such device (s390x has no UART: its console is SCLP,
/// served by the backend).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    pub devices: Vec<PlatformDevice>,
}

impl Platform {
    pub fn new(devices: Vec<PlatformDevice>) -> Self {
        Self { devices }
    }

    /// The first device of `kind`, if the machine has one.
    pub fn get(&self, kind: DeviceKind) -> Option<PlatformDevice> {
        self.devices.iter().copied().find(|d| d.kind == kind)
    }

    /// The same machine without the devices of `kind`.
    pub fn without(mut self, kind: DeviceKind) -> Self {
        self.devices.retain(|d| d.kind != kind);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_found_by_kind_and_can_be_left_out() {
        let uart = PlatformDevice {
            kind: DeviceKind::Serial16550,
            bus: BusKind::Pio,
            base: 0x3f8,
            len: 8,
            irq: Some(4),
        };
        let p = Platform::new(vec![uart]);
        assert_eq!(p.get(DeviceKind::Serial16550), Some(uart));
        assert_eq!(p.get(DeviceKind::I8042), None);
        assert!(p.without(DeviceKind::Serial16550).devices.is_empty());
    }
}
