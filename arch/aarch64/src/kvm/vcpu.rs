// SPDX-License-Identifier: Apache-2.0
//! An aarch64 KVM vCPU: `KVM_ARM_VCPU_INIT` with PSCI 0.2 (secondaries powered off until
//! the guest's PSCI `CPU_ON`, which KVM serves), the boot registers, and exit decoding.

use std::sync::Arc;

use arch::{Error, Result, Vcpu, VcpuExit, VcpuKicker};
use kvm_bindings::{
    kvm_vcpu_init, KVM_ARM_VCPU_POWER_OFF, KVM_ARM_VCPU_PSCI_0_2, KVM_SYSTEM_EVENT_CRASH,
};
use kvm_ioctls::{VcpuExit as KvmExit, VmFd};

use crate::loader::BootEntry;
use crate::regs;

/// One vCPU of a [`super::KvmVm`].
pub struct KvmVcpu {
    fd: arch_kvm::RunFd,
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
        let vcpu = Self {
            fd: arch_kvm::RunFd::new(fd),
            index,
        };
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
    fn kicker(&self) -> Arc<dyn VcpuKicker> {
        self.fd.kicker()
    }

    fn run(&mut self) -> Result<VcpuExit<'_>> {
        let index = self.index;
        arch_kvm::map_run(index, arch_kvm::run_vcpu(&mut self.fd), |exit| match exit {
            // PSCI SYSTEM_OFF / SYSTEM_RESET arrive as system events (mapped in arch-kvm);
            // a crash report is one too, and a board resets on it.
            KvmExit::SystemEvent(KVM_SYSTEM_EVENT_CRASH, _) => {
                log::warn!("vCPU {index}: the guest reported a crash (PSCI); resetting");
                Some(VcpuExit::Reset)
            }
            _ => None,
        })
    }
}
