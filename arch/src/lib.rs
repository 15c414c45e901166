// SPDX-License-Identifier: Apache-2.0
//! The trait layer between the VMM and one machine architecture.
//!
//! `vmm` talks to a backend only through [`Hypervisor`], [`Vm`] and [`Vcpu`] and the plain
//! types in this crate; it never sees KVM structures. A backend turns a boot request into
//! guest memory contents and vCPU registers, and turns hypervisor exits into [`VcpuExit`]s
//! the VMM dispatches to its device buses.
//!
//! # Checked against the three architectures
//! - **x86_64** (KVM, `arch-x86_64`): `create_vm` makes the VM with an in-kernel irqchip (and
//!   the PIT only when [`VmConfig::pit`] asks); `Vm::load` places a bzImage/ELF, the zero page or PVH start info, the MP table
//!   and the (hardware-reduced) ACPI tables;
//!   vCPU 0 gets boot registers, the others wait for INIT/SIPI in the kernel. Port and MMIO
//!   exits become `IoIn`/`IoOut`/`MmioRead`/`MmioWrite`; a triple fault becomes `Reset`.
//!   Interrupt lines are irqfds bound to GSIs; [`Platform`] says COM1 is port 0x3f8, IRQ 4.
//! - **aarch64** (KVM): `create_vm` creates the vGIC (v3, else v2) sized for `vcpus`;
//!   `Vm::load` places the arm64 `Image` 2 MiB aligned, the initrd and the FDT it generates
//!   from [`Platform`] (the UART and RTC are MMIO devices there) and from the devices the VMM
//!   registered; `create_vcpus` does `KVM_ARM_VCPU_INIT` with PSCI, powers secondaries off and
//!   initialises the vGIC once all vCPUs exist.
//!   PSCI `SYSTEM_OFF`/`SYSTEM_RESET` arrive as system events and become `Poweroff`/`Reset`;
//!   `CPU_ON` is handled by KVM. Interrupt lines are irqfds on GIC SPIs (GSI n = SPI n);
//!   KVM refuses `KVM_IRQFD` with `EAGAIN` until the vGIC is initialised, so lines handed
//!   out before `create_vcpus` are bound at its end (triggers in between stay pending).
//! - **s390x** (own KVM layer, no kvm-ioctls): memory slots 1 MiB aligned; `Vm::load`
//!   writes the kernel at 0 and the IPL parameter area; `create_vcpus` does the initial reset
//!   and sets the 64-bit PSW. SIE intercepts (SCLP `SERVC`, `SIGP`, `DIAG 0x500`, channel
//!   I/O instructions) are served inside the backend and reported as `Handled`; a stop of the
//!   last CPU is `Poweroff`, `KVM_EXIT_S390_RESET` is `Reset`. There is no port I/O and no
//!   MMIO bus for devices: [`Platform`] lists no UART; the SCLP console writes to the
//!   console sink the VMM hands over with [`Vm::attach_console`]. Interrupt lines there are I/O
//!   interrupts for a subchannel (classic indicators, later adapter interrupts).
//!
//! What only one architecture has (SIE intercepts, PSCI calls, SIGP orders, CPUID) stays
//! inside its backend. The VMM picks the backend once, in `vmm::host`.
#![forbid(unsafe_code)]

pub mod boot;
pub mod error;
pub mod exit;
pub mod layout;
pub mod platform;
pub mod unsupported;

use std::io::Write;
use std::sync::{Arc, Mutex};

use devices::virtio::VirtioDevice;
use devices::{BusDevice, ConsoleInput, InterruptLine, PowerButton};
use vm_memory::GuestMemoryMmap;

pub use boot::{BootRequest, KernelFormat};
pub use error::{Error, Result};
pub use exit::VcpuExit;
pub use layout::{MemoryLayout, RamRange};
pub use platform::{BusKind, DeviceKind, Platform, PlatformDevice};

/// Guest memory as every backend maps it.
pub type GuestMemory = GuestMemoryMmap<()>;

/// What the VMM asks a backend to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Guest RAM in bytes.
    pub memory_bytes: u64,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Create the in-kernel i8254 PIT (x86_64 only; `--pit`). Linux guests need none: they
    /// take the TSC frequency from kvmclock and run the LAPIC timer.
    pub pit: bool,
}

impl VmConfig {
    /// Check the request against a backend's limits: at least `min_memory` bytes of RAM,
    /// 1..=`max_vcpus` vCPUs.
    pub fn check(&self, min_memory: u64, max_vcpus: u32) -> Result<()> {
        if self.memory_bytes < min_memory {
            return Err(Error::Memory(format!(
                "guest memory must be at least {} MiB",
                min_memory >> 20
            )));
        }
        if self.vcpus == 0 || self.vcpus > max_vcpus {
            return Err(Error::Vcpus(format!("vCPU count must be 1..={max_vcpus}")));
        }
        Ok(())
    }

    /// Refuse [`VmConfig::pit`] on a backend (`arch`) that has no i8254 PIT.
    pub fn refuse_pit(&self, arch: &str) -> Result<()> {
        if self.pit {
            return Err(Error::Pit(format!(
                "{arch} guests have no i8254 PIT (x86_64 only)"
            )));
        }
        Ok(())
    }
}

/// A virtio transport on the MMIO bus, for the VMM to place.
pub struct VirtioTransport {
    /// Its register window (and interrupt, for the record).
    pub window: PlatformDevice,
    /// The transport, with the device inside.
    pub device: Arc<Mutex<dyn BusDevice>>,
}

/// Where a hotplugged device went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hotplugged {
    /// What [`Vm::unplug_virtio_device`] takes it out by.
    pub slot: u32,
    /// Its address on its bus as the guest names it (s390x: the CCW bus id `0.0.0004`).
    pub address: String,
}

/// A hypervisor on this host (an open `/dev/kvm`).
pub trait Hypervisor: Sized + Send + Sync {
    type Vm: Vm;

    /// Whether `--kernel` may be a raw image in no format this VMM recognises (s390x: a
    /// raw image loads at 0 as QEMU loads it); elsewhere such a file is refused by name
    /// before any VM exists.
    const RAW_KERNEL_IMAGES: bool = false;

    /// The kernel command line when the user gives none: the console this architecture's
    /// guests have, and a reboot one second after a panic.
    const DEFAULT_CMDLINE: &'static str = "console=ttyS0 panic=1";

    /// Human-readable name of the backend, e.g. `"KVM x86_64"`.
    fn name(&self) -> &'static str;
    /// Open the hypervisor device and check the capabilities this backend relies on.
    fn open() -> Result<Self>;
    /// The most vCPUs one VM may have on this host.
    fn max_vcpus(&self) -> u32;
    /// Create a VM with its memory and interrupt controller.
    fn create_vm(&self, config: &VmConfig) -> Result<Self::Vm>;
}

/// One virtual machine.
pub trait Vm: Send + Sync {
    type Vcpu: Vcpu;

    /// The guest's memory.
    fn memory(&self) -> &GuestMemory;
    /// Where the guest's RAM and holes are.
    fn layout(&self) -> &MemoryLayout;
    /// The platform devices this architecture's guests expect, and where.
    fn platform(&self) -> &Platform;
    /// An interrupt line for device interrupt `irq` (a GSI, SPI or I/O interrupt number as
    /// [`Platform`] or the device allocator assigned it). A line may be taken before
    /// [`Vm::create_vcpus`]; the backend makes sure what it triggers meanwhile is delivered
    /// once the interrupt controller is ready.
    fn interrupt_line(&self, irq: u32) -> Result<Arc<dyn InterruptLine>>;
    /// Hand over the sink for a console the backend serves itself, one that is no device
    /// on a bus (s390x: the SCLP console), and get where its input goes. Returns `None`,
    /// dropping `out`, when the architecture has no such console (its console is a
    /// [`Platform`] device the VMM places; the default). Called before [`Vm::create_vcpus`].
    fn attach_console(&mut self, out: Box<dyn Write + Send>) -> Option<Arc<dyn ConsoleInput>> {
        drop(out);
        None
    }
    /// Attach a virtio device, before [`Vm::load`] (the firmware tables describe it). The
    /// backend picks the transport its guests expect: virtio-mmio (described in the FDT or
    /// the DSDT) comes back as a [`VirtioTransport`] for the VMM to place on its MMIO bus;
    /// a transport the backend serves itself (s390x virtio-ccw in its channel subsystem)
    /// returns `None`. A backend without a virtio transport yet refuses with
    /// [`Error::Unsupported`] (the default).
    fn add_virtio_device(
        &mut self,
        device: Box<dyn VirtioDevice>,
    ) -> Result<Option<VirtioTransport>> {
        Err(Error::Unsupported {
            arch: std::env::consts::ARCH,
            what: format!(
                "virtio device type {} (no virtio transport on this architecture yet)",
                device.device_type()
            ),
        })
    }
    /// Plug a virtio device into the running guest (after [`Vm::create_vcpus`], from the
    /// main thread while the vCPUs run). The backend announces it the way its bus does
    /// (s390x: a new subchannel and a channel report word, as QEMU's virtio-ccw hotplug)
    /// and says where it is. A backend whose transport cannot announce a device to a
    /// running guest refuses with [`Error::Unsupported`] (the default: virtio-mmio has no
    /// bus the guest enumerates again; its devices are found once, from the DSDT or FDT).
    fn hotplug_virtio_device(&self, device: Box<dyn VirtioDevice>) -> Result<Hotplugged> {
        Err(Error::Unsupported {
            arch: std::env::consts::ARCH,
            what: format!(
                "hotplugging virtio device type {} (virtio-mmio cannot announce a device to \
                 a running guest; there is no virtio-pci yet)",
                device.device_type()
            ),
        })
    }
    /// For each [`Vm::add_virtio_device`] so far, in order, the slot
    /// [`Vm::unplug_virtio_device`] takes that device out by, where the backend can unplug
    /// a device attached at boot (s390x: its subchannel number); empty (the default) where
    /// it cannot.
    fn attached_slots(&self) -> Vec<Option<u32>> {
        Vec::new()
    }
    /// Take a device [`Vm::hotplug_virtio_device`] plugged (by its [`Hotplugged::slot`]),
    /// or one attached at boot (by its [`Vm::attached_slots`] entry), out of the running
    /// guest: the guest is told it is gone, the device is reset (its
    /// worker threads stopped, what was in flight finished) and dropped.
    fn unplug_virtio_device(&self, slot: u32) -> Result<()> {
        Err(Error::Unsupported {
            arch: std::env::consts::ARCH,
            what: format!("unplugging device slot {slot} (no hotplug on this transport)"),
        })
    }
    /// Load the kernel, initrd and command line, and write the firmware tables.
    fn load(&mut self, request: &mut BootRequest) -> Result<()>;
    /// The guest's power button when the backend serves it itself rather than as a
    /// [`Platform`] device (s390x: the SCLP's signal-quiesce event). Asked for after
    /// [`Vm::create_vcpus`]; `None` (the default) when there is no such button.
    fn power_button(&self) -> Option<Box<dyn PowerButton>> {
        None
    }
    /// Create all of the VM's vCPUs (index 0 is the boot CPU), set up for the loaded boot
    /// protocol, and finish whatever the interrupt controller needs once every vCPU exists
    /// (the arm64 vGIC is initialised only then). Called once, after [`Vm::load`] and after
    /// the devices took their interrupt lines; no vCPU runs before this returns.
    fn create_vcpus(&mut self) -> Result<Vec<Self::Vcpu>>;
}

/// One virtual CPU; runs on its own thread.
pub trait Vcpu: Send + 'static {
    /// Run the guest until it needs the VMM. Returns [`VcpuExit::Interrupted`] when the
    /// vCPU was kicked ([`VcpuKicker::kick`]) or a signal reached its thread during the
    /// run; a kick is consumed by the `run` that reports it, so the caller looks at what
    /// it was asked to do (pause, stop) after every `Interrupted`. A stopped vCPU returns
    /// [`VcpuExit::Stopped`] (consuming a kick the same way) and never waits in `run`.
    fn run(&mut self) -> Result<VcpuExit<'_>>;

    /// A handle other threads use to get this vCPU out of the guest (see [`VcpuKicker`]).
    /// It stays valid (and harmless) after the vCPU is dropped.
    fn kicker(&self) -> Arc<dyn VcpuKicker>;
}

/// Gets a vCPU out of the guest from another thread, without racing its `run`: after
/// `kick` returns, the vCPU's `run` in progress or its next one returns
/// [`VcpuExit::Interrupted`] (KVM's `immediate_exit`: a `KVM_RUN` entered after the kick
/// returns at once). A `KVM_RUN` already in the guest still needs a signal to its thread,
/// which the VMM sends once after the kick.
pub trait VcpuKicker: Send + Sync {
    fn kick(&self);
}
