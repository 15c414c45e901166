// SPDX-License-Identifier: Apache-2.0
//! The aarch64 objects floor: a VM with RAM at polyvisor's `RAM_START`, the guest `Image` at
//! its start, one vCPU initialised as polyvisor does (preferred target, PSCI 0.2, the same
//! boot registers) and, if asked, the vGIC polyvisor creates (v3, else v2, at its addresses,
//! with its interrupt count) and irqfds on SPIs. Runs until PSCI `SYSTEM_OFF`.

use arch_aarch64::{layout, regs};
use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2,
    kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3, kvm_userspace_memory_region, KVM_ARM_VCPU_PSCI_0_2,
    KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL,
    KVM_DEV_ARM_VGIC_GRP_NR_IRQS, KVM_SYSTEM_EVENT_SHUTDOWN, KVM_VGIC_V2_ADDR_TYPE_CPU,
    KVM_VGIC_V2_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST,
};
use kvm_ioctls::{DeviceFd, Kvm, VcpuExit, VmFd};
use vmm_sys_util::eventfd::EventFd;

use super::{Item, Objects};
use crate::mapping::Mapping;

fn set_attr(dev: &DeviceFd, group: u32, attr: u64, addr: u64) -> Result<(), String> {
    let a = kvm_device_attr {
        flags: 0,
        group,
        attr,
        addr,
    };
    dev.set_device_attr(&a)
        .map_err(|e| format!("KVM_SET_DEVICE_ATTR (group {group}, attr {attr}): {e}"))
}

fn create_device(vm: &VmFd, type_: u32) -> Result<DeviceFd, kvm_ioctls::Error> {
    let mut dev = kvm_create_device {
        type_,
        fd: 0,
        flags: 0,
    };
    vm.create_device(&mut dev)
}

/// The vGIC as `arch_aarch64::kvm::gic` makes it (before the vCPUs are created).
fn vgic(vm: &VmFd) -> Result<DeviceFd, String> {
    let (dev, addrs) = match create_device(vm, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3) {
        Ok(d) => (
            d,
            [
                (KVM_VGIC_V3_ADDR_TYPE_DIST, layout::GIC_DIST_BASE),
                (KVM_VGIC_V3_ADDR_TYPE_REDIST, layout::GIC_REDIST_BASE),
            ],
        ),
        Err(_) => (
            create_device(vm, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2)
                .map_err(|e| format!("KVM_CREATE_DEVICE (vGIC v3, then v2): {e}"))?,
            [
                (KVM_VGIC_V2_ADDR_TYPE_DIST, layout::GIC_DIST_BASE),
                (KVM_VGIC_V2_ADDR_TYPE_CPU, layout::GIC_CPU_BASE),
            ],
        ),
    };
    for (kind, addr) in addrs {
        set_attr(
            &dev,
            KVM_DEV_ARM_VGIC_GRP_ADDR,
            u64::from(kind),
            &addr as *const u64 as u64,
        )?;
    }
    let nr_irqs: u32 = layout::GIC_NR_IRQS;
    set_attr(
        &dev,
        KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
        0,
        &nr_irqs as *const u32 as u64,
    )?;
    Ok(dev)
}

pub fn run(guest: &[u8], memory: u64, objects: &Objects) -> Result<(), String> {
    // Declared before the VM, so that it is dropped after it on every path.
    let ram = Mapping::new(memory as usize, 1)?;
    let kvm = Kvm::new().map_err(|e| format!("/dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: layout::RAM_START,
        memory_size: memory,
        userspace_addr: ram.host as u64,
    };
    // SAFETY: `ram` is unmapped only after the VM is dropped: it was declared first (and
    // the explicit drops at the end keep that order).
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    ram.write(0, guest)?;

    let gic = if objects.has(Item::Vgic) {
        Some(vgic(&vm)?)
    } else {
        None
    };
    let mut target = kvm_bindings::kvm_vcpu_init::default();
    vm.get_preferred_target(&mut target)
        .map_err(|e| format!("KVM_ARM_PREFERRED_TARGET: {e}"))?;
    target.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    vcpu.vcpu_init(&target)
        .map_err(|e| format!("KVM_ARM_VCPU_INIT: {e}"))?;
    // The FDT address polyvisor would pass; this guest never reads it.
    let fdt = layout::RAM_START + memory - (2 << 20);
    for (id, value) in regs::boot_registers(layout::RAM_START, fdt) {
        vcpu.set_one_reg(id, &value.to_ne_bytes())
            .map_err(|e| format!("KVM_SET_ONE_REG: {e}"))?;
    }
    if let Some(gic) = &gic {
        set_attr(
            gic,
            KVM_DEV_ARM_VGIC_GRP_CTRL,
            u64::from(KVM_DEV_ARM_VGIC_CTRL_INIT),
            0,
        )?;
    }
    // Kept until the VM is dropped, as polyvisor keeps its interrupt lines.
    let mut lines = Vec::new();
    for spi in objects.irqfd_spis() {
        let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
        vm.register_irqfd(&fd, spi)
            .map_err(|e| format!("KVM_IRQFD (SPI {spi}): {e}"))?;
        lines.push(fd);
    }

    let result = loop {
        match vcpu.run() {
            Ok(VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, _)) => break Ok(()),
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                break Err(format!(
                    "the guest sent system event {kind}, not SYSTEM_OFF"
                ))
            }
            Ok(VcpuExit::MmioRead(addr, _) | VcpuExit::MmioWrite(addr, _)) => {
                break Err(format!("the guest touched MMIO at {addr:#x}"))
            }
            Ok(VcpuExit::FailEntry(r, _)) => break Err(format!("KVM entry failed: {r:#x}")),
            Ok(VcpuExit::InternalError) => break Err("KVM internal error".into()),
            Ok(_) => {}
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => break Err(format!("KVM_RUN: {e}")),
        }
    };
    // Teardown in polyvisor's order: vCPU, interrupt lines and vGIC, VM, then its RAM.
    drop(vcpu);
    drop(lines);
    drop(gic);
    drop(vm);
    drop(ram);
    result
}
