//! KVM glue for aarch64 hosts: the VM, its memory slots, the vGIC, interrupt lines and
//! vCPUs.

mod gic;
mod vcpu;

use std::sync::{Arc, Mutex};

use arch::{
    BootRequest, Error, GuestMemory, Hypervisor, MemoryLayout, Platform, Result, Vm, VmConfig,
};
use devices::InterruptLine;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Cap, Kvm, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::fdt::{GicVersion, VirtioMmioNode};
use crate::layout::{self, MIN_MEMORY};
use crate::loader::{self, BootEntry, Machine};
pub use gic::Vgic;
pub use vcpu::KvmVcpu;

/// Capabilities this backend cannot run without.
const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::OneReg, "KVM_CAP_ONE_REG"),
    (Cap::ArmPsci02, "KVM_CAP_ARM_PSCI_0_2"),
    (Cap::DeviceCtrl, "KVM_CAP_DEVICE_CTRL"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];

/// `/dev/kvm` on an aarch64 host.
pub struct KvmArm64 {
    kvm: Kvm,
}

impl Hypervisor for KvmArm64 {
    type Vm = KvmVm;

    fn name(&self) -> &'static str {
        "KVM aarch64"
    }

    fn open() -> Result<Self> {
        let kvm = Kvm::new().map_err(|e| Error::OpenHypervisor {
            path: "/dev/kvm",
            source: e.into(),
        })?;
        for (cap, name) in REQUIRED_CAPS {
            if !kvm.check_extension(*cap) {
                return Err(Error::MissingCapability(name));
            }
        }
        Ok(Self { kvm })
    }

    fn max_vcpus(&self) -> u32 {
        (self.kvm.get_max_vcpus() as u32).min(layout::MAX_VCPUS)
    }

    fn create_vm(&self, config: &VmConfig) -> Result<KvmVm> {
        if config.memory_bytes < MIN_MEMORY {
            return Err(Error::Config(format!(
                "guest memory must be at least {} MiB",
                MIN_MEMORY >> 20
            )));
        }
        if config.vcpus == 0 || config.vcpus > self.max_vcpus() {
            return Err(Error::Config(format!(
                "vCPU count must be 1..={}",
                self.max_vcpus()
            )));
        }
        let layout = layout::memory_layout(config.memory_bytes).ok_or_else(|| {
            Error::Config(format!(
                "{} bytes of memory do not fit the address space",
                config.memory_bytes
            ))
        })?;
        let memory = map_guest_memory(&layout)?;

        let fd = self
            .kvm
            .create_vm()
            .map_err(|e| Error::hv("KVM_CREATE_VM", e))?;
        for (slot, region) in memory.iter().enumerate() {
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|e| Error::GuestMemory {
                    bytes: region.len(),
                    reason: e.to_string(),
                })?;
            let slot_desc = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live anonymous mapping owned by `memory`, which the
            // returned KvmVm keeps for as long as the VM (and so the slot) exists.
            unsafe { fd.set_user_memory_region(slot_desc) }
                .map_err(|e| Error::hv("KVM_SET_USER_MEMORY_REGION", e))?;
        }
        let gic = Vgic::create(&fd, config.vcpus)?;
        log::debug!("vGIC {:?} for {} vCPUs", gic.version(), config.vcpus);

        Ok(KvmVm {
            fd,
            memory,
            layout,
            platform: Platform {
                serial: Some(layout::UART),
                rtc: Some(layout::RTC),
                cmos: None,
                acpi_pm: None,
                boot_timer: Some(layout::BOOT_TIMER),
                ..Default::default()
            },
            gic,
            pending_irqfds: Mutex::new(Vec::new()),
            gic_ready: false,
            virtio: Vec::new(),
            vcpus: config.vcpus,
            entry: None,
        })
    }
}

fn map_guest_memory(layout: &MemoryLayout) -> Result<GuestMemory> {
    let ranges: Vec<(GuestAddress, usize)> = layout
        .ram
        .iter()
        .map(|r| (GuestAddress(r.start), r.size as usize))
        .collect();
    GuestMemory::from_ranges(&ranges).map_err(|e| Error::GuestMemory {
        bytes: layout.ram_bytes(),
        reason: e.to_string(),
    })
}

/// A KVM VM with an in-kernel vGIC (v3, else v2).
pub struct KvmVm {
    fd: VmFd,
    memory: GuestMemory,
    layout: MemoryLayout,
    platform: Platform,
    gic: Vgic,
    /// irqfds asked for before the vGIC was initialised: KVM refuses `KVM_IRQFD` until
    /// then (`EAGAIN`), so they are registered at the end of `create_vcpus`. A trigger in
    /// between stays counted in the eventfd and is injected once registered.
    pending_irqfds: Mutex<Vec<(EventFd, u32)>>,
    gic_ready: bool,
    virtio: Vec<VirtioMmioNode>,
    vcpus: u32,
    entry: Option<BootEntry>,
}

impl KvmVm {
    /// Describe a virtio-mmio device in the device tree `load` writes (call before it).
    /// The VMM places the transport on the MMIO bus at `node.base` and binds its interrupt
    /// line with `interrupt_line(node.spi)`.
    pub fn add_virtio_mmio(&mut self, node: VirtioMmioNode) {
        self.virtio.push(node);
    }

    fn register_irqfd(&self, event: &EventFd, spi: u32) -> Result<()> {
        self.fd
            .register_irqfd(event, spi)
            .map_err(|e| Error::hv("KVM_IRQFD", e))
    }

    /// The GIC the guest got.
    pub fn gic_version(&self) -> GicVersion {
        self.gic.version()
    }
}

/// An interrupt line backed by an irqfd bound to a GIC SPI (KVM's default arm64 routing
/// maps GSI n to SPI n, INTID 32 + n).
struct IrqfdLine {
    event: EventFd,
}

impl InterruptLine for IrqfdLine {
    fn trigger(&self) -> std::io::Result<()> {
        self.event.write(1)
    }
}

impl Vm for KvmVm {
    type Vcpu = KvmVcpu;

    fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    fn platform(&self) -> &Platform {
        &self.platform
    }

    fn interrupt_line(&self, irq: u32) -> Result<Arc<dyn InterruptLine>> {
        if irq >= layout::GIC_NR_SPIS {
            return Err(Error::Config(format!(
                "interrupt {irq} is not one of the vGIC's {} SPIs",
                layout::GIC_NR_SPIS
            )));
        }
        let event = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::hv("eventfd", e))?;
        if self.gic_ready {
            self.register_irqfd(&event, irq)?;
        } else {
            let kvm_side = event.try_clone().map_err(|e| Error::hv("eventfd dup", e))?;
            self.pending_irqfds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((kvm_side, irq));
        }
        Ok(Arc::new(IrqfdLine { event }))
    }

    fn load(&mut self, request: &mut BootRequest) -> Result<()> {
        let machine = Machine {
            vcpus: self.vcpus,
            gic: self.gic.version(),
            platform: &self.platform,
            virtio: &self.virtio,
        };
        self.entry = Some(loader::load(&self.memory, &self.layout, request, &machine)?);
        Ok(())
    }

    fn create_vcpus(&mut self) -> Result<Vec<KvmVcpu>> {
        let entry = self.entry.ok_or_else(|| Error::VcpuFault {
            vcpu: 0,
            reason: "no kernel loaded before the vCPUs were created".into(),
        })?;
        let mut target = kvm_bindings::kvm_vcpu_init::default();
        self.fd
            .get_preferred_target(&mut target)
            .map_err(|e| Error::hv("KVM_ARM_PREFERRED_TARGET", e))?;
        let vcpus = (0..self.vcpus)
            .map(|index| KvmVcpu::new(&self.fd, index, &target, entry))
            .collect::<Result<Vec<_>>>()?;
        // The vGIC sizes its redistributors/CPU interfaces from the vCPUs that exist now.
        self.gic.finalize()?;
        self.gic_ready = true;
        let pending = std::mem::take(
            &mut *self
                .pending_irqfds
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for (event, spi) in &pending {
            self.register_irqfd(event, *spi)?;
        }
        Ok(vcpus)
    }
}
