//! An aarch64 KVM vCPU: `KVM_ARM_VCPU_INIT` with PSCI 0.2 (secondaries powered off until
//! the guest's PSCI `CPU_ON`, which KVM serves), the boot registers, and exit decoding.

use arch::{Error, Result, Vcpu, VcpuExit};
use kvm_bindings::{
    kvm_vcpu_init, KVM_ARM_VCPU_POWER_OFF, KVM_ARM_VCPU_PSCI_0_2, KVM_SYSTEM_EVENT_CRASH,
    KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit as KvmExit, VcpuFd, VmFd};

use crate::loader::BootEntry;
use crate::regs;

/// One vCPU of a [`super::KvmVm`].
pub struct KvmVcpu {
    fd: VcpuFd,
    index: u32,
}

impl KvmVcpu {
    pub(super) fn new(
        vm: &VmFd,
        index: u32,
        target: &kvm_vcpu_init,
        entry: BootEntry,
    ) -> Result<Self> {
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(|e| Error::hv("KVM_CREATE_VCPU", e))?;
        let mut init = *target;
        init.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
        if index > 0 {
            init.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
        }
        fd.vcpu_init(&init)
            .map_err(|e| Error::hv("KVM_ARM_VCPU_INIT", e))?;
        let vcpu = Self { fd, index };
        if index == 0 {
            for (id, value) in regs::boot_registers(entry.entry, entry.fdt_addr) {
                vcpu.fd
                    .set_one_reg(id, &value.to_ne_bytes())
                    .map_err(|e| Error::hv("KVM_SET_ONE_REG (boot registers)", e))?;
            }
        }
        Ok(vcpu)
    }
}

impl Vcpu for KvmVcpu {
    fn run(&mut self) -> Result<VcpuExit<'_>> {
        let index = self.index;
        match self.fd.run() {
            Ok(exit) => Ok(match exit {
                KvmExit::MmioRead(addr, data) => VcpuExit::MmioRead { addr, data },
                KvmExit::MmioWrite(addr, data) => VcpuExit::MmioWrite { addr, data },
                // PSCI SYSTEM_OFF / SYSTEM_RESET (and a crash report, which a board resets
                // on) arrive as system events.
                KvmExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, _) => VcpuExit::Poweroff,
                KvmExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, _) => VcpuExit::Reset,
                KvmExit::SystemEvent(KVM_SYSTEM_EVENT_CRASH, _) => {
                    log::warn!("vCPU {index}: the guest reported a crash (PSCI); resetting");
                    VcpuExit::Reset
                }
                KvmExit::Intr => VcpuExit::Interrupted,
                KvmExit::FailEntry(reason, cpu) => {
                    return Err(Error::VcpuFault {
                        vcpu: index,
                        reason: format!(
                            "KVM could not enter the guest (reason {reason:#x}, cpu {cpu})"
                        ),
                    })
                }
                KvmExit::InternalError => {
                    return Err(Error::VcpuFault {
                        vcpu: index,
                        reason: "KVM internal error".into(),
                    })
                }
                other => {
                    log::warn!("vCPU {index}: unexpected exit {other:?}; resuming");
                    VcpuExit::Handled
                }
            }),
            Err(e) if e.errno() == libc::EINTR => Ok(VcpuExit::Interrupted),
            Err(e) if e.errno() == libc::EAGAIN => Ok(VcpuExit::Handled),
            Err(e) => Err(Error::hv("KVM_RUN", e)),
        }
    }
}
