// SPDX-License-Identifier: Apache-2.0
//! KVM glue for x86_64 hosts: the VM, its memory slots, interrupt lines and vCPUs.

mod loader;
mod vcpu;

use std::sync::{Arc, Mutex};

use arch::{
    BootRequest, Error, GuestMemory, Hypervisor, MemoryLayout, Platform, PlatformDevice, Result,
    VirtioTransport, Vm, VmConfig,
};
use devices::virtio::{MmioTransport, VirtioDevice};
use devices::InterruptLine;
use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, Kvm, VmFd};

use crate::cpuid::CpuidEntry;
use crate::layout::{self, KVM_IDENTITY_MAP_ADDR, KVM_TSS_ADDR, MIN_MEMORY};
pub use loader::{load as load_kernel, BootEntry};
pub use vcpu::KvmVcpu;

/// Capabilities this backend cannot run without.
const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];

/// `/dev/kvm` on an x86_64 host.
pub struct KvmX86 {
    kvm: Kvm,
}

impl Hypervisor for KvmX86 {
    type Vm = KvmVm;

    fn name(&self) -> &'static str {
        "KVM x86_64"
    }

    fn open() -> Result<Self> {
        Ok(Self {
            kvm: arch_kvm::open(REQUIRED_CAPS)?,
        })
    }

    fn max_vcpus(&self) -> u32 {
        (self.kvm.get_max_vcpus() as u32).min(crate::mptable::MAX_CPUS)
    }

    fn create_vm(&self, config: &VmConfig) -> Result<KvmVm> {
        config.check(MIN_MEMORY, self.max_vcpus())?;
        let layout = layout::memory_layout(config.memory_bytes).ok_or_else(|| {
            Error::Memory(format!(
                "{} bytes of memory do not fit the address space",
                config.memory_bytes
            ))
        })?;
        let memory = layout.allocate()?;
        let fd = arch_kvm::create_vm(&self.kvm, &memory)?;
        // Both before any vCPU exists, inside the MMIO hole.
        fd.set_identity_map_address(KVM_IDENTITY_MAP_ADDR)
            .map_err(|e| Error::hv("KVM_SET_IDENTITY_MAP_ADDR", e))?;
        fd.set_tss_address(KVM_TSS_ADDR as usize)
            .map_err(|e| Error::hv("KVM_SET_TSS_ADDR", e))?;
        fd.create_irq_chip()
            .map_err(|e| Error::hv("KVM_CREATE_IRQCHIP", e))?;
        // The PIT only on request: Linux calibrates from kvmclock and the LAPIC timer, and
        // the PIT's kernel thread and timer make every VM's teardown several ms slower.
        if config.pit {
            if !self.kvm.check_extension(Cap::Pit2) {
                return Err(Error::Pit(
                    "this host's KVM has no in-kernel PIT (KVM_CAP_PIT2)".into(),
                ));
            }
            let pit = kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..Default::default()
            };
            fd.create_pit2(pit)
                .map_err(|e| Error::hv("KVM_CREATE_PIT2", e))?;
        }

        let cpuid = self
            .kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| Error::hv("KVM_GET_SUPPORTED_CPUID", e))?
            .as_slice()
            .iter()
            .map(|e| CpuidEntry {
                function: e.function,
                index: e.index,
                flags: e.flags,
                eax: e.eax,
                ebx: e.ebx,
                ecx: e.ecx,
                edx: e.edx,
            })
            .collect();

        Ok(KvmVm {
            fd,
            memory,
            layout,
            platform: layout::platform(),
            cpuid,
            virtio: Vec::new(),
            vcpus: config.vcpus,
            entry: None,
        })
    }
}

/// A KVM VM with an in-kernel LAPIC/IOAPIC/PIC (and the PIT when asked for).
pub struct KvmVm {
    fd: VmFd,
    memory: GuestMemory,
    layout: MemoryLayout,
    platform: Platform,
    cpuid: Vec<CpuidEntry>,
    /// virtio-mmio windows handed out, in slot order; the DSDT describes them.
    virtio: Vec<PlatformDevice>,
    vcpus: u32,
    entry: Option<BootEntry>,
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
        arch_kvm::IrqfdLine::bound(&self.fd, irq)
    }

    /// virtio-mmio in the next free slot of the virtio window (described in the DSDT),
    /// interrupting through the slot's I/O APIC pin.
    fn add_virtio_device(
        &mut self,
        device: Box<dyn VirtioDevice>,
    ) -> Result<Option<VirtioTransport>> {
        let slot = self.virtio.len() as u32;
        let window = layout::virtio_mmio_slot(slot).ok_or_else(|| {
            Error::Config(format!(
                "at most {} virtio devices fit the virtio-mmio window",
                layout::VIRTIO_MMIO_SLOTS
            ))
        })?;
        let gsi = window.irq.unwrap_or(layout::VIRTIO_MMIO_FIRST_GSI + slot);
        let line = self.interrupt_line(gsi)?;
        let transport = MmioTransport::new(device, self.memory.clone(), line);
        arch_kvm::bind_queue_notifies(&self.fd, &transport, window.base)?;
        self.virtio.push(window);
        Ok(Some(VirtioTransport {
            window,
            device: Arc::new(Mutex::new(transport)),
        }))
    }

    fn load(&mut self, request: &mut BootRequest) -> Result<()> {
        let entry = loader::load(&self.memory, &self.layout, request)?;
        crate::mptable::write(&self.memory, layout::MPTABLE_ADDR, self.vcpus).map_err(|e| {
            Error::GuestWrite {
                what: "MP table",
                reason: e.to_string(),
            }
        })?;
        // The MP table stays: it is what a guest booted with `acpi=off` finds.
        let machine = crate::acpi::Machine {
            cpus: self.vcpus,
            platform: &self.platform,
            virtio: &self.virtio,
        };
        crate::acpi::write(&self.memory, layout::RSDP_ADDR, &machine).map_err(|e| {
            Error::GuestWrite {
                what: "ACPI tables",
                reason: e.to_string(),
            }
        })?;
        self.entry = Some(entry);
        Ok(())
    }

    fn create_vcpus(&mut self) -> Result<Vec<KvmVcpu>> {
        let entry = self.entry.ok_or_else(|| Error::VcpuFault {
            vcpu: 0,
            reason: "no kernel loaded before the vCPUs were created".into(),
        })?;
        // APs stay in wait-for-SIPI in the in-kernel LAPIC; nothing to finish afterwards.
        (0..self.vcpus)
            .map(|index| KvmVcpu::new(self, index, entry))
            .collect()
    }
}
