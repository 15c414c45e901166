// SPDX-License-Identifier: Apache-2.0
//! SIE intercepts as KVM reports them (`kvm_run.s390_sieic`): the interception code and
//! the instruction's first bytes (`ipa`: bytes 0-1, `ipb`: bytes 2-5), decoded into what
//! the backend serves (the I/O instructions into [`IoInstruction`]s for the channel
//! subsystem in `devices::css`). Portable, so the decoding is tested on every target.

use devices::css::IoOp;

/// Interception codes (SIE state description byte `icptcode`).
pub mod code {
    /// An instruction the hypervisor must interpret.
    pub const INSTRUCTION: u8 = 0x04;
    pub const PROGRAM: u8 = 0x08;
    pub const INSTRUCTION_AND_PROGRAM: u8 = 0x0c;
    pub const EXTERNAL_REQUEST: u8 = 0x10;
    pub const IO_REQUEST: u8 = 0x18;
    /// The guest loaded a wait PSW; KVM hands disabled waits to userspace.
    pub const WAIT: u8 = 0x1c;
    pub const VALIDITY: u8 = 0x20;
    /// The vCPU stopped (KVM-handled SIGP STOP).
    pub const STOP: u8 = 0x28;
    pub const OPERATION_EXCEPTION: u8 = 0x2c;
}

/// PSW mask bits.
pub mod psw {
    /// I/O, external and machine-check interruptions enabled (any of them).
    pub const INTERRUPTS: u64 = 0x0300_0000_0000_0000 | 0x0004_0000_0000_0000;
    /// The wait bit.
    pub const WAIT: u64 = 0x0002_0000_0000_0000;
    /// Problem state.
    pub const PROBLEM_STATE: u64 = 0x0001_0000_0000_0000;
    /// The condition code (bits 18-19).
    pub const CC: u64 = 0x0000_3000_0000_0000;
    pub const CC_SHIFT: u32 = 44;

    /// `mask` with condition code `cc`.
    pub fn with_cc(mask: u64, cc: u8) -> u64 {
        (mask & !CC) | (u64::from(cc & 3) << CC_SHIFT)
    }

    /// A disabled wait: the guest halted for good.
    pub fn is_disabled_wait(mask: u64) -> bool {
        mask & WAIT != 0 && mask & 0x0300_0000_0000_0000 == 0
    }
}

/// An intercepted instruction, with its register and address fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// `SERVC R1,R2` (0xb220): R1 holds the SCLP command word, R2 the SCCB address.
    Servc { r1: u8, r2: u8 },
    /// `SIGP R1,R3,D2(B2)` (0xae): the order is the low byte of the second-operand address,
    /// R3 holds the CPU address, R1 (odd register of the pair) the parameter.
    Sigp { r1: u8, r3: u8, b2: u8, d2: u16 },
    /// `DIAG R1,R3,D2(B2)` (0x83): the function code is the second-operand address.
    Diag { r1: u8, r3: u8, b2: u8, d2: u16 },
    /// `PTF R1` (0xb9a2, perform topology function): the function code in GR[R1].
    Ptf { r1: u8 },
    /// Any other instruction (channel I/O, ...).
    Other { ipa: u16, ipb: u32 },
}

impl Instruction {
    pub fn decode(ipa: u16, ipb: u32) -> Self {
        let rs = || {
            (
                ((ipa >> 4) & 0xf) as u8,
                (ipa & 0xf) as u8,
                (ipb >> 28) as u8,
                ((ipb >> 16) & 0xfff) as u16,
            )
        };
        match ipa >> 8 {
            0xb2 if ipa & 0xff == 0x20 => Instruction::Servc {
                r1: ((ipb >> 20) & 0xf) as u8,
                r2: ((ipb >> 16) & 0xf) as u8,
            },
            0xb9 if ipa & 0xff == 0xa2 => Instruction::Ptf {
                r1: ((ipb >> 20) & 0xf) as u8,
            },
            0xae => {
                let (r1, r3, b2, d2) = rs();
                Instruction::Sigp { r1, r3, b2, d2 }
            }
            0x83 => {
                let (r1, r3, b2, d2) = rs();
                Instruction::Diag { r1, r3, b2, d2 }
            }
            _ => Instruction::Other { ipa, ipb },
        }
    }
}

/// The second-operand address of an RS instruction: `D2 + (B2 ? GR[B2] : 0)`.
pub fn operand_address(gprs: &[u64; 16], b2: u8, d2: u16) -> u64 {
    let base = if b2 == 0 { 0 } else { gprs[b2 as usize & 0xf] };
    base.wrapping_add(u64::from(d2))
}

/// An intercepted I/O instruction with its second operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoInstruction {
    pub op: IoOp,
    /// S format: the operand is `D2(B2)`.
    pub b2: u8,
    pub d2: u16,
    /// RRE format (`CHSC`): the register holding the operand address.
    pub r1: u8,
}

impl IoInstruction {
    /// Decode the instruction KVM reports (`ipa`: bytes 0-1, `ipb`: bytes 2-5).
    pub fn decode(ipa: u16, ipb: u32) -> Option<Self> {
        let op = match ipa {
            0xb230 => IoOp::Csch,
            0xb231 => IoOp::Hsch,
            0xb232 => IoOp::Msch,
            0xb233 => IoOp::Ssch,
            0xb234 => IoOp::Stsch,
            0xb235 => IoOp::Tsch,
            0xb236 => IoOp::Tpi,
            0xb237 => IoOp::Sal,
            0xb238 => IoOp::Rsch,
            0xb239 => IoOp::Stcrw,
            0xb23a => IoOp::Stcps,
            0xb23b => IoOp::Rchp,
            0xb23c => IoOp::Schm,
            0xb25f => IoOp::Chsc,
            0xb276 => IoOp::Xsch,
            _ => return None,
        };
        Some(Self {
            op,
            b2: (ipb >> 28) as u8,
            d2: ((ipb >> 16) & 0xfff) as u16,
            r1: ((ipb >> 20) & 0xf) as u8,
        })
    }

    /// The second-operand address, given the general registers.
    pub fn operand(&self, gprs: &[u64; 16]) -> u64 {
        if self.op == IoOp::Chsc {
            gprs[self.r1 as usize & 0xf]
        } else {
            operand_address(gprs, self.b2, self.d2)
        }
    }
}

/// SIGP orders.
pub mod sigp {
    pub const SENSE: u8 = 0x01;
    pub const EXTERNAL_CALL: u8 = 0x02;
    pub const EMERGENCY_SIGNAL: u8 = 0x03;
    pub const START: u8 = 0x04;
    pub const STOP: u8 = 0x05;
    pub const RESTART: u8 = 0x06;
    pub const STOP_AND_STORE_STATUS: u8 = 0x09;
    pub const INITIAL_CPU_RESET: u8 = 0x0b;
    pub const CPU_RESET: u8 = 0x0c;
    pub const SET_PREFIX: u8 = 0x0d;
    pub const STORE_STATUS_AT_ADDRESS: u8 = 0x0e;
    pub const SET_ARCHITECTURE: u8 = 0x12;
    pub const COND_EMERGENCY_SIGNAL: u8 = 0x13;
    pub const SENSE_RUNNING: u8 = 0x15;

    /// Condition codes.
    pub const CC_ACCEPTED: u8 = 0;
    pub const CC_STATUS_STORED: u8 = 1;
    pub const CC_BUSY: u8 = 2;
    pub const CC_NOT_OPERATIONAL: u8 = 3;

    /// Status bits stored in R1 with `CC_STATUS_STORED`.
    pub const STATUS_INVALID_ORDER: u32 = 0x0000_0002;
    pub const STATUS_INVALID_PARAMETER: u32 = 0x0000_0100;
    pub const STATUS_INCORRECT_STATE: u32 = 0x0000_0200;

    /// The parameter register of a SIGP with first operand `r1` (the odd one of the pair).
    pub fn parameter_register(r1: u8) -> usize {
        (r1 | 1) as usize & 0xf
    }
}

/// How a guest ends the machine, seen from one vCPU: every path a guest has to reset,
/// stop or crash comes down to one of these (the backend's `VcpuExit::Reset`,
/// `VcpuExit::Poweroff`, `VcpuExit::GuestPanic`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Reset,
    Poweroff,
    /// The guest's kernel stopped in a disabled wait that is not a shutdown (Linux's
    /// `disabled_wait()` on a panic, or a boot-time error it cannot go on from).
    Panic,
}

/// DIAG 0x308 (IPL functions) with this subcode (in GR[R3]): the resets (0 clear, 1 load
/// normal) and the re-IPLs (3 load clear, 4 load normal: Linux's reboot, with IPL type
/// unknown) reset the machine. KVM serves 3 and 4 itself as `KVM_EXIT_S390_RESET`, which
/// the backend also maps to [`Ending::Reset`]. `None`: not provided here (set/store IPL
/// parameters, ...: a specification exception).
pub fn diag308_ending(subcode: u64) -> Option<Ending> {
    matches!(subcode, 0 | 1 | 3 | 4).then_some(Ending::Reset)
}

/// The instruction address of the disabled wait Linux loads when it has quiesced the machine
/// (`do_machine_quiesce` in drivers/s390/char/sclp_quiesce.c: poweroff, halt and restart
/// after an SCLP signal quiesce): a shutdown, not a crash.
pub const QUIESCE_WAIT_ADDRESS: u64 = 0xfff;

/// A disabled wait at the quiesce address. Only the low 12 bits are compared, as QEMU's
/// `is_special_wait_psw` does: instructions are halfword aligned, so no wait PSW a kernel
/// loads at its own code (`disabled_wait()` uses `_THIS_IP_`) can end in 0xfff.
pub fn is_quiesce_wait(psw_addr: u64) -> bool {
    psw_addr & QUIESCE_WAIT_ADDRESS == QUIESCE_WAIT_ADDRESS
}

/// A wait-state intercept. A disabled wait ends the machine: at the quiesce address it is a
/// poweroff (Linux's answer to a signal quiesce), at any other address a guest panic (Linux
/// on s390x stops a panicking CPU with `disabled_wait()` at a kernel address; its own
/// poweroff and halt are SIGP STOP of the last CPU, see [`stop_ending`]). This is how QEMU
/// tells them apart too. An enabled wait (idle) does not end anything.
pub fn wait_ending(psw_mask: u64, psw_addr: u64) -> Option<Ending> {
    if !psw::is_disabled_wait(psw_mask) {
        return None;
    }
    Some(if is_quiesce_wait(psw_addr) {
        Ending::Poweroff
    } else {
        Ending::Panic
    })
}

/// A CPU stopped (SIGP STOP or STOP AND STORE STATUS of itself, or KVM's stop intercept
/// after another CPU's SIGP STOP): the machine powers off when that was the last CPU
/// running (`all_stopped` counts this one as stopped).
pub fn stop_ending(all_stopped: bool) -> Option<Ending> {
    all_stopped.then_some(Ending::Poweroff)
}

/// Program-interruption codes (kept with the channel subsystem, which answers with them too).
pub use devices::css::pgm;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servc_sigp_and_diag_are_decoded() {
        // servc %r2,%r3 = b220 0023
        assert_eq!(
            Instruction::decode(0xb220, 0x0023_0000),
            Instruction::Servc { r1: 2, r2: 3 }
        );
        // sigp %r4,%r5,5(%r0) = ae45 0005
        assert_eq!(
            Instruction::decode(0xae45, 0x0005_0000),
            Instruction::Sigp {
                r1: 4,
                r3: 5,
                b2: 0,
                d2: 5
            }
        );
        // diag %r2,%r4,0x500 = 8324 0500
        assert_eq!(
            Instruction::decode(0x8324, 0x0500_0000),
            Instruction::Diag {
                r1: 2,
                r3: 4,
                b2: 0,
                d2: 0x500
            }
        );
        // sigp %r1,%r2,0x12(%r7)
        let i = Instruction::decode(0xae12, 0x7012_0000);
        assert_eq!(
            i,
            Instruction::Sigp {
                r1: 1,
                r3: 2,
                b2: 7,
                d2: 0x12
            }
        );
        let mut g = [0u64; 16];
        g[7] = 0x100;
        assert_eq!(operand_address(&g, 7, 0x12), 0x112);
        assert_eq!(operand_address(&g, 0, 0x12), 0x12);
        assert_eq!(sigp::parameter_register(4), 5);
        assert_eq!(sigp::parameter_register(5), 5);
        // ptf %r1 = b9a2 0010
        assert_eq!(
            Instruction::decode(0xb9a2, 0x0010_0000),
            Instruction::Ptf { r1: 1 }
        );
        // stsch = b234: not served here.
        assert_eq!(
            Instruction::decode(0xb234, 0x1000_0000),
            Instruction::Other {
                ipa: 0xb234,
                ipb: 0x1000_0000
            }
        );
    }

    #[test]
    fn every_reset_and_stop_path_ends_the_machine() {
        for subcode in [0, 1, 3, 4] {
            assert_eq!(diag308_ending(subcode), Some(Ending::Reset), "{subcode}");
        }
        for subcode in [2, 5, 6, 7, 8, 10, 0x1_0003, u64::MAX] {
            assert_eq!(diag308_ending(subcode), None, "{subcode}");
        }
        // Linux's quiesce: disabled wait at 0xfff, 64-bit or 24-bit mode, and QEMU's rule
        // (only the low 12 bits count).
        assert_eq!(
            wait_ending(0x0002_0001_8000_0000, 0xfff),
            Some(Ending::Poweroff)
        );
        assert_eq!(
            wait_ending(0x0002_0000_0000_0000, 0xfff),
            Some(Ending::Poweroff)
        );
        assert_eq!(
            wait_ending(0x0002_0001_8000_0000, 0x1fff),
            Some(Ending::Poweroff)
        );
        // Linux's disabled_wait() on a panic: at a kernel address (even, so never 0xfff).
        let kernel = 0x0000_0000_0012_3456;
        assert_eq!(
            wait_ending(0x0002_0001_8000_0000, kernel),
            Some(Ending::Panic)
        );
        for addr in [0, 0xffe, 0x1000, 0x2000, 0xff0, u64::MAX - 1] {
            assert_eq!(
                wait_ending(0x0002_0001_8000_0000, addr),
                Some(Ending::Panic)
            );
        }
        // Idle: I/O and external interrupts enabled, wherever the PSW points.
        for addr in [0xfff, kernel] {
            assert_eq!(wait_ending(0x0302_0001_8000_0000, addr), None);
            assert_eq!(wait_ending(0x0102_0001_8000_0000, addr), None);
            assert_eq!(wait_ending(0x0000_0001_8000_0000, addr), None);
        }
        assert!(is_quiesce_wait(QUIESCE_WAIT_ADDRESS));
        assert!(!is_quiesce_wait(0xffe));
        assert_eq!(stop_ending(true), Some(Ending::Poweroff));
        assert_eq!(stop_ending(false), None);
    }

    #[test]
    fn psw_condition_code_and_wait() {
        let m = 0x0000_3001_8000_0000;
        assert_eq!(psw::with_cc(m, 0), 0x0000_0001_8000_0000);
        assert_eq!(psw::with_cc(m, 2), 0x0000_2001_8000_0000);
        assert!(psw::is_disabled_wait(0x0002_0001_8000_0000));
        assert!(!psw::is_disabled_wait(0x0302_0001_8000_0000));
        assert!(!psw::is_disabled_wait(0x0000_0001_8000_0000));
    }

    #[test]
    fn io_instructions_are_decoded() {
        // stsch 0x40(%r15) = b234 f040
        let i = IoInstruction::decode(0xb234, 0xf040_0000).unwrap();
        assert_eq!((i.op, i.b2, i.d2), (IoOp::Stsch, 15, 0x40));
        let mut g = [0u64; 16];
        g[15] = 0x1000;
        g[3] = 0x7000;
        assert_eq!(i.operand(&g), 0x1040);
        // chsc %r3,%r0 = b25f 0030
        let i = IoInstruction::decode(0xb25f, 0x0030_0000).unwrap();
        assert_eq!((i.op, i.r1), (IoOp::Chsc, 3));
        assert_eq!(i.operand(&g), 0x7000);
        assert_eq!(IoInstruction::decode(0xb276, 0).unwrap().op, IoOp::Xsch);
        assert_eq!(IoInstruction::decode(0xb220, 0), None);
    }
}
