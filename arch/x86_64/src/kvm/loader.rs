// SPDX-License-Identifier: Apache-2.0
//! Placing an x86 boot payload: the kernel (bzImage or ELF, through linux-loader), the
//! command line, the initrd, and the boot information of the entry protocol the kernel
//! supports (PVH `hvm_start_info` when the ELF has the PVH note, else the Linux zero page).

use arch::boot::{BootRequest, KernelFormat};
use arch::{Error, GuestMemory, MemoryLayout, Result};
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::{BzImage, Elf, KernelLoader, KernelLoaderResult, PvhBootCapability};
use vm_memory::{Bytes, GuestAddress};

use crate::gdt;
use crate::layout::*;
use crate::paging;
use crate::placement;

/// How vCPU 0 enters the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootEntry {
    /// Linux 64-bit boot protocol: long mode, RIP = entry, RSI = zero page.
    Linux64 { entry: u64 },
    /// PVH: 32-bit protected mode without paging, EBX = `hvm_start_info`.
    Pvh { entry: u64 },
}

const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
/// Offset of the 64-bit entry point from the start of a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

/// Load everything `request` names into `mem`; returns how vCPU 0 must start.
pub fn load(
    mem: &GuestMemory,
    layout: &MemoryLayout,
    request: &mut BootRequest,
) -> Result<BootEntry> {
    let kpath = request.kernel.path.display().to_string();
    let himem = Some(GuestAddress(HIGH_MEMORY_START));
    let kernel = match request.kernel.format {
        KernelFormat::BzImage => BzImage::load(mem, None, &mut request.kernel.file, himem),
        KernelFormat::Elf64 => Elf::load(mem, None, &mut request.kernel.file, himem),
        other => {
            return Err(Error::Kernel(format!(
                "{kpath}: {other:?} kernels do not boot on x86_64 (use a bzImage or an ELF vmlinux)"
            )))
        }
    }
    .map_err(|e| Error::Kernel(format!("{kpath}: {e}")))?;

    let header = kernel.setup_header;
    let cmdline_limit = match header {
        Some(h) if h.cmdline_size > 0 => h.cmdline_size as usize,
        _ => CMDLINE_MAX_SIZE - 1,
    };
    write_cmdline(mem, &request.cmdline, cmdline_limit)?;

    // Where the kernel starts and, for a bzImage, where it decompresses; all checked
    // against guest RAM. An ELF's `kernel_load` is its (possibly virtual) e_entry, not
    // where its segments are: those end at `kernel_end`, at or above 1 MiB.
    let bad_kernel = |e: placement::Error| Error::Kernel(format!("{kpath}: {e}"));
    let (start, decompress) = match request.kernel.format {
        KernelFormat::BzImage => (
            kernel.kernel_load.0,
            header.map(|h| placement::Decompress {
                pref_address: h.pref_address,
                init_size: h.init_size,
            }),
        ),
        _ => (HIGH_MEMORY_START, None),
    };
    let kernel_end =
        placement::kernel_end(start, kernel.kernel_end, decompress, layout.low_ram_end())
            .map_err(bad_kernel)?;

    let initrd = load_initrd(mem, layout, request, &kernel, kernel_end)?;
    let e820 = e820_map(layout);

    let entry = match (request.kernel.format, kernel.pvh_boot_cap) {
        (KernelFormat::Elf64, PvhBootCapability::PvhEntryPresent(entry)) => {
            placement::check_entry(entry.0, start, kernel.kernel_end).map_err(bad_kernel)?;
            write_pvh_start_info(mem, initrd, &e820)?;
            BootEntry::Pvh { entry: entry.0 }
        }
        _ => {
            let entry = match request.kernel.format {
                KernelFormat::BzImage => {
                    placement::end_of("the 64-bit entry", start, BZIMAGE_64BIT_ENTRY_OFFSET)
                        .map_err(bad_kernel)?
                }
                _ => kernel.kernel_load.0,
            };
            placement::check_entry(entry, start, kernel.kernel_end).map_err(bad_kernel)?;
            write_zero_page(mem, header, request.cmdline.len(), initrd, &e820)?;
            BootEntry::Linux64 { entry }
        }
    };
    write_boot_structures(mem, matches!(entry, BootEntry::Linux64 { .. }))?;
    Ok(entry)
}

fn guest_write(what: &'static str) -> impl Fn(vm_memory::GuestMemoryError) -> Error {
    move |e| Error::GuestWrite {
        what,
        reason: e.to_string(),
    }
}

/// The GDT whose descriptors the vCPU's segment registers are loaded from (so a guest that
/// reloads a selector gets the same segment), an empty IDT, the code at the BIOS reset
/// vector (a reboot through the BIOS resets through the FADT's reset register) and, for
/// the 64-bit entry, identity page tables.
fn write_boot_structures(mem: &GuestMemory, long_mode: bool) -> Result<()> {
    let table: Vec<u8> = gdt::boot_gdt(long_mode)
        .iter()
        .flat_map(|e| e.to_le_bytes())
        .collect();
    mem.write_slice(&table, GuestAddress(GDT_ADDR))
        .map_err(guest_write("GDT"))?;
    mem.write_slice(&0u64.to_le_bytes(), GuestAddress(IDT_ADDR))
        .map_err(guest_write("IDT"))?;
    let reset = crate::reset_vector::code(
        ACPI_PM_PORT + devices::legacy::acpi_pm::RESET as u16,
        devices::legacy::acpi_pm::RESET_VALUE,
    );
    mem.write_slice(&reset, GuestAddress(crate::reset_vector::RESET_VECTOR))
        .map_err(guest_write("reset vector"))?;
    // PVH enters with paging off: page tables only for the 64-bit entry.
    if long_mode {
        paging::write_identity_tables(mem).map_err(guest_write("page tables"))?;
    }
    Ok(())
}

fn write_cmdline(mem: &GuestMemory, cmdline: &str, limit: usize) -> Result<()> {
    if cmdline.len() > limit {
        return Err(Error::Cmdline(format!(
            "{} bytes long; this kernel accepts at most {limit}",
            cmdline.len()
        )));
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_ADDR))
        .map_err(guest_write("command line"))
}

/// Where the initrd went: (address, size).
type InitrdPlacement = Option<(u64, u64)>;

/// Put the initrd at the top of low RAM (below the kernel's `initrd_addr_max`), page
/// aligned, above the kernel (which, decompressed, ends at `kernel_end`).
fn load_initrd(
    mem: &GuestMemory,
    layout: &MemoryLayout,
    request: &mut BootRequest,
    kernel: &KernelLoaderResult,
    kernel_end: u64,
) -> Result<InitrdPlacement> {
    let Some(initrd) = request.initrd.as_mut() else {
        return Ok(None);
    };
    let path = initrd.path.display().to_string();
    let addr_max = kernel
        .setup_header
        .map(|h| u64::from(h.initrd_addr_max))
        .filter(|m| *m != 0)
        .unwrap_or(u64::MAX);
    let top = layout.low_ram_end().min(addr_max.saturating_add(1));
    let addr = placement::initrd_addr(initrd.size, kernel_end, top)
        .map_err(|e| Error::Initrd(format!("{path}: {e}")))?;
    let size = usize::try_from(initrd.size)
        .map_err(|_| Error::Initrd(format!("{path}: {} bytes is too big", initrd.size)))?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut initrd.file, size)
        .map_err(|e| Error::Initrd(format!("{path}: reading: {e}")))?;
    Ok(Some((addr, initrd.size)))
}

fn write_zero_page(
    mem: &GuestMemory,
    header: Option<setup_header>,
    cmdline_len: usize,
    initrd: InitrdPlacement,
    e820: &[E820Entry],
) -> Result<()> {
    let mut params = boot_params::default();
    if let Some(h) = header {
        params.hdr = h;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    params.acpi_rsdp_addr = RSDP_ADDR;
    params.hdr.cmdline_size = cmdline_len as u32;
    if params.hdr.kernel_alignment == 0 {
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    }
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    if e820.len() > params.e820_table.len() {
        return Err(Error::GuestWrite {
            what: "zero page",
            reason: format!("{} e820 entries do not fit", e820.len()),
        });
    }
    for (slot, e) in params.e820_table.iter_mut().zip(e820) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind as u32,
        };
    }
    params.e820_entries = e820.len() as u8;
    LinuxBootConfigurator::write_bootparams(
        &BootParams::new::<boot_params>(&params, GuestAddress(ZERO_PAGE_ADDR)),
        mem,
    )
    .map_err(|e| Error::GuestWrite {
        what: "zero page",
        reason: e.to_string(),
    })
}

fn write_pvh_start_info(
    mem: &GuestMemory,
    initrd: InitrdPlacement,
    e820: &[E820Entry],
) -> Result<()> {
    if e820.len() > PVH_MEMMAP_MAX_ENTRIES {
        return Err(Error::GuestWrite {
            what: "PVH memory map",
            reason: format!("{} entries do not fit", e820.len()),
        });
    }
    let memmap: Vec<hvm_memmap_table_entry> = e820
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind as u32,
            reserved: 0,
        })
        .collect();
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        memmap_paddr: PVH_MEMMAP_ADDR,
        memmap_entries: memmap.len() as u32,
        rsdp_paddr: RSDP_ADDR,
        ..Default::default()
    };
    let mut modules = Vec::new();
    if let Some((addr, size)) = initrd {
        modules.push(hvm_modlist_entry {
            paddr: addr,
            size,
            ..Default::default()
        });
        info.nr_modules = 1;
        info.modlist_paddr = PVH_MODLIST_ADDR;
    }
    let mut params = BootParams::new::<hvm_start_info>(&info, GuestAddress(PVH_INFO_ADDR));
    params.set_sections::<hvm_memmap_table_entry>(&memmap, GuestAddress(PVH_MEMMAP_ADDR));
    if !modules.is_empty() {
        params.set_modules::<hvm_modlist_entry>(&modules, GuestAddress(PVH_MODLIST_ADDR));
    }
    PvhBootConfigurator::write_bootparams(&params, mem).map_err(|e| Error::GuestWrite {
        what: "PVH start info",
        reason: e.to_string(),
    })
}
