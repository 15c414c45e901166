// SPDX-License-Identifier: Apache-2.0
//! The floor: the least a KVM program can do to run the bench guest. It creates the VM
//! (same memory size, the kernel objects [`Objects`] names, 1 vCPU), loads the ELF's `PT_LOAD` segments at
//! their physical addresses, enters the PVH entry point in 32-bit protected mode with the
//! same registers polyvisor sets, prints `mark V` on stderr for each boot-timer write and
//! exits 0 on the i8042 reset (`out 0x64, 0xfe`). No devices, no threads, no config.

use std::io::Write;

use kvm_bindings::{kvm_regs, kvm_segment, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit};

use crate::elf::{pvh_image, PvhImage};
use crate::guests::BOOT_TIMER;
use crate::mapping::Mapping;

/// Start of the 32-bit MMIO hole (as polyvisor's x86_64 layout).
const MMIO_HOLE_START: u64 = 0xc000_0000;
const FOUR_GIB: u64 = 1 << 32;
const TSS_ADDR: usize = 0xfffb_d000;
/// `ebx` at the PVH entry: where polyvisor puts `hvm_start_info`.
const PVH_INFO_ADDR: u64 = 0x6000;

fn flat(selector: u16, type_: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// The KVM objects a floor creates beyond the VM, its memory slots, the TSS and 1 vCPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objects {
    /// `KVM_CREATE_IRQCHIP` (PIC, I/O APIC, LAPIC).
    pub irqchip: bool,
    /// `KVM_SET_IDENTITY_MAP_ADDR` at polyvisor's address.
    pub identity_map: bool,
    /// `KVM_CREATE_PIT2`.
    pub pit: bool,
    /// One irqfd bound to each of these GSIs (needs `irqchip`).
    pub irqfds: Vec<u32>,
}

impl Objects {
    /// Parse `LIST`: comma-separated `irqchip`, `identity-map`, `pit`, `irqfd=GSI`; `bare`
    /// (or the empty string) is none of them.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut o = Self::default();
        for item in list.split(',').filter(|s| !s.is_empty() && *s != "bare") {
            match item.split_once('=') {
                None if item == "irqchip" => o.irqchip = true,
                None if item == "identity-map" => o.identity_map = true,
                None if item == "pit" => o.pit = true,
                Some(("irqfd", gsi)) => o
                    .irqfds
                    .push(gsi.parse().map_err(|_| format!("irqfd={gsi}: not a GSI"))?),
                _ => {
                    return Err(format!(
                        "--objects: unknown '{item}' (irqchip, identity-map, pit, irqfd=GSI, bare)"
                    ))
                }
            }
        }
        if !o.irqchip && (o.pit || !o.irqfds.is_empty()) {
            return Err("--objects: pit and irqfd need irqchip".into());
        }
        Ok(o)
    }
}

/// `KVM_SET_IDENTITY_MAP_ADDR` as polyvisor's x86_64 layout sets it.
const IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

/// Runs `kernel` (a PVH ELF) with `memory` bytes of RAM and `objects`. Returns the process
/// exit code.
pub fn run(kernel: &[u8], memory: u64, objects: &Objects) -> Result<u8, String> {
    let PvhImage { segments, entry } = pvh_image(kernel)?;
    let kvm = Kvm::new().map_err(|e| format!("/dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    if objects.identity_map {
        vm.set_identity_map_address(IDENTITY_MAP_ADDR)
            .map_err(|e| format!("KVM_SET_IDENTITY_MAP_ADDR: {e}"))?;
    }
    vm.set_tss_address(TSS_ADDR)
        .map_err(|e| format!("KVM_SET_TSS_ADDR: {e}"))?;

    // RAM from 0, split around the hole like polyvisor's layout.
    let low = memory.min(MMIO_HOLE_START);
    let mut ranges = vec![(0u64, low)];
    if memory > low {
        ranges.push((FOUR_GIB, memory - low));
    }
    let mut maps = Vec::new();
    for (slot, (gpa, len)) in ranges.iter().enumerate() {
        let m = Mapping::new(*len as usize, 1)?;
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: *gpa,
            memory_size: *len,
            userspace_addr: m.host as u64,
        };
        // SAFETY: the mapping lives in `maps` until after the VM is dropped (declared
        // later, dropped first).
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
        maps.push((*gpa, m));
    }
    for (paddr, data) in segments {
        let (gpa, m) = maps
            .iter()
            .find(|(gpa, m)| paddr >= *gpa && paddr + data.len() as u64 <= gpa + m.len as u64)
            .ok_or_else(|| format!("segment at {paddr:#x} is outside RAM"))?;
        m.write((paddr - gpa) as usize, data)?;
    }
    // Kept until the VM is dropped, as polyvisor keeps its interrupt lines.
    let mut irqfds = Vec::new();
    if objects.irqchip {
        vm.create_irq_chip()
            .map_err(|e| format!("KVM_CREATE_IRQCHIP: {e}"))?;
    }
    if objects.pit {
        let pit = kvm_bindings::kvm_pit_config {
            flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(|e| format!("KVM_CREATE_PIT2: {e}"))?;
    }
    for gsi in &objects.irqfds {
        let fd = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| format!("eventfd: {e}"))?;
        vm.register_irqfd(&fd, *gsi)
            .map_err(|e| format!("KVM_IRQFD (GSI {gsi}): {e}"))?;
        irqfds.push(fd);
    }

    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    sregs.cs = flat(0x08, 0xb); // execute/read, accessed
    let data = flat(0x10, 0x3); // read/write, accessed
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.cr0 = 0x11; // PE | ET
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs)
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let regs = kvm_regs {
        rflags: 2,
        rip: entry,
        rbx: PVH_INFO_ADDR,
        ..Default::default()
    };
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))?;

    let stderr = std::io::stderr();
    loop {
        match vcpu.run() {
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                if addr == u64::from(BOOT_TIMER) {
                    if let Some(v) = data.first() {
                        let _ = stderr.lock().write_all(format!("mark {v}\n").as_bytes());
                    }
                }
            }
            Ok(VcpuExit::IoOut(0x64, [0xfe])) => return Ok(0),
            Ok(VcpuExit::Shutdown) => return Err("guest triple-faulted".into()),
            Ok(VcpuExit::FailEntry(r, _)) => return Err(format!("KVM entry failed: {r:#x}")),
            Ok(VcpuExit::InternalError) => return Err("KVM internal error".into()),
            Ok(_) => {}
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => return Err(format!("KVM_RUN: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Objects;

    #[test]
    fn objects_parse_lists_and_refuse_what_needs_an_irqchip() {
        assert_eq!(Objects::parse("bare").unwrap(), Objects::default());
        let o = Objects::parse(crate::bench::POLYVISOR_OBJECTS).unwrap();
        assert!(o.irqchip && o.identity_map && !o.pit);
        assert_eq!(o.irqfds, [1, 4, 5]);
        assert!(Objects::parse("irqchip,pit").unwrap().pit);
        assert!(Objects::parse("pit").is_err());
        assert!(Objects::parse("irqfd=4").is_err());
        assert!(Objects::parse("irqchip,irqfd=x").is_err());
        assert!(Objects::parse("gic").is_err());
    }
}
