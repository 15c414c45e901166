// SPDX-License-Identifier: Apache-2.0
//! An s390x KVM vCPU: runs SIE and serves the intercepts KVM hands to userspace (SCLP via
//! `SERVC`, `SIGP` orders, `DIAG`, waits and stops). Poweroff, reset, a stopped CPU
//! (`VcpuExit::Stopped`: the VMM parks its thread) and an order left for another CPU
//! (`VcpuExit::Wake`: the VMM wakes that thread) leave here.

use std::io::Write as _;
use std::sync::Arc;

use arch::{Error, Result, Vcpu, VcpuExit, VcpuKicker};
use vm_memory::GuestMemoryBackend as _;

use super::{inject_io, Machine};
use crate::cpu_orders::{self, Answer, Inject, Order};
use crate::intercept::{
    self, code, operand_address, pgm, psw, sigp, Ending, Instruction, IoInstruction,
};
use crate::kvm::bindings::*;
use crate::kvm::ioctls::{ImmediateExit, LogicalBuf, VcpuFd};
use devices::css::{AccessFault, IoInterrupt, IoOp, IoOutcome, OperandMemory};
use devices::log_limit::LogLimit;

/// Unknown intercepts in a row before the vCPU gives up.
const MAX_UNKNOWN_INTERCEPTS: u32 = 1000;

/// Warnings a guest can cause, limited per site for the life of the VM (see [`LogLimit`]).
static UNEXPECTED_INTERCEPT: LogLimit = LogLimit::new("unexpected SIE intercept");
static OPERAND_ACCESS: LogLimit = LogLimit::new("instruction operand");
static SIGP_ORDER: LogLimit = LogLimit::new("SIGP");
static STORE_STATUS: LogLimit = LogLimit::new("store status");
static CONSOLE_OUTPUT: LogLimit = LogLimit::new("SCLP console output");

/// One vCPU of a [`super::KvmS390Vm`].
pub struct KvmS390Vcpu {
    fd: VcpuFd,
    index: u32,
    machine: Arc<Machine>,
    unknown: u32,
}

/// Instruction operands through KVM: logical addresses as the vCPU translates them, access
/// exceptions made pending by KVM.
struct GuestOperands<'a> {
    fd: &'a VcpuFd,
    ar: u8,
}

impl GuestOperands<'_> {
    fn access(&self, addr: u64, buf: LogicalBuf<'_>) -> std::result::Result<(), AccessFault> {
        match self.fd.logical_access(addr, self.ar, buf) {
            Ok(0) => Ok(()),
            Ok(code) => {
                log::debug!("operand at {addr:#x}: program exception {code:#x}");
                Err(AccessFault)
            }
            Err(e) => {
                OPERAND_ACCESS.warn(format_args!(
                    "KVM_S390_MEM_OP at {addr:#x}: {e}: addressing exception"
                ));
                if let Err(e) = self.fd.inject(&KvmS390Irq::program(pgm::ADDRESSING)) {
                    OPERAND_ACCESS.warn(format_args!("KVM_S390_IRQ(program): {e}"));
                }
                Err(AccessFault)
            }
        }
    }
}

impl OperandMemory for GuestOperands<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> std::result::Result<(), AccessFault> {
        self.access(addr, LogicalBuf::Read(buf))
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> std::result::Result<(), AccessFault> {
        self.access(addr, LogicalBuf::Write(data))
    }
}

/// What an intercept handler decided.
enum Outcome {
    Handled,
    /// An order was left for this vCPU: wake its thread if it is parked stopped.
    Wake(u32),
    Poweroff,
    Reset,
    Panic,
}

impl From<Option<Ending>> for Outcome {
    fn from(ending: Option<Ending>) -> Self {
        match ending {
            None => Outcome::Handled,
            Some(Ending::Reset) => Outcome::Reset,
            Some(Ending::Poweroff) => Outcome::Poweroff,
            Some(Ending::Panic) => Outcome::Panic,
        }
    }
}

impl KvmS390Vcpu {
    pub(super) fn new(fd: VcpuFd, index: u32, machine: Arc<Machine>) -> Self {
        Self {
            fd,
            index,
            machine,
            unknown: 0,
        }
    }

    fn fault(&self, reason: String) -> Error {
        Error::VcpuFault {
            vcpu: self.index,
            reason,
        }
    }

    fn gprs(&self) -> [u64; 16] {
        // SAFETY: reading the `regs` member of the sync-regs union; every bit pattern is a
        // valid KvmSyncRegs (plain integers), and KVM keeps it current (KVM_SYNC_GPRS).
        unsafe { self.fd.run_struct().s.regs.gprs }
    }

    fn set_gpr(&mut self, r: usize, value: u64) {
        let run = self.fd.run_struct_mut();
        // SAFETY: as in `gprs`; writing a plain integer into the union member.
        unsafe { run.s.regs.gprs[r & 0xf] = value };
        run.kvm_dirty_regs |= KVM_SYNC_GPRS;
    }

    fn set_cc(&mut self, cc: u8) {
        let run = self.fd.run_struct_mut();
        run.psw_mask = psw::with_cc(run.psw_mask, cc);
    }

    fn program_interrupt(&self, code: u16) -> Result<()> {
        self.fd
            .inject(&KvmS390Irq::program(code))
            .map_err(|e| Error::hv("KVM_S390_IRQ(program)", e))
    }

    /// Apply the orders other vCPUs left. `false`: still stopped (the VMM parks the thread
    /// until another vCPU leaves an order and wakes it).
    fn take_orders(&mut self) -> Result<bool> {
        let machine = self.machine.clone();
        let mut state = machine.cpus[self.index as usize].lock();
        let (orders, runs) = cpu_orders::take(&mut state);
        for order in orders {
            match order {
                Order::Start => {}
                Order::Restart => self
                    .fd
                    .inject(&KvmS390Irq::new(KVM_S390_RESTART))
                    .map_err(|e| Error::hv("KVM_S390_IRQ(restart)", e))?,
                Order::InitialReset => self
                    .fd
                    .initial_reset()
                    .map_err(|e| Error::hv("KVM_S390_INITIAL_RESET", e))?,
                Order::CpuReset if machine.normal_reset => self
                    .fd
                    .normal_reset()
                    .map_err(|e| Error::hv("KVM_S390_NORMAL_RESET", e))?,
                Order::CpuReset => {
                    log::debug!(
                        "vCPU {}: CPU reset without KVM_S390_NORMAL_RESET",
                        self.index
                    );
                }
                Order::SetPrefix(prefix) => {
                    let run = self.fd.run_struct_mut();
                    run.s.regs.prefix = prefix;
                    run.kvm_dirty_regs |= KVM_SYNC_PREFIX;
                }
                Order::StoreStatus(addr) => {
                    if let Err(e) = self.fd.store_status(addr) {
                        STORE_STATUS.warn(format_args!("vCPU {}: at {addr:#x}: {e}", self.index));
                    }
                }
            }
        }
        Ok(runs)
    }

    /// Mark this vCPU stopped; the machine powers off when it was the last one running.
    fn stop_self(&self) -> Outcome {
        self.machine.cpus[self.index as usize].lock().stopped = true;
        let ending = intercept::stop_ending(self.machine.all_stopped());
        if ending.is_some() {
            log::debug!("vCPU {}: the last running CPU stopped", self.index);
        }
        Outcome::from(ending)
    }

    fn handle_sieic(&mut self) -> Result<Outcome> {
        let sieic = {
            let run = self.fd.run_struct();
            // SAFETY: KVM_EXIT_S390_SIEIC fills the s390_sieic member of the exit union; any
            // bit pattern is a valid KvmS390Sieic.
            unsafe { run.exit.s390_sieic }
        };
        let outcome = match sieic.icptcode {
            code::INSTRUCTION => self.handle_instruction(sieic.ipa, sieic.ipb)?,
            code::WAIT => {
                let run = self.fd.run_struct();
                let ending = intercept::wait_ending(run.psw_mask, run.psw_addr);
                match ending {
                    Some(Ending::Panic) => log::warn!(
                        "vCPU {}: guest entered a disabled wait at {:#x}, not the quiesce \
                         address {:#x}: a guest panic (PSW {:#018x} {:#018x})",
                        self.index,
                        run.psw_addr,
                        intercept::QUIESCE_WAIT_ADDRESS,
                        run.psw_mask,
                        run.psw_addr
                    ),
                    Some(_) => log::info!(
                        "vCPU {}: guest entered the quiesce wait (PSW {:#018x} {:#018x})",
                        self.index,
                        run.psw_mask,
                        run.psw_addr
                    ),
                    None => {}
                }
                Outcome::from(ending)
            }
            code::STOP => self.stop_self(),
            code::VALIDITY => {
                return Err(self.fault(format!(
                    "SIE validity intercept (ipa {:#06x} ipb {:#010x})",
                    sieic.ipa, sieic.ipb
                )))
            }
            other => {
                self.unknown += 1;
                UNEXPECTED_INTERCEPT.warn(format_args!(
                    "vCPU {}: code {other:#04x} (ipa {:#06x} ipb {:#010x})",
                    self.index, sieic.ipa, sieic.ipb
                ));
                if self.unknown > MAX_UNKNOWN_INTERCEPTS {
                    return Err(self.fault(format!("{} unexpected intercepts", self.unknown)));
                }
                return Ok(Outcome::Handled);
            }
        };
        self.unknown = 0;
        Ok(outcome)
    }

    fn handle_instruction(&mut self, ipa: u16, ipb: u32) -> Result<Outcome> {
        let problem_state = self.fd.run_struct().psw_mask & psw::PROBLEM_STATE != 0;
        match Instruction::decode(ipa, ipb) {
            Instruction::Servc { .. } | Instruction::Sigp { .. } | Instruction::Ptf { .. }
                if problem_state =>
            {
                self.program_interrupt(pgm::PRIVILEGED_OPERATION)?;
                Ok(Outcome::Handled)
            }
            Instruction::Servc { r1, r2 } => self.servc(r1, r2),
            Instruction::Ptf { r1 } => self.ptf(r1),
            Instruction::Sigp { r1, r3, b2, d2 } => {
                let order = (operand_address(&self.gprs(), b2, d2) & 0xff) as u8;
                self.sigp(order, r1, r3)
            }
            Instruction::Diag { r3, b2, d2, .. } => {
                let function = (operand_address(&self.gprs(), b2, d2) & 0xffff) as u16;
                self.diag(function, r3)
            }
            Instruction::Other { ipa, ipb } if IoInstruction::decode(ipa, ipb).is_some() => {
                let io = IoInstruction::decode(ipa, ipb).unwrap();
                self.io_instruction(io, None)
            }
            Instruction::Other { ipa, ipb } => {
                log::debug!(
                    "vCPU {}: instruction {ipa:#06x} {ipb:#010x} not served: operation exception",
                    self.index
                );
                self.program_interrupt(pgm::OPERATION)?;
                Ok(Outcome::Handled)
            }
        }
    }

    /// A channel-subsystem instruction; `dequeued` is the I/O interrupt KVM took off its
    /// queue for a TSCH (it goes back if the instruction does not complete).
    fn io_instruction(
        &mut self,
        io: IoInstruction,
        dequeued: Option<IoInterrupt>,
    ) -> Result<Outcome> {
        let gprs = self.gprs();
        let addr = io.operand(&gprs);
        let machine = self.machine.clone();
        let mut operands = GuestOperands {
            fd: &self.fd,
            ar: if io.op == IoOp::Chsc { io.r1 } else { io.b2 },
        };
        let outcome = machine.css.execute(io.op, gprs[1], addr, &mut operands);
        match outcome {
            IoOutcome::Cc(cc) => self.set_cc(cc),
            IoOutcome::Unchanged => {}
            IoOutcome::Program(code) => {
                log::debug!(
                    "vCPU {}: {:?} {:#x} {addr:#x}: program exception {code:#x}",
                    self.index,
                    io.op,
                    gprs[1]
                );
                self.program_interrupt(code)?;
            }
            IoOutcome::Faulted => {}
        }
        if let (Some(irq), IoOutcome::Program(_) | IoOutcome::Faulted) = (dequeued, outcome) {
            inject_io(&machine.vm, irq);
        }
        Ok(Outcome::Handled)
    }

    /// KVM_EXIT_S390_TSCH: TEST SUBCHANNEL after KVM dequeued the subchannel's interrupt.
    fn handle_tsch(&mut self) -> Result<Outcome> {
        // SAFETY: KVM_EXIT_S390_TSCH fills the s390_tsch member; plain integers.
        let t = unsafe { self.fd.run_struct().exit.s390_tsch };
        let dequeued = (t.dequeued != 0).then_some(IoInterrupt {
            subchannel_id: t.subchannel_id,
            subchannel_nr: t.subchannel_nr,
            parm: t.io_int_parm,
            word: t.io_int_word,
        });
        let io = IoInstruction::decode(0xb235, t.ipb).expect("TSCH decodes");
        self.io_instruction(io, dequeued)
    }

    /// PERFORM TOPOLOGY FUNCTION (Linux's topology timer checks for changes): the
    /// topology never changes and stays horizontally polarized.
    fn ptf(&mut self, r1: u8) -> Result<Outcome> {
        let g = self.gprs()[r1 as usize];
        if g & !0xff != 0 {
            self.program_interrupt(pgm::SPECIFICATION)?;
            return Ok(Outcome::Handled);
        }
        match g & 0xff {
            // Check topology-change status: no change reported.
            2 => self.set_cc(0),
            // Horizontal: already so (reason 1); vertical: not available (reason 0).
            0 | 1 => {
                self.set_gpr(r1 as usize, g | u64::from(g == 0));
                self.set_cc(2);
            }
            _ => self.program_interrupt(pgm::SPECIFICATION)?,
        }
        Ok(Outcome::Handled)
    }

    fn servc(&mut self, r1: u8, r2: u8) -> Result<Outcome> {
        let gprs = self.gprs();
        let command = gprs[r1 as usize] as u32;
        let sccb = gprs[r2 as usize];
        let result = {
            // Console lock, then the SCLP lock for the service call only: what the guest
            // writes is collected (at most one SCCB) and goes to the sink after the SCLP
            // is free again, so the power button and console input (which take only the
            // SCLP lock) never wait for the sink. The console lock keeps the output of
            // concurrent service calls in order.
            let machine = &self.machine;
            let mut console = machine.console.lock().unwrap_or_else(|p| p.into_inner());
            let mut output = Vec::new();
            let result = machine
                .sclp
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .service_call(&machine.memory, command, sccb, &mut output);
            if !output.is_empty() {
                if let Err(e) = console.write_all(&output).and_then(|()| console.flush()) {
                    CONSOLE_OUTPUT.warn(format_args!("{e}"));
                }
            }
            result
        };
        match result {
            Ok(parm) => {
                self.set_cc(0);
                let irq = KvmS390Interrupt {
                    type_: KVM_S390_INT_SERVICE,
                    parm,
                    parm64: 0,
                };
                self.machine
                    .vm
                    .inject_floating(&irq)
                    .map_err(|e| Error::hv("KVM_S390_INTERRUPT(service signal)", e))?;
            }
            Err(e) => {
                log::debug!(
                    "vCPU {}: SERVC {command:#010x} at {sccb:#x}: {e:?}",
                    self.index
                );
                self.program_interrupt(e.program_code())?;
            }
        }
        Ok(Outcome::Handled)
    }

    fn sigp_status(&mut self, r1: u8, status: u32) {
        let old = self.gprs()[r1 as usize];
        self.set_gpr(
            r1 as usize,
            (old & 0xffff_ffff_0000_0000) | u64::from(status),
        );
        self.set_cc(sigp::CC_STATUS_STORED);
    }

    fn sigp(&mut self, order: u8, r1: u8, r3: u8) -> Result<Outcome> {
        let gprs = self.gprs();
        let param = gprs[sigp::parameter_register(r1)];
        let target = (gprs[r3 as usize] & 0xffff) as usize;
        if order == sigp::SET_ARCHITECTURE {
            // Only z/Architecture exists here; ESA/390 mode (0) cannot be entered.
            if param & 0xff == 0 {
                self.sigp_status(r1, sigp::STATUS_INVALID_PARAMETER);
            } else {
                self.set_cc(sigp::CC_ACCEPTED);
            }
            return Ok(Outcome::Handled);
        }
        if target >= self.machine.cpus.len() {
            self.set_cc(sigp::CC_NOT_OPERATIONAL);
            return Ok(Outcome::Handled);
        }
        if target == self.index as usize {
            return self.sigp_self(order, r1, param);
        }
        let machine = self.machine.clone();
        let slot = &machine.cpus[target];
        let ram = machine.memory.last_addr().0 + 1;
        let effect = cpu_orders::decide(&mut slot.lock(), order, param, ram);
        let irq = match effect.inject {
            Some(Inject::Restart) => Some(KvmS390Irq::new(KVM_S390_RESTART)),
            Some(Inject::Stop { store_status }) => Some(KvmS390Irq::stop(store_status)),
            None => None,
        };
        if let Some(irq) = irq {
            if let Err(e) = slot.injector.inject(&irq) {
                SIGP_ORDER.warn(format_args!("order {order:#x} to CPU {target}: {e}"));
            }
        }
        match effect.answer {
            Answer::Accepted => self.set_cc(sigp::CC_ACCEPTED),
            Answer::Busy => self.set_cc(sigp::CC_BUSY),
            Answer::Status(s) => self.sigp_status(r1, s),
        }
        Ok(if effect.wake {
            Outcome::Wake(target as u32)
        } else {
            Outcome::Handled
        })
    }

    fn sigp_self(&mut self, order: u8, r1: u8, _param: u64) -> Result<Outcome> {
        match order {
            sigp::STOP | sigp::STOP_AND_STORE_STATUS => {
                if order == sigp::STOP_AND_STORE_STATUS {
                    if let Err(e) = self.fd.store_status(KVM_S390_STORE_STATUS_NOADDR) {
                        STORE_STATUS.warn(format_args!("vCPU {}: {e}", self.index));
                    }
                }
                self.set_cc(sigp::CC_ACCEPTED);
                Ok(self.stop_self())
            }
            sigp::RESTART => {
                self.set_cc(sigp::CC_ACCEPTED);
                self.fd
                    .inject(&KvmS390Irq::new(KVM_S390_RESTART))
                    .map_err(|e| Error::hv("KVM_S390_IRQ(restart)", e))?;
                Ok(Outcome::Handled)
            }
            sigp::START => {
                self.set_cc(sigp::CC_ACCEPTED);
                Ok(Outcome::Handled)
            }
            sigp::INITIAL_CPU_RESET
            | sigp::CPU_RESET
            | sigp::SET_PREFIX
            | sigp::STORE_STATUS_AT_ADDRESS => {
                self.sigp_status(r1, sigp::STATUS_INCORRECT_STATE);
                Ok(Outcome::Handled)
            }
            _ => {
                self.sigp_status(r1, sigp::STATUS_INVALID_ORDER);
                Ok(Outcome::Handled)
            }
        }
    }

    fn diag(&mut self, function: u16, r3: u8) -> Result<Outcome> {
        match function {
            // KVM hypercalls; subcode 3 in GR1 is the virtio-ccw notification: GR2 names
            // the subchannel, GR3 the queue; the result goes to GR2.
            0x500 if self.gprs()[1] == 3 => {
                let g = self.gprs();
                let rc = self.machine.css.notify(g[2], g[3]);
                self.set_gpr(2, rc as u64);
                Ok(Outcome::Handled)
            }
            // IPL functions: subcodes 0/1 (reset), 3/4 (re-IPL) reset the machine.
            0x308 => {
                let subcode = self.gprs()[r3 as usize & 0xf];
                match intercept::diag308_ending(subcode) {
                    Some(ending) => {
                        log::debug!("vCPU {}: DIAG 0x308 subcode {subcode}: reset", self.index);
                        Ok(Outcome::from(Some(ending)))
                    }
                    None => {
                        self.program_interrupt(pgm::SPECIFICATION)?;
                        Ok(Outcome::Handled)
                    }
                }
            }
            other => {
                log::debug!(
                    "vCPU {}: DIAG {other:#x} not served: specification exception",
                    self.index
                );
                self.program_interrupt(pgm::SPECIFICATION)?;
                Ok(Outcome::Handled)
            }
        }
    }
}

/// Kicks an s390x vCPU: its `immediate_exit` byte for `KVM_RUN` (a stopped vCPU's thread
/// is parked by the VMM, which wakes it itself).
struct S390Kicker {
    immediate_exit: Arc<ImmediateExit>,
}

impl VcpuKicker for S390Kicker {
    fn kick(&self) {
        self.immediate_exit.set(1);
    }
}

impl Vcpu for KvmS390Vcpu {
    fn kicker(&self) -> Arc<dyn VcpuKicker> {
        Arc::new(S390Kicker {
            immediate_exit: self.fd.immediate_exit(),
        })
    }

    fn run(&mut self) -> Result<VcpuExit<'_>> {
        if !self.take_orders()? {
            // Stopped: the VMM parks the thread (and looks at its requests first: a kick
            // is consumed here).
            self.fd.clear_immediate_exit();
            return Ok(VcpuExit::Stopped);
        }
        if let Err(e) = self.fd.run() {
            return match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) => {
                    self.fd.clear_immediate_exit();
                    Ok(VcpuExit::Interrupted)
                }
                _ => Err(Error::hv("KVM_RUN", e)),
            };
        }
        let reason = self.fd.run_struct().exit_reason;
        let outcome = match reason {
            KVM_EXIT_S390_SIEIC => self.handle_sieic()?,
            KVM_EXIT_S390_TSCH => self.handle_tsch()?,
            KVM_EXIT_S390_RESET => {
                // SAFETY: KVM_EXIT_S390_RESET fills s390_reset_flags, a plain u64.
                let flags = unsafe { self.fd.run_struct().exit.s390_reset_flags };
                log::debug!("vCPU {}: reset requested (flags {flags:#x})", self.index);
                Outcome::Reset
            }
            KVM_EXIT_INTR => {
                self.fd.clear_immediate_exit();
                return Ok(VcpuExit::Interrupted);
            }
            KVM_EXIT_INTERNAL_ERROR => {
                // SAFETY: KVM_EXIT_INTERNAL_ERROR fills `internal`, plain integers.
                let internal = unsafe { self.fd.run_struct().exit.internal };
                return Err(self.fault(format!(
                    "KVM internal error, suberror {}",
                    internal.suberror
                )));
            }
            other => {
                let run = self.fd.run_struct();
                return Err(self.fault(format!(
                    "unexpected KVM exit {other} at PSW {:#018x} {:#018x}",
                    run.psw_mask, run.psw_addr
                )));
            }
        };
        if !matches!(outcome, Outcome::Handled | Outcome::Wake(_)) && !self.machine.css.is_empty() {
            let (served, stsch) = self.machine.css.served();
            let diag = self.machine.css.diag_notifies();
            let injected = super::ADAPTER_INJECTED.load(std::sync::atomic::Ordering::Relaxed);
            // Short lines (see add_virtio_device): the rest of the notifies, if any, came
            // by ioeventfd, the rest of the adapter interruptions by KVM's adapter routes.
            log::info!("css: {served} I/O instructions served ({stsch} STSCH)");
            log::info!("css: {diag} notifies by DIAG 0x500 intercept");
            log::info!("css: {injected} adapter interrupts injected by the VMM");
        }
        Ok(match outcome {
            Outcome::Handled => VcpuExit::Handled,
            Outcome::Wake(vcpu) => VcpuExit::Wake { vcpu },
            Outcome::Poweroff => VcpuExit::Poweroff,
            Outcome::Reset => VcpuExit::Reset,
            Outcome::Panic => VcpuExit::GuestPanic,
        })
    }
}
