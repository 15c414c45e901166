// SPDX-License-Identifier: Apache-2.0
//! The classic-BPF program of an allow-list seccomp filter, and installing it.
//!
//! The program is the simplest one that is right: check the architecture (a syscall made
//! through another ABI, e.g. i386's `int 0x80` on x86_64, has other numbers: it is killed),
//! then compare the syscall number with each allowed one. Every allowed syscall costs two
//! instructions (`jeq nr, 0, 1; ret ALLOW`), so jump offsets never exceed one and the
//! program has no length limit below the kernel's 4096 instructions.

use std::io;

/// `struct seccomp_data` offsets: the syscall number, then the audit architecture.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// `SECCOMP_RET_*` of linux/seccomp.h.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

/// One BPF instruction, `struct sock_filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The filter for `audit_arch` allowing `allowed` and answering `otherwise` to the rest.
pub fn program(audit_arch: u32, allowed: &[libc::c_long], otherwise: u32) -> Vec<Insn> {
    let mut p = Vec::with_capacity(5 + 2 * allowed.len());
    p.push(stmt(BPF_LD_W_ABS, DATA_ARCH));
    p.push(Insn {
        code: BPF_JEQ_K,
        jt: 1,
        jf: 0,
        k: audit_arch,
    });
    p.push(stmt(BPF_RET_K, RET_KILL_PROCESS));
    p.push(stmt(BPF_LD_W_ABS, DATA_NR));
    for &nr in allowed {
        p.push(Insn {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            // Syscall numbers are small and non-negative on every architecture.
            k: nr as u32,
        });
        p.push(stmt(BPF_RET_K, RET_ALLOW));
    }
    p.push(stmt(BPF_RET_K, otherwise));
    p
}

#[cfg(test)]
/// What `program` answers for syscall `nr` made through `arch`: the filter run in Rust,
/// for the tests (the kernel runs the same instructions).
pub fn evaluate(program: &[Insn], arch: u32, nr: u32) -> u32 {
    let mut acc = 0u32;
    let mut pc = 0usize;
    while let Some(insn) = program.get(pc) {
        pc += 1;
        match insn.code {
            BPF_LD_W_ABS => acc = if insn.k == DATA_ARCH { arch } else { nr },
            BPF_JEQ_K => {
                pc += usize::from(if acc == insn.k { insn.jt } else { insn.jf });
            }
            BPF_RET_K => return insn.k,
            _ => return RET_KILL_PROCESS,
        }
    }
    RET_KILL_PROCESS
}

/// Set `no_new_privs` on the calling thread (the kernel requires it for an unprivileged
/// seccomp filter; it also makes a set-uid `execve` powerless).
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only and touches no memory.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Install `program` on the calling thread (after `no_new_privs`). Filters stack: a thread
/// keeps the filters it inherited and the kernel applies the strictest answer.
pub fn install(program: &[Insn]) -> io::Result<()> {
    set_no_new_privs()?;
    let len = u16::try_from(program.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter too long"))?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads the instructions; `Insn` has `sock_filter`'s layout.
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points to `len` valid instructions that outlive the call (the kernel
    // copies them); seccomp(SECCOMP_SET_MODE_FILTER, 0, &prog) reads nothing else.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insn_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<libc::sock_filter>(), 8);
    }

    #[test]
    fn allows_listed_syscalls_only_for_its_architecture() {
        let p = program(0xc000_003e, &[0, 1, 60], RET_LOG);
        assert_eq!(evaluate(&p, 0xc000_003e, 0), RET_ALLOW);
        assert_eq!(evaluate(&p, 0xc000_003e, 60), RET_ALLOW);
        assert_eq!(evaluate(&p, 0xc000_003e, 59), RET_LOG);
        assert_eq!(evaluate(&p, 0xc000_003e, 0x4000_0000), RET_LOG);
        // Another ABI's numbers mean other calls: killed whatever the mode.
        assert_eq!(evaluate(&p, 0x4000_0003, 0), RET_KILL_PROCESS);
    }

    #[test]
    fn an_empty_list_answers_everything_with_the_default() {
        let p = program(1, &[], RET_KILL_PROCESS);
        assert_eq!(p.len(), 5);
        assert_eq!(evaluate(&p, 1, 0), RET_KILL_PROCESS);
    }
}
