// SPDX-License-Identifier: Apache-2.0
//! The s390x objects floor: a VM with RAM from 0 (1 MiB aligned, as polyvisor maps it), the
//! raw guest image at 0, one vCPU reset and started at the IPL PSW as polyvisor starts it,
//! and, if asked, user SIGP, CSS support and the FLIC with its adapters, made with the same
//! `arch_s390x::kvm` calls polyvisor makes. Runs until the guest's disabled wait at the
//! quiesce address. The process needs page-status tables (`build.rs` links it with
//! `--s390-pgste`, as polyvisor is).

use arch_s390x::intercept::{code::WAIT as ICPT_WAIT, is_quiesce_wait};
use arch_s390x::ipl::{IPL_PSW_ADDR, IPL_PSW_MASK};
use arch_s390x::kvm::bindings::{
    KvmS390Psw, KvmUserspaceMemoryRegion, KVM_CAP_S390_CSS_SUPPORT, KVM_CAP_S390_USER_SIGP,
    KVM_EXIT_S390_SIEIC,
};
use arch_s390x::kvm::ioctls::Kvm;

use super::{Item, Objects};
use crate::mapping::Mapping;

/// s390x KVM maps guest memory in 1 MiB segments.
const SEGMENT: usize = 1 << 20;

pub fn run(guest: &[u8], memory: u64, objects: &Objects) -> Result<(), String> {
    // Declared before the VM, so that it is dropped after it on every path.
    let ram = Mapping::new(memory as usize, SEGMENT)?;
    let kvm = Kvm::open().map_err(|e| format!("/dev/kvm: {e}"))?;
    let mmap_size = kvm
        .vcpu_mmap_size()
        .map_err(|e| format!("KVM_GET_VCPU_MMAP_SIZE: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| {
        format!("KVM_CREATE_VM: {e} (a process without page-status tables gets EINVAL)")
    })?;
    if objects.has(Item::UserSigp) {
        vm.enable_cap(KVM_CAP_S390_USER_SIGP)
            .map_err(|e| format!("KVM_ENABLE_CAP(KVM_CAP_S390_USER_SIGP): {e}"))?;
    }
    let region = KvmUserspaceMemoryRegion {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: memory,
        userspace_addr: ram.host as u64,
    };
    // SAFETY: `ram` is a private anonymous mapping used only as this guest's memory and
    // unmapped only after the VM is dropped (declared first; explicit drops at the end).
    unsafe { vm.set_user_memory_region(&region) }
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    ram.write(0, guest)?;

    let flic = if objects.has(Item::Flic) {
        Some(vm.create_adapter_flic()?)
    } else {
        None
    };

    let mut vcpu = vm
        .create_vcpu(0, mmap_size)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    vcpu.initial_reset()
        .map_err(|e| format!("KVM_S390_INITIAL_RESET: {e}"))?;
    vcpu.set_initial_psw(&KvmS390Psw {
        mask: IPL_PSW_MASK,
        addr: IPL_PSW_ADDR,
    })
    .map_err(|e| format!("KVM_S390_SET_INITIAL_PSW: {e}"))?;
    if objects.has(Item::CssSupport) {
        vcpu.enable_cap(KVM_CAP_S390_CSS_SUPPORT)
            .map_err(|e| format!("KVM_ENABLE_CAP(KVM_CAP_S390_CSS_SUPPORT): {e}"))?;
    }

    let result = loop {
        match vcpu.run() {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) => continue,
            Err(e) => break Err(format!("KVM_RUN: {e}")),
        }
        let run = vcpu.run_struct();
        if run.exit_reason != KVM_EXIT_S390_SIEIC {
            break Err(format!("unexpected exit {}", run.exit_reason));
        }
        // SAFETY: KVM_EXIT_S390_SIEIC fills the `s390_sieic` member of the exit union.
        let sieic = unsafe { run.exit.s390_sieic };
        if sieic.icptcode == ICPT_WAIT && is_quiesce_wait(run.psw_addr) {
            break Ok(());
        }
        break Err(format!(
            "unexpected intercept {:#x} (ipa {:#06x}) at {:#x}",
            sieic.icptcode, sieic.ipa, run.psw_addr
        ));
    };
    // Teardown in polyvisor's order: vCPU, FLIC, VM, then its RAM.
    drop(vcpu);
    drop(flic);
    drop(vm);
    drop(ram);
    result
}
