// SPDX-License-Identifier: Apache-2.0
//! The channel-report-pending machine check that announces channel reports (hotplug):
//! its interruption code (MCIC) and the control-register-14 submask that lets it in, as
//! KVM's `KVM_S390_MCHK` floating interrupt takes them (`parm` = the CR14 bits,
//! `parm64` = the MCIC). Portable: tested on every target.
//!
//! The MCIC says "channel report pending" and that no state was damaged: every validity
//! bit is set, as QEMU's `s390_build_validity_mcic` does, or Linux's machine-check
//! handler treats the registers as lost and stops the guest. KVM clears the vector and
//! guarded-storage validity bits itself where the guest has no save area for them.

/// `KVM_S390_MCHK`: the type of a machine-check interrupt.
pub const KVM_S390_MCHK: u32 = 0xfffe_1000;

/// CR14 bit 35: the channel-report submask.
pub const CR14_CHANNEL_REPORT: u32 = 1 << 28;

/// MCIC subclass: channel report pending.
pub const MCIC_CHANNEL_REPORT: u64 = 1 << 54;

/// MCIC validity bits (Principles of Operation, "Machine-Check Interruption Code").
pub mod valid {
    pub const WARNING: u64 = 1 << 43;
    pub const PSW_MWP: u64 = 1 << 42;
    pub const PSW_PROGRAM_MASK: u64 = 1 << 41;
    pub const PSW_INSTRUCTION_ADDRESS: u64 = 1 << 40;
    pub const VECTOR: u64 = 1 << 38;
    pub const FLOATING_POINT: u64 = 1 << 36;
    pub const GENERAL: u64 = 1 << 35;
    pub const CONTROL: u64 = 1 << 34;
    pub const STORAGE_LOGICAL: u64 = 1 << 32;
    pub const ACCESS: u64 = 1 << 30;
    pub const GUARDED_STORAGE: u64 = 1 << 27;
    pub const PREFIX: u64 = 1 << 21;
    pub const FP_CONTROL: u64 = 1 << 20;
    pub const CPU_TIMER: u64 = 1 << 17;
    pub const CLOCK_COMPARATOR: u64 = 1 << 16;
}

/// The MCIC of a channel-report-pending machine check with nothing damaged.
pub fn channel_report_mcic() -> u64 {
    use valid::*;
    MCIC_CHANNEL_REPORT
        | WARNING
        | PSW_MWP
        | PSW_PROGRAM_MASK
        | PSW_INSTRUCTION_ADDRESS
        | VECTOR
        | FLOATING_POINT
        | GENERAL
        | CONTROL
        | STORAGE_LOGICAL
        | ACCESS
        | GUARDED_STORAGE
        | PREFIX
        | FP_CONTROL
        | CPU_TIMER
        | CLOCK_COMPARATOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_qemu_injects_for_a_channel_report() {
        // QEMU: MCIC_SC_CP | s390_build_validity_mcic() with the vector and guarded-storage
        // facilities.
        assert_eq!(channel_report_mcic(), 0x0040_0f5d_4833_0000);
        assert_eq!(CR14_CHANNEL_REPORT, 0x1000_0000);
    }
}
