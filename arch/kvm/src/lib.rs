// SPDX-License-Identifier: Apache-2.0
//! What the kvm-ioctls backends (x86_64, aarch64) do the same way: opening `/dev/kvm` and
//! checking capabilities, creating a VM with its guest memory slots, irqfd interrupt lines,
//! and turning the exits and errors common to both into [`arch::VcpuExit`]s. s390x has its
//! own KVM layer (kvm-ioctls does not build there), so on other hosts this crate is empty.
#![cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]

mod kick;

use std::sync::Arc;

use arch::{Error, GuestMemory, Result, VcpuExit};
use devices::InterruptLine;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Cap, Kvm, VcpuExit as KvmExit, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
use vmm_sys_util::eventfd::EventFd;

pub use kick::RunFd;

const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const KVM_SYSTEM_EVENT_RESET: u32 = 2;

/// Open `/dev/kvm` and check that it has every capability in `required` (with its name
/// for the error).
pub fn open(required: &[(Cap, &'static str)]) -> Result<Kvm> {
    let kvm = Kvm::new().map_err(|e| Error::OpenHypervisor {
        path: "/dev/kvm",
        source: e.into(),
    })?;
    for (cap, name) in required {
        if !kvm.check_extension(*cap) {
            return Err(Error::MissingCapability(name));
        }
    }
    Ok(kvm)
}

/// Create a VM and give it `memory`, one slot per region.
pub fn create_vm(kvm: &Kvm, memory: &GuestMemory) -> Result<VmFd> {
    let fd = kvm.create_vm().map_err(|e| Error::hv("KVM_CREATE_VM", e))?;
    for (slot, region) in memory.iter().enumerate() {
        let host = region
            .get_host_address(MemoryRegionAddress(0))
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
        // backend's VM keeps for as long as the VM (and so the slot) exists.
        unsafe { fd.set_user_memory_region(slot_desc) }
            .map_err(|e| Error::hv("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    Ok(fd)
}

/// An interrupt line backed by an irqfd (bound to a GSI on x86, a GIC SPI on arm64).
pub struct IrqfdLine {
    event: EventFd,
}

impl IrqfdLine {
    /// A new, not yet bound line.
    pub fn new() -> Result<Self> {
        let event = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::hv("eventfd", e))?;
        Ok(Self { event })
    }

    /// Bind the line to `gsi` of `vm`.
    pub fn bind(&self, vm: &VmFd, gsi: u32) -> Result<()> {
        vm.register_irqfd(&self.event, gsi)
            .map_err(|e| Error::hv("KVM_IRQFD", e))
    }

    /// A new line bound to `gsi` at once.
    pub fn bound(vm: &VmFd, gsi: u32) -> Result<Arc<dyn InterruptLine>> {
        let line = Self::new()?;
        line.bind(vm, gsi)?;
        Ok(Arc::new(line))
    }
}

impl InterruptLine for IrqfdLine {
    fn trigger(&self) -> std::io::Result<()> {
        self.event.write(1)
    }

    fn event(&self) -> Option<&EventFd> {
        Some(&self.event)
    }
}

/// Bind each of `transport`'s queue-notify `EventFd`s to its `QueueNotify` register at
/// `base` (a 4-byte write of the queue index), so a driver's notify wakes the device's
/// worker inside KVM, without an exit to the VMM.
pub fn bind_queue_notifies(
    vm: &VmFd,
    transport: &devices::virtio::MmioTransport,
    base: u64,
) -> Result<()> {
    let addr = base + devices::virtio::mmio::reg::QUEUE_NOTIFY;
    for (queue, event) in transport.queue_notify_events() {
        vm.register_ioevent(&event, &kvm_ioctls::IoEventAddress::Mmio(addr), queue)
            .map_err(|e| Error::hv("KVM_IOEVENTFD", e))?;
    }
    Ok(())
}

/// `KVM_RUN` once, with the element size of a port exit (1, 2 or 4 bytes), which
/// kvm-ioctls's exit does not carry: a string instruction (`rep insb`) exits once with all
/// its elements, and each must reach the device as its own access. The size is 0 for other
/// exits.
///
/// A run cut short by a kick or a signal (`EINTR`, `KVM_EXIT_INTR`) clears the kick
/// ([`RunFd::kicker`]) before it returns: the caller looks at its requests next.
pub fn run_vcpu(fd: &mut RunFd) -> (std::result::Result<KvmExit<'_>, kvm_ioctls::Error>, usize) {
    let (vcpu, kick) = fd.parts();
    let run: *const kvm_bindings::kvm_run = vcpu.get_kvm_run();
    let exit = vcpu.run();
    if matches!(&exit, Err(e) if e.errno() == libc::EINTR) || matches!(exit, Ok(KvmExit::Intr)) {
        kick.clear();
    }
    let size = match exit {
        Ok(KvmExit::IoIn(..) | KvmExit::IoOut(..)) => {
            // SAFETY: `run` points to the vCPU's kvm_run mapping, which lives as long as
            // `fd`; the exit reason says the `io` member of the union is the valid one, and
            // it lies in the structure's header, apart from the data area the exit's slice
            // borrows.
            let size =
                unsafe { std::ptr::addr_of!((*run).__bindgen_anon_1.io.size).read_volatile() };
            usize::from(size)
        }
        _ => 0,
    };
    (exit, size)
}

/// Map the outcome of `KVM_RUN` for vCPU `index`: the exits every kvm-ioctls backend has
/// become [`VcpuExit`]s; `arch_exit` is asked about the rest (return `None` for "log it and
/// resume").
pub fn map_run<'a>(
    index: u32,
    (run, io_size): (std::result::Result<KvmExit<'a>, kvm_ioctls::Error>, usize),
    arch_exit: impl FnOnce(&KvmExit<'a>) -> Option<VcpuExit<'a>>,
) -> Result<VcpuExit<'a>> {
    let fault = |reason: String| Error::VcpuFault {
        vcpu: index,
        reason,
    };
    let exit = match run {
        Ok(exit) => exit,
        Err(e) if e.errno() == libc::EINTR => return Ok(VcpuExit::Interrupted),
        Err(e) if e.errno() == libc::EAGAIN => return Ok(VcpuExit::Handled),
        Err(e) => return Err(Error::hv("KVM_RUN", e)),
    };
    Ok(match exit {
        KvmExit::IoIn(port, data) => VcpuExit::IoIn {
            port,
            size: io_size,
            data,
        },
        KvmExit::IoOut(port, data) => VcpuExit::IoOut {
            port,
            size: io_size,
            data,
        },
        KvmExit::MmioRead(addr, data) => VcpuExit::MmioRead { addr, data },
        KvmExit::MmioWrite(addr, data) => VcpuExit::MmioWrite { addr, data },
        KvmExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, _) => VcpuExit::Poweroff,
        KvmExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, _) => VcpuExit::Reset,
        KvmExit::Intr => VcpuExit::Interrupted,
        KvmExit::FailEntry(reason, cpu) => {
            return Err(fault(format!(
                "KVM could not enter the guest (hardware reason {reason:#x}, cpu {cpu})"
            )))
        }
        KvmExit::InternalError => {
            return Err(fault(
                "KVM internal error (the host could not emulate a guest instruction)".into(),
            ))
        }
        other => match arch_exit(&other) {
            Some(mapped) => mapped,
            None => {
                log::warn!("vCPU {index}: unexpected exit {other:?}; resuming");
                VcpuExit::Handled
            }
        },
    })
}
