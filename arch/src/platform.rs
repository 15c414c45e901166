// SPDX-License-Identifier: Apache-2.0
//! The platform devices an architecture's guests expect, and where they sit.

/// Which bus a device sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusKind {
    /// x86 port I/O.
    Pio,
    /// Memory-mapped I/O.
    Mmio,
}

/// A device at a fixed address with an optional interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformDevice {
    pub bus: BusKind,
    pub base: u64,
    pub len: u64,
    pub irq: Option<u32>,
}

/// The fixed devices of a machine. `None` means the architecture has no such device
/// (s390x has no UART: its console is SCLP, served by the backend). The VMM places each
/// device present here on its bus; backends that describe devices to the guest (the arm64
/// FDT) describe exactly these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    /// The 16550 UART the kernel's `console=ttyS0` talks to.
    pub serial: Option<PlatformDevice>,
    /// A keyboard controller whose CPU-reset command resets the machine (x86 i8042).
    pub i8042: Option<PlatformDevice>,
    /// The boot timer guests write milestones to (see `devices::boot_timer`).
    pub boot_timer: Option<PlatformDevice>,
    /// A PL031 real-time clock on MMIO (arm64).
    pub rtc: Option<PlatformDevice>,
    /// An MC146818 CMOS RTC/NVRAM at an index/data port pair (x86 ports 0x70/0x71).
    pub cmos: Option<PlatformDevice>,
    /// The hardware-reduced ACPI sleep control, sleep status and reset registers the
    /// FADT points at (`devices::legacy::AcpiPm`; x86 ports 0x600..=0x602).
    pub acpi_pm: Option<PlatformDevice>,
    /// The PC reset control register (port 0xCF9, `devices::legacy::ResetControl`) that
    /// Linux's `reboot=p`/`reboot=q` write (x86).
    pub reset_control: Option<PlatformDevice>,
    /// A PL061 GPIO controller whose line 3 is the guest's power key (`gpio-keys`,
    /// `KEY_POWER`; arm64). The VMM presses it on SIGTERM.
    pub gpio: Option<PlatformDevice>,
    /// An ACPI Generic Event Device on MMIO whose event bit 0 is the guest's power button
    /// (the DSDT's `ACPI0013` and `PNP0C0C`; x86). The VMM presses it on SIGTERM.
    pub acpi_ged: Option<PlatformDevice>,
    /// A pvpanic register (`devices::legacy::PvPanic`; x86: an I/O port described in the
    /// DSDT as `QEMU0001`; arm64: MMIO, `qemu,pvpanic-mmio` in the FDT).
    pub pvpanic: Option<PlatformDevice>,
}
