// SPDX-License-Identifier: Apache-2.0
//! The in-kernel vGIC: GICv3 when the host can, else GICv2, at the addresses in
//! [`crate::layout`].

use arch::{Error, Result};
use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2,
    kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3, KVM_DEV_ARM_VGIC_CTRL_INIT,
    KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
    KVM_VGIC_V2_ADDR_TYPE_CPU, KVM_VGIC_V2_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_DIST,
    KVM_VGIC_V3_ADDR_TYPE_REDIST,
};
use kvm_ioctls::{DeviceFd, VmFd};

use crate::fdt::GicVersion;
use crate::layout;

/// A created vGIC device.
pub struct Vgic {
    fd: DeviceFd,
    version: GicVersion,
}

impl Vgic {
    /// Create the vGIC for `vcpus` vCPUs: v3 first, v2 if the host has no v3 (e.g. a
    /// GICv2 host, or v3 without the system-register interface), and set its addresses and
    /// interrupt count. It is initialised by [`Vgic::finalize`] once every vCPU exists.
    pub fn create(vm: &VmFd, vcpus: u32) -> Result<Self> {
        let v3 = create_device(vm, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3);
        let gic = match v3 {
            Ok(fd) => {
                let gic = Self {
                    fd,
                    version: GicVersion::V3,
                };
                gic.set_addr(KVM_VGIC_V3_ADDR_TYPE_DIST, layout::GIC_DIST_BASE)?;
                gic.set_addr(KVM_VGIC_V3_ADDR_TYPE_REDIST, layout::GIC_REDIST_BASE)?;
                gic
            }
            Err(v3_err) => {
                if vcpus > layout::MAX_VCPUS_GICV2 {
                    return Err(Error::Vcpus(format!(
                        "this host has no GICv3 ({v3_err}); a GICv2 guest has at most {} vCPUs",
                        layout::MAX_VCPUS_GICV2
                    )));
                }
                log::info!("no in-kernel GICv3 ({v3_err}); using GICv2");
                let fd = create_device(vm, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V2)
                    .map_err(|e| Error::hv("KVM_CREATE_DEVICE (vGIC v2 after v3 failed)", e))?;
                let gic = Self {
                    fd,
                    version: GicVersion::V2,
                };
                gic.set_addr(KVM_VGIC_V2_ADDR_TYPE_DIST, layout::GIC_DIST_BASE)?;
                gic.set_addr(KVM_VGIC_V2_ADDR_TYPE_CPU, layout::GIC_CPU_BASE)?;
                gic
            }
        };
        let nr_irqs: u32 = layout::GIC_NR_IRQS;
        gic.set_attr(
            "KVM_DEV_ARM_VGIC_GRP_NR_IRQS",
            KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
            0,
            &nr_irqs as *const u32 as u64,
        )?;
        Ok(gic)
    }

    pub fn version(&self) -> GicVersion {
        self.version
    }

    /// `KVM_DEV_ARM_VGIC_CTRL_INIT`: after all vCPUs are created, before any runs.
    pub fn finalize(&self) -> Result<()> {
        self.set_attr(
            "KVM_DEV_ARM_VGIC_CTRL_INIT",
            KVM_DEV_ARM_VGIC_GRP_CTRL,
            u64::from(KVM_DEV_ARM_VGIC_CTRL_INIT),
            0,
        )
    }

    fn set_addr(&self, kind: u32, addr: u64) -> Result<()> {
        self.set_attr(
            "KVM_DEV_ARM_VGIC_GRP_ADDR",
            KVM_DEV_ARM_VGIC_GRP_ADDR,
            u64::from(kind),
            &addr as *const u64 as u64,
        )
    }

    /// `addr` points at the attribute's value (or is 0); the value outlives the call.
    fn set_attr(&self, op: &'static str, group: u32, attr: u64, addr: u64) -> Result<()> {
        let attr = kvm_device_attr {
            flags: 0,
            group,
            attr,
            addr,
        };
        self.fd.set_device_attr(&attr).map_err(|e| Error::hv(op, e))
    }
}

fn create_device(vm: &VmFd, type_: u32) -> std::result::Result<DeviceFd, kvm_ioctls::Error> {
    let mut dev = kvm_create_device {
        type_,
        fd: 0,
        flags: 0,
    };
    vm.create_device(&mut dev)
}
