// SPDX-License-Identifier: Apache-2.0
//! KVM glue for aarch64 hosts: the VM, its memory slots, the vGIC, interrupt lines and
//! vCPUs.

mod gic;
mod vcpu;

use std::sync::{Arc, Mutex};

use arch::{
    BootRequest, BusKind, DeviceKind, Error, GuestMemory, Hypervisor, MemoryLayout, Platform,
    PlatformDevice, Result, VirtioTransport, Vm, VmConfig,
};
use arch_kvm::IrqfdLine;
use devices::virtio::{MmioTransport, VirtioDevice};
use devices::InterruptLine;
use kvm_ioctls::{Cap, Kvm, VmFd};

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
        Ok(Self {
            kvm: arch_kvm::open(REQUIRED_CAPS)?,
        })
    }

    fn max_vcpus(&self) -> u32 {
        (self.kvm.get_max_vcpus() as u32).min(layout::MAX_VCPUS)
    }

    fn create_vm(&self, config: &VmConfig) -> Result<KvmVm> {
        config.check(MIN_MEMORY, self.max_vcpus())?;
        config.refuse_pit("aarch64")?;
        let layout = layout::memory_layout(config.memory_bytes).ok_or_else(|| {
            Error::Memory(format!(
                "{} bytes of memory do not fit the address space",
                config.memory_bytes
            ))
        })?;
        let memory = layout.allocate()?;
        let fd = arch_kvm::create_vm(&self.kvm, &memory)?;
        let gic = Vgic::create(&fd, config.vcpus)?;
        log::debug!("vGIC {:?} for {} vCPUs", gic.version(), config.vcpus);

        Ok(KvmVm {
            fd,
            memory,
            layout,
            platform: layout::platform(),
            gic,
            pending_irqfds: Mutex::new(Vec::new()),
            gic_ready: false,
            virtio: Vec::new(),
            vcpus: config.vcpus,
            entry: None,
        })
    }
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
    pending_irqfds: Mutex<Vec<(Arc<IrqfdLine>, u32)>>,
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

    /// The GIC the guest got.
    pub fn gic_version(&self) -> GicVersion {
        self.gic.version()
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
        // KVM's default arm64 routing maps GSI n to SPI n (INTID 32 + n).
        let line = Arc::new(IrqfdLine::new()?);
        if self.gic_ready {
            line.bind(&self.fd, irq)?;
        } else {
            self.pending_irqfds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((line.clone(), irq));
        }
        Ok(line)
    }

    /// virtio-mmio in the next free slot of the virtio window, described in the FDT,
    /// interrupting through the slot's SPI.
    fn add_virtio_device(
        &mut self,
        device: Box<dyn VirtioDevice>,
    ) -> Result<Option<VirtioTransport>> {
        let slot = self.virtio.len() as u32;
        let node = VirtioMmioNode::slot(slot).ok_or_else(|| {
            Error::Config(format!(
                "at most {} virtio devices fit the virtio-mmio window",
                layout::VIRTIO_MMIO_SLOTS
            ))
        })?;
        let line = self.interrupt_line(node.spi)?;
        let transport = MmioTransport::new(device, self.memory.clone(), line);
        arch_kvm::bind_queue_notifies(&self.fd, &transport, node.base)?;
        self.add_virtio_mmio(node);
        Ok(Some(VirtioTransport {
            window: PlatformDevice {
                kind: DeviceKind::VirtioMmio,
                bus: BusKind::Mmio,
                base: node.base,
                len: node.size,
                irq: Some(node.spi),
            },
            device: Arc::new(Mutex::new(transport)),
        }))
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
        for (line, spi) in &pending {
            line.bind(&self.fd, *spi)?;
        }
        Ok(vcpus)
    }
}
