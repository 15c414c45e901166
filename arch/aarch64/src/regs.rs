// SPDX-License-Identifier: Apache-2.0
//! KVM `ONE_REG` ids and values for the arm64 boot state. Plain arithmetic, so it is
//! compiled and tested everywhere; the aarch64 KVM glue checks it against kvm-bindings.
//!
//! arm64 boot protocol (Documentation/arch/arm64/booting.rst): x0 = physical address of
//! the FDT, x1..x3 = 0, PC = kernel entry, EL1h with D, A, I and F masked, MMU off.

const KVM_REG_ARM64: u64 = 0x6000_0000_0000_0000;
const KVM_REG_SIZE_U64: u64 = 0x0030_0000_0000_0000;
const KVM_REG_ARM_CORE: u64 = 0x0010 << 16;

/// The id of the 64-bit core register at byte `offset` in `struct kvm_regs`.
pub const fn core_reg(offset: u64) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | (offset / 4)
}

/// `kvm_regs.regs` is `user_pt_regs { regs[31], sp, pc, pstate }`.
pub const fn x_reg(n: u64) -> u64 {
    core_reg(n * 8)
}
pub const PC: u64 = core_reg(32 * 8);
pub const PSTATE: u64 = core_reg(33 * 8);

const PSR_MODE_EL1H: u64 = 0x5;
const PSR_F_BIT: u64 = 1 << 6;
const PSR_I_BIT: u64 = 1 << 7;
const PSR_A_BIT: u64 = 1 << 8;
const PSR_D_BIT: u64 = 1 << 9;
/// EL1 with SP_EL1, all of DAIF masked.
pub const PSTATE_BOOT: u64 = PSR_MODE_EL1H | PSR_F_BIT | PSR_I_BIT | PSR_A_BIT | PSR_D_BIT;

/// The registers vCPU 0 starts with, in the order they are set.
pub fn boot_registers(entry: u64, fdt_addr: u64) -> [(u64, u64); 6] {
    [
        (PSTATE, PSTATE_BOOT),
        (x_reg(0), fdt_addr),
        (x_reg(1), 0),
        (x_reg(2), 0),
        (x_reg(3), 0),
        (PC, entry),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_values() {
        assert_eq!(x_reg(0), 0x6030_0000_0010_0000);
        assert_eq!(x_reg(1), 0x6030_0000_0010_0002);
        assert_eq!(PC, 0x6030_0000_0010_0040);
        assert_eq!(PSTATE, 0x6030_0000_0010_0042);
        assert_eq!(PSTATE_BOOT, 0x3c5);
        let regs = boot_registers(0x4000_0000, 0x4fe0_0000);
        assert_eq!(regs[1], (x_reg(0), 0x4fe0_0000));
        assert_eq!(regs[5], (PC, 0x4000_0000));
    }

    /// The same ids as kvm-bindings computes them, where kvm-bindings exists.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn match_kvm_bindings() {
        use kvm_bindings::{
            kvm_regs, user_pt_regs, KVM_REG_ARM64, KVM_REG_ARM_CORE, KVM_REG_SIZE_U64,
        };
        let id = |off: usize| {
            KVM_REG_ARM64 | KVM_REG_SIZE_U64 | u64::from(KVM_REG_ARM_CORE) | (off / 4) as u64
        };
        let regs = std::mem::offset_of!(kvm_regs, regs);
        assert_eq!(
            x_reg(0),
            id(regs + std::mem::offset_of!(user_pt_regs, regs))
        );
        assert_eq!(PC, id(regs + std::mem::offset_of!(user_pt_regs, pc)));
        assert_eq!(
            PSTATE,
            id(regs + std::mem::offset_of!(user_pt_regs, pstate))
        );
    }
}
