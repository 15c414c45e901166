// SPDX-License-Identifier: Apache-2.0
//! An x86_64 KVM vCPU: CPUID, MSRs, FPU, LAPIC and the boot registers, and exit decoding.

use std::sync::Arc;

use arch::{Error, Result, Vcpu, VcpuExit, VcpuKicker};
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, CpuId, Msrs};
use kvm_ioctls::VcpuExit as KvmExit;

use super::loader::BootEntry;
use super::KvmVm;
use crate::cpuid::{apply_topology, Topology};
use crate::gdt::{self, Segment};
use crate::layout::{BOOT_STACK_POINTER, GDT_ADDR, IDT_ADDR, PVH_INFO_ADDR, ZERO_PAGE_ADDR};

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;
const RFLAGS_RESERVED: u64 = 0x2;

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MISC_ENABLE_FAST_STRING: u64 = 1;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_TYPE_WRBACK: u64 = 6;

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// One vCPU of a [`KvmVm`].
pub struct KvmVcpu {
    fd: arch_kvm::RunFd,
    index: u32,
}

impl KvmVcpu {
    pub(super) fn new(vm: &KvmVm, index: u32, entry: BootEntry) -> Result<Self> {
        let fd = vm
            .fd
            .create_vcpu(u64::from(index))
            .map_err(|e| Error::hv("KVM_CREATE_VCPU", e))?;
        let vcpu = Self {
            fd: arch_kvm::RunFd::new(fd),
            index,
        };
        vcpu.set_cpuid(vm, index)?;
        vcpu.set_msrs()?;
        vcpu.set_fpu()?;
        vcpu.set_lapic_lints()?;
        if index == 0 {
            vcpu.set_boot_registers(entry)?;
        }
        Ok(vcpu)
    }

    fn fault(&self, reason: String) -> Error {
        Error::VcpuFault {
            vcpu: self.index,
            reason,
        }
    }

    fn set_cpuid(&self, vm: &KvmVm, index: u32) -> Result<()> {
        let mut entries = vm.cpuid.clone();
        apply_topology(
            &mut entries,
            Topology {
                cpu_index: index,
                cpu_count: vm.vcpus,
            },
        );
        let kvm_entries: Vec<kvm_bindings::kvm_cpuid_entry2> = entries
            .iter()
            .map(|e| kvm_bindings::kvm_cpuid_entry2 {
                function: e.function,
                index: e.index,
                flags: e.flags,
                eax: e.eax,
                ebx: e.ebx,
                ecx: e.ecx,
                edx: e.edx,
                ..Default::default()
            })
            .collect();
        let cpuid = CpuId::from_entries(&kvm_entries)
            .map_err(|e| self.fault(format!("building CPUID: {e:?}")))?;
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(|e| Error::hv("KVM_SET_CPUID2", e))
    }

    fn set_msrs(&self) -> Result<()> {
        let entries: Vec<kvm_msr_entry> = [
            (MSR_IA32_SYSENTER_CS, 0),
            (MSR_IA32_SYSENTER_ESP, 0),
            (MSR_IA32_SYSENTER_EIP, 0),
            (MSR_STAR, 0),
            (MSR_CSTAR, 0),
            (MSR_KERNEL_GS_BASE, 0),
            (MSR_SYSCALL_MASK, 0),
            (MSR_LSTAR, 0),
            (MSR_IA32_TSC, 0),
            (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
            (MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRBACK),
        ]
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
        let msrs = Msrs::from_entries(&entries)
            .map_err(|e| self.fault(format!("building MSRs: {e:?}")))?;
        let written = self
            .fd
            .set_msrs(&msrs)
            .map_err(|e| Error::hv("KVM_SET_MSRS", e))?;
        if written != entries.len() {
            return Err(self.fault(format!(
                "KVM accepted only {written} of {} boot MSRs (first refused: {:#x})",
                entries.len(),
                entries[written].index
            )));
        }
        Ok(())
    }

    fn set_fpu(&self) -> Result<()> {
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        self.fd
            .set_fpu(&fpu)
            .map_err(|e| Error::hv("KVM_SET_FPU", e))
    }

    /// LINT0 delivers the 8259's ExtINT, LINT1 NMIs, as a PC's firmware leaves them.
    fn set_lapic_lints(&self) -> Result<()> {
        let mut lapic = self
            .fd
            .get_lapic()
            .map_err(|e| Error::hv("KVM_GET_LAPIC", e))?;
        for (reg, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
            let bytes: Vec<u8> = lapic.regs[reg..reg + 4].iter().map(|b| *b as u8).collect();
            let value = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            let value = (value & !0x700) | (mode << 8);
            for (i, b) in value.to_le_bytes().iter().enumerate() {
                lapic.regs[reg + i] = *b as _;
            }
        }
        self.fd
            .set_lapic(&lapic)
            .map_err(|e| Error::hv("KVM_SET_LAPIC", e))
    }

    fn set_boot_registers(&self, entry: BootEntry) -> Result<()> {
        let mut sregs = self
            .fd
            .get_sregs()
            .map_err(|e| Error::hv("KVM_GET_SREGS", e))?;
        let long_mode = matches!(entry, BootEntry::Linux64 { .. });
        let table = gdt::boot_gdt(long_mode);
        let code = kvm_seg(gdt::segment_from_gdt(table[1], 1));
        let data = kvm_seg(gdt::segment_from_gdt(table[2], 2));
        let tss = kvm_seg(gdt::segment_from_gdt(table[3], 3));
        sregs.gdt.base = GDT_ADDR;
        sregs.gdt.limit = (table.len() * 8 - 1) as u16;
        sregs.idt.base = IDT_ADDR;
        sregs.idt.limit = 7;
        sregs.cs = code;
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        sregs.tr = tss;

        let mut regs = kvm_regs {
            rflags: RFLAGS_RESERVED,
            ..Default::default()
        };
        match entry {
            BootEntry::Linux64 { entry } => {
                sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
                sregs.cr3 = crate::layout::PML4_ADDR;
                sregs.cr4 = X86_CR4_PAE;
                sregs.efer = EFER_LME | EFER_LMA;
                regs.rip = entry;
                regs.rsp = BOOT_STACK_POINTER;
                regs.rbp = BOOT_STACK_POINTER;
                regs.rsi = ZERO_PAGE_ADDR;
            }
            BootEntry::Pvh { entry } => {
                sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
                sregs.cr4 = 0;
                sregs.efer = 0;
                regs.rip = entry;
                regs.rbx = PVH_INFO_ADDR;
            }
        }
        self.fd
            .set_sregs(&sregs)
            .map_err(|e| Error::hv("KVM_SET_SREGS", e))?;
        self.fd
            .set_regs(&regs)
            .map_err(|e| Error::hv("KVM_SET_REGS", e))
    }
}

fn kvm_seg(s: Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present,
        dpl: s.dpl,
        db: s.db,
        s: s.s,
        l: s.l,
        g: s.g,
        avl: s.avl,
        unusable: u8::from(s.present == 0),
        padding: 0,
    }
}

impl Vcpu for KvmVcpu {
    fn kicker(&self) -> Arc<dyn VcpuKicker> {
        self.fd.kicker()
    }

    fn run(&mut self) -> Result<VcpuExit<'_>> {
        arch_kvm::map_run(
            self.index,
            arch_kvm::run_vcpu(&mut self.fd),
            |exit| match exit {
                // A triple fault: a PC resets.
                KvmExit::Shutdown => Some(VcpuExit::Reset),
                // With the in-kernel LAPIC, HLT is handled by KVM; a stray HLT exit just means
                // "run again".
                KvmExit::Hlt | KvmExit::IrqWindowOpen => Some(VcpuExit::Handled),
                _ => None,
            },
        )
    }
}
