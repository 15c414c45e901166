// SPDX-License-Identifier: Apache-2.0
//! Hardware-reduced ACPI tables: how a Linux guest finds its CPUs and I/O APIC and, above
//! all, how it powers off (S5 through the FADT's sleep control register) and resets
//! (the FADT's reset register), as Firecracker and Cloud Hypervisor guests do.
//!
//! RSDP (revision 2) → XSDT → FADT (6.5, `HW_REDUCED_ACPI`) → DSDT, and the MADT. The DSDT
//! has `\_S5` and the [`Platform`]'s port devices (COM1, the i8042, the CMOS RTC): a
//! hardware-reduced guest has no legacy PIC, so Linux gives an ISA device an interrupt
//! only when the firmware describes it (its drivers' hard-coded IRQ 4, 1 or 8 have no
//! interrupt descriptor otherwise and `request_irq` fails). Each virtio-mmio device is a
//! `LNRO0005` device (what Linux's `virtio_mmio` driver matches through ACPI) with its
//! register window and interrupt. The power button is a `PNP0C0C` device notified by a
//! Generic Event Device (see [`ged`]).
//! All of them sit in the BIOS area, RSDP first on a 16-byte boundary, where a guest
//! without EFI scans for it; the PVH start info and the zero page also point at it.
//!
//! Built with rust-vmm's `acpi_tables`, whose typed tables store little-endian fields, so
//! the image is the same on any host. Its `Sdt::append*`/`write_u*` store integers in host
//! order, so the generic tables here (DSDT, MADT) use only `Sdt::new` (which encodes the
//! header little-endian) and `Sdt::write_bytes` with bytes encoded here. The crate's MADT
//! type has no interrupt source override or local APIC NMI entries, hence the MADT is laid
//! out by hand on top of `Sdt`.

use acpi_tables::aml::{
    Device, EISAName, Interrupt, Memory32Fixed, Name, Package, Path, ResourceTemplate, IO,
};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use arch::{BusKind, DeviceKind, Platform, PlatformDevice};
use devices::legacy::acpi_pm;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{ACPI_TABLES_END, IOAPIC_ADDR, LAPIC_ADDR};
use crate::mptable::MAX_CPUS;

const OEM_ID: [u8; 6] = *b"POLYVS";
const OEM_TABLE_ID: [u8; 8] = *b"POLYVSR ";
const OEM_REVISION: u32 = 1;
/// Tables start on 16-byte boundaries (the RSDP must; the others keep it for tidiness).
const TABLE_ALIGN: usize = 16;

/// DSDT revision 2: 64-bit AML integers.
const DSDT_REVISION: u8 = 2;
/// MADT revision of ACPI 6.5.
const MADT_REVISION: u8 = 5;
/// MADT flags: PCAT_COMPAT, the machine has dual 8259s (KVM's in-kernel PIC).
const MADT_PCAT_COMPAT: u32 = 1;
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_INTERRUPT_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_NMI: u8 = 4;
const LOCAL_APIC_ENABLED: u32 = 1;
/// "All processors" in a local APIC NMI entry.
const ALL_PROCESSORS: u8 = 0xff;
/// MPS INTI flags: polarity and trigger conform to the bus (ISA: active high, edge).
const INTI_CONFORMING: u16 = 0;
/// ISA IRQs 0..=15 go to the same I/O APIC pins, as in the MP table and KVM's default GSI
/// routing (its PIT raises GSI 0, I/O APIC pin 0: no IRQ 0 → GSI 2 override here). They
/// are listed as overrides because a hardware-reduced guest has no legacy PIC and Linux
/// then maps only the ISA IRQs the MADT names (COM1's IRQ 4, the i8042's IRQ 1).
const ISA_IRQS: u8 = 16;

/// IAPC_BOOT_ARCH: an 8042 keyboard controller is present (bit 1); no VGA (bit 2).
const IAPC_BOOT_ARCH_8042: u16 = 1 << 1;
const IAPC_BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the ACPI tables describe 1..={MAX_CPUS} CPUs, not {0}")]
    TooManyCpus(u32),
    #[error("the ACPI tables ({len} bytes at {base:#x}) do not fit below {ACPI_TABLES_END:#x}")]
    NoRoom { base: u64, len: usize },
    #[error("the platform has no ACPI sleep control register on a port")]
    NoSleepControl,
    #[error(
        "virtio-mmio device {index} at {base:#x} is not a 32-bit MMIO window with an interrupt"
    )]
    BadVirtioWindow { index: usize, base: u64 },
}

/// What the tables describe.
#[derive(Clone, Copy, Debug)]
pub struct Machine<'a> {
    pub cpus: u32,
    pub platform: &'a Platform,
    /// virtio-mmio transports, in slot order (`_UID` = index).
    pub virtio: &'a [PlatformDevice],
}

/// The tables as one image to copy to guest memory at `base`, the RSDP first, for the
/// CPUs and devices of `machine`.
pub fn build(base: u64, machine: &Machine) -> Result<Vec<u8>, Error> {
    let Machine { cpus, platform, .. } = *machine;
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(Error::TooManyCpus(cpus));
    }
    let pm_port = match platform.get(DeviceKind::AcpiPm) {
        Some(PlatformDevice {
            bus: BusKind::Pio,
            base,
            ..
        }) => u16::try_from(base).map_err(|_| Error::NoSleepControl)?,
        _ => return Err(Error::NoSleepControl),
    };
    let mut image = Image {
        base,
        bytes: Vec::new(),
    };
    image.place(&vec![0; Rsdp::len()]); // filled in once the XSDT's address is known

    let dsdt = image.place(dsdt(platform, &virtio_devices(machine.virtio)?).as_slice());
    let fadt = image.place(&aml_bytes(&fadt(dsdt, pm_port)));
    let madt = image.place(madt(cpus).as_slice());
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt);
    xsdt.add_entry(madt);
    let xsdt = image.place(&aml_bytes(&xsdt));
    let rsdp = aml_bytes(&Rsdp::new(OEM_ID, xsdt));
    image.bytes[..rsdp.len()].copy_from_slice(&rsdp);

    if base % TABLE_ALIGN as u64 != 0 || base + image.bytes.len() as u64 > ACPI_TABLES_END {
        return Err(Error::NoRoom {
            base,
            len: image.bytes.len(),
        });
    }
    Ok(image.bytes)
}

/// Write the tables of [`build`] at `base` (the RSDP's address).
pub fn write<M: GuestMemoryBackend>(mem: &M, base: u64, machine: &Machine) -> Result<(), Error> {
    let bytes = build(base, machine)?;
    mem.write_slice(&bytes, GuestAddress(base))
        .map_err(|_| Error::NoRoom {
            base,
            len: bytes.len(),
        })
}

struct Image {
    base: u64,
    bytes: Vec<u8>,
}

impl Image {
    /// Append `table` at the next aligned offset; returns its guest address.
    fn place(&mut self, table: &[u8]) -> u64 {
        let offset = self.bytes.len().next_multiple_of(TABLE_ALIGN);
        self.bytes.resize(offset, 0);
        self.bytes.extend_from_slice(table);
        self.base + offset as u64
    }
}

fn aml_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

fn io_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// A port device as the DSDT describes it: `_HID`, `_UID` and `_CRS` (I/O ranges, an
/// edge-triggered active-high interrupt).
struct PortDevice {
    path: &'static str,
    hid: &'static str,
    ports: Vec<(u16, u8)>,
    irq: Option<u32>,
}

impl PortDevice {
    /// `dev` when it is on the port bus.
    fn new(path: &'static str, hid: &'static str, dev: &PlatformDevice) -> Option<Self> {
        let base = u16::try_from(dev.base).ok()?;
        let len = u8::try_from(dev.len).ok()?;
        (dev.bus == BusKind::Pio).then(|| Self {
            path,
            hid,
            ports: vec![(base, len)],
            irq: dev.irq,
        })
    }

    fn aml(&self) -> Vec<u8> {
        let ios: Vec<IO> = self
            .ports
            .iter()
            .map(|&(base, len)| IO::new(base, base, 1, len))
            .collect();
        let irq = self
            .irq
            .map(|irq| Interrupt::new(true, true, false, false, irq));
        let mut resources: Vec<&dyn Aml> = ios.iter().map(|io| io as &dyn Aml).collect();
        if let Some(irq) = &irq {
            resources.push(irq);
        }
        let crs = ResourceTemplate::new(resources);
        let (uid, crs) = (
            Name::new(Path::new("_UID"), &0u8),
            Name::new(Path::new("_CRS"), &crs),
        );
        // A 7-character PNP ID is an EISA ID; anything else (`QEMU0001`) a string.
        if self.hid.len() == 7 {
            let eisa = EISAName::new(self.hid);
            let hid = Name::new(Path::new("_HID"), &eisa);
            aml_bytes(&Device::new(Path::new(self.path), vec![&hid, &uid, &crs]))
        } else {
            let hid = Name::new(Path::new("_HID"), &self.hid);
            aml_bytes(&Device::new(Path::new(self.path), vec![&hid, &uid, &crs]))
        }
    }
}

/// The port devices of `platform` the DSDT describes, in the platform's order. The FADT
/// names the PM registers; the GED is described apart ([`power_button`]); Linux finds the
/// reset control port without ACPI, and the boot timer is for test guests only.
fn port_devices(platform: &Platform) -> Vec<PortDevice> {
    platform
        .devices
        .iter()
        .filter_map(|dev| match dev.kind {
            DeviceKind::Serial16550 => PortDevice::new("\\_SB_.COM1", "PNP0501", dev),
            // Data port at the base, status/command port at base + 4, as PNP0303 lists them.
            DeviceKind::I8042 => PortDevice::new("\\_SB_.PS2K", "PNP0303", dev).map(|mut d| {
                let (base, _) = d.ports[0];
                d.ports = vec![(base, 1), (base + 4, 1)];
                d
            }),
            DeviceKind::Cmos => PortDevice::new("\\_SB_.RTC_", "PNP0B00", dev),
            // Linux's pvpanic-mmio driver matches QEMU0001 and takes an I/O resource too.
            DeviceKind::PvPanic => PortDevice::new("\\_SB_.PEVT", "QEMU0001", dev),
            DeviceKind::AcpiPm
            | DeviceKind::ResetControl
            | DeviceKind::BootTimer
            | DeviceKind::AcpiGed
            | DeviceKind::Pl031Rtc
            | DeviceKind::Pl061Gpio
            | DeviceKind::VirtioMmio => None,
        })
        .collect()
}

/// A virtio-mmio transport as the DSDT describes it: `\_SB_.VRnn`, `_HID "LNRO0005"`,
/// `_UID` n, `_CRS` with its register window and an edge-triggered active-high interrupt.
struct VirtioMmioDevice {
    uid: u8,
    base: u32,
    len: u32,
    gsi: u32,
}

impl VirtioMmioDevice {
    fn aml(&self) -> Vec<u8> {
        let path = format!("\\_SB_.VR{:02}", self.uid);
        let mem = Memory32Fixed::new(true, self.base, self.len);
        let irq = Interrupt::new(true, true, false, false, self.gsi);
        let crs = ResourceTemplate::new(vec![&mem, &irq]);
        let (hid, uid, crs) = (
            Name::new(Path::new("_HID"), &"LNRO0005"),
            Name::new(Path::new("_UID"), &self.uid),
            Name::new(Path::new("_CRS"), &crs),
        );
        aml_bytes(&Device::new(Path::new(&path), vec![&hid, &uid, &crs]))
    }
}

fn virtio_devices(windows: &[PlatformDevice]) -> Result<Vec<VirtioMmioDevice>, Error> {
    windows
        .iter()
        .enumerate()
        .map(|(index, w)| {
            let bad = || Error::BadVirtioWindow {
                index,
                base: w.base,
            };
            Ok(VirtioMmioDevice {
                uid: u8::try_from(index)
                    .ok()
                    .filter(|&u| u < 100)
                    .ok_or_else(bad)?,
                base: u32::try_from(w.base).map_err(|_| bad())?,
                len: u32::try_from(w.len).map_err(|_| bad())?,
                gsi: w.irq.filter(|_| w.bus == BusKind::Mmio).ok_or_else(bad)?,
            })
        })
        .collect()
}

/// The GED of `platform`, when it has one on 32-bit MMIO with an interrupt.
fn power_button(platform: &Platform) -> Option<ged::Ged> {
    let dev = platform
        .get(DeviceKind::AcpiGed)
        .filter(|d| d.bus == BusKind::Mmio)?;
    Some(ged::Ged {
        base: u32::try_from(dev.base).ok()?,
        gsi: dev.irq?,
    })
}

/// The DSDT: `\_S5` (SLP_TYP 5 for the sleep control register), the port devices and the
/// virtio-mmio devices.
fn dsdt(platform: &Platform, virtio: &[VirtioMmioDevice]) -> Sdt {
    let s5 = Name::new(
        Path::new("\\_S5_"),
        &Package::new(vec![&acpi_pm::SLP_TYP_S5, &0u8]),
    );
    let mut aml = aml_bytes(&s5);
    for dev in port_devices(platform) {
        aml.extend_from_slice(&dev.aml());
    }
    if let Some(ged) = power_button(platform) {
        aml.extend_from_slice(&ged.aml());
    }
    for dev in virtio {
        aml.extend_from_slice(&dev.aml());
    }
    let mut sdt = Sdt::new(
        *b"DSDT",
        (36 + aml.len()) as u32,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    sdt.write_bytes(36, &aml);
    sdt
}

fn fadt(dsdt: u64, pm_port: u16) -> acpi_tables::fadt::FADT {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup);
    fadt.iapc_boot_arch = (IAPC_BOOT_ARCH_8042 | IAPC_BOOT_ARCH_VGA_NOT_PRESENT).into();
    fadt.sleep_control_reg = io_register(pm_port + acpi_pm::SLEEP_CONTROL as u16);
    fadt.sleep_status_reg = io_register(pm_port + acpi_pm::SLEEP_STATUS as u16);
    fadt.reset_reg = io_register(pm_port + acpi_pm::RESET as u16);
    fadt.reset_value = acpi_pm::RESET_VALUE;
    fadt.finalize()
}

/// The MADT: one enabled local APIC per CPU (APIC id = index, as KVM numbers them), the
/// I/O APIC with GSI base 0, identity ISA overrides, NMI on LINT1 of every CPU. The I/O
/// APIC id is the first after the CPUs', as in the MP table.
fn madt(cpus: u32) -> Sdt {
    let mut entries = Vec::new();
    for id in 0..cpus as u8 {
        entries.extend_from_slice(&[MADT_LOCAL_APIC, 8, id, id]);
        entries.extend_from_slice(&LOCAL_APIC_ENABLED.to_le_bytes());
    }
    entries.extend_from_slice(&[MADT_IO_APIC, 12, cpus as u8, 0]);
    entries.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    entries.extend_from_slice(&0u32.to_le_bytes());
    for irq in 0..ISA_IRQS {
        entries.extend_from_slice(&[MADT_INTERRUPT_OVERRIDE, 10, 0, irq]);
        entries.extend_from_slice(&u32::from(irq).to_le_bytes());
        entries.extend_from_slice(&INTI_CONFORMING.to_le_bytes());
    }
    entries.extend_from_slice(&[MADT_LOCAL_APIC_NMI, 6, ALL_PROCESSORS]);
    entries.extend_from_slice(&INTI_CONFORMING.to_le_bytes());
    entries.push(1); // LINT1

    let mut body = Vec::with_capacity(8 + entries.len());
    body.extend_from_slice(&(LAPIC_ADDR as u32).to_le_bytes());
    body.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    body.extend_from_slice(&entries);
    let mut sdt = Sdt::new(
        *b"APIC",
        (36 + body.len()) as u32,
        MADT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    sdt.write_bytes(36, &body);
    sdt
}

mod ged;

#[cfg(test)]
mod tests;
