// SPDX-License-Identifier: Apache-2.0
//! Placing an arm64 boot payload: the `Image` (raw, or gzip-compressed as some distributions
//! ship `vmlinuz`), the initrd and the device tree.
//!
//! arm64 `Image` header (Documentation/arch/arm64/booting.rst), all fields little-endian:
//!
//! | offset | field                                              |
//! |--------|----------------------------------------------------|
//! | 0x00   | code0, code1 (u32 each)                            |
//! | 0x08   | `text_offset` (u64): image load offset from a 2 MiB aligned base |
//! | 0x10   | `image_size` (u64): effective size incl. BSS; 0 before Linux 3.17 |
//! | 0x18   | `flags` (u64): bit 0 = big-endian kernel           |
//! | 0x38   | magic "ARM\x64"                                    |
//!
//! Placement in the first RAM range: the kernel at the 2 MiB aligned start of RAM plus
//! `text_offset`; the FDT in the last 2 MiB block (it may not exceed 2 MiB nor cross a
//! 2 MiB boundary); the initrd page aligned right below the FDT.

use std::io::{Read, Seek, SeekFrom};

use arch::boot::{BootRequest, KernelFormat};
use arch::{Error, GuestMemory, MemoryLayout, Platform, RamRange, Result};
use flate2::read::GzDecoder;
use vm_memory::{Bytes, GuestAddress};

use crate::fdt::{self, FdtConfig, GicVersion, VirtioMmioNode};
use crate::layout::{FDT_MAX_SIZE, KERNEL_ALIGN};

pub const IMAGE_MAGIC: [u8; 4] = *b"ARM\x64";
const IMAGE_MAGIC_OFFSET: usize = 0x38;
const IMAGE_HEADER_SIZE: usize = 0x40;
/// `text_offset` of kernels older than 3.17, whose header has `image_size == 0`.
const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
const FLAG_BIG_ENDIAN: u64 = 1;
const PAGE_SIZE: u64 = 0x1000;

/// The fields of an arm64 `Image` header that placement needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    pub text_offset: u64,
    /// Bytes the kernel occupies once running (BSS included); 0 if the header predates it.
    pub image_size: u64,
    pub flags: u64,
}

fn le64(bytes: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[off..off + 8]);
    u64::from_le_bytes(b)
}

/// Parse the header at the start of `image`.
pub fn parse_image_header(image: &[u8]) -> std::result::Result<ImageHeader, String> {
    if image.len() < IMAGE_HEADER_SIZE {
        return Err(format!(
            "{} bytes are too short for an arm64 Image header",
            image.len()
        ));
    }
    if image[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4] != IMAGE_MAGIC {
        return Err("no arm64 Image magic \"ARM\\x64\" at offset 0x38".into());
    }
    let header = ImageHeader {
        text_offset: le64(image, 0x08),
        image_size: le64(image, 0x10),
        flags: le64(image, 0x18),
    };
    if header.image_size != 0 && header.flags & FLAG_BIG_ENDIAN != 0 {
        return Err("a big-endian arm64 kernel; only little-endian guests are supported".into());
    }
    Ok(header)
}

/// Decompress a gzip stream, refusing output beyond `limit` bytes.
pub fn gunzip(input: impl Read, limit: u64) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    GzDecoder::new(input)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!(
            "decompresses to more than {limit} bytes (the guest's RAM)"
        ));
    }
    Ok(out)
}

/// Where the payload goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub kernel_addr: u64,
    pub kernel_end: u64,
    pub fdt_addr: u64,
    /// `(address, size)`.
    pub initrd: Option<(u64, u64)>,
}

/// Place a kernel with `header` whose file is `image_len` bytes, and an initrd of
/// `initrd_size` bytes, in `ram`.
pub fn place(
    ram: RamRange,
    header: &ImageHeader,
    image_len: u64,
    initrd_size: Option<u64>,
) -> Result<Placement> {
    let (text_offset, footprint) = if header.image_size == 0 {
        (LEGACY_TEXT_OFFSET, image_len)
    } else {
        (header.text_offset, header.image_size.max(image_len))
    };
    let base = ram.start.div_ceil(KERNEL_ALIGN) * KERNEL_ALIGN;
    let kernel_addr = base
        .checked_add(text_offset)
        .ok_or_else(|| Error::Kernel(format!("text_offset {text_offset:#x} is absurd")))?;
    let kernel_end = kernel_addr
        .checked_add(footprint)
        .ok_or_else(|| Error::Kernel(format!("image_size {footprint:#x} is absurd")))?;
    let fdt_addr = ram
        .end()
        .checked_sub(FDT_MAX_SIZE)
        .map(|a| a / KERNEL_ALIGN * KERNEL_ALIGN)
        .filter(|a| *a >= kernel_end)
        .ok_or_else(|| {
            Error::Kernel(format!(
                "the kernel needs {footprint} bytes at {kernel_addr:#x} plus 2 MiB for the device tree; guest RAM ends at {:#x}: give the guest more --memory",
                ram.end()
            ))
        })?;
    let initrd = match initrd_size {
        None => None,
        Some(size) => {
            let addr = fdt_addr
                .checked_sub(size)
                .map(|a| a / PAGE_SIZE * PAGE_SIZE)
                .filter(|a| *a >= kernel_end)
                .ok_or_else(|| {
                    Error::Initrd(format!(
                        "{size} bytes do not fit in guest RAM between the kernel (ending at {kernel_end:#x}) and the device tree at {fdt_addr:#x}; give the guest more --memory"
                    ))
                })?;
            Some((addr, size))
        }
    };
    Ok(Placement {
        kernel_addr,
        kernel_end,
        fdt_addr,
        initrd,
    })
}

/// What the device tree describes besides the boot payload.
#[derive(Clone, Copy, Debug)]
pub struct Machine<'a> {
    pub vcpus: u32,
    pub gic: GicVersion,
    pub platform: &'a Platform,
    pub virtio: &'a [VirtioMmioNode],
}

/// How vCPU 0 enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootEntry {
    /// PC: the first byte of the Image.
    pub entry: u64,
    /// x0: the device tree.
    pub fdt_addr: u64,
}

fn guest_write(what: &'static str) -> impl Fn(vm_memory::GuestMemoryError) -> Error {
    move |e| Error::GuestWrite {
        what,
        reason: e.to_string(),
    }
}

/// The kernel as read so far: a raw Image stays in its file (only the header is read
/// here; it is streamed into guest memory once placed), a gzip one is decompressed.
struct Kernel {
    header: ImageHeader,
    len: u64,
    decompressed: Option<Vec<u8>>,
}

fn read_kernel(request: &mut BootRequest, limit: u64) -> Result<Kernel> {
    let kpath = request.kernel.path.display().to_string();
    let kerr = |e: String| Error::Kernel(format!("{kpath}: {e}"));
    let file = &mut request.kernel.file;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| kerr(e.to_string()))?;
    match request.kernel.format {
        KernelFormat::Arm64Image => {
            let mut head = Vec::with_capacity(IMAGE_HEADER_SIZE);
            file.take(IMAGE_HEADER_SIZE as u64)
                .read_to_end(&mut head)
                .map_err(|e| kerr(format!("reading: {e}")))?;
            Ok(Kernel {
                header: parse_image_header(&head).map_err(kerr)?,
                len: request.kernel.size,
                decompressed: None,
            })
        }
        KernelFormat::Gzip => {
            let image = gunzip(&mut *file, limit).map_err(kerr)?;
            Ok(Kernel {
                header: parse_image_header(&image).map_err(kerr)?,
                len: image.len() as u64,
                decompressed: Some(image),
            })
        }
        other => Err(kerr(format!(
            "{other:?} kernels do not boot on aarch64 (use an arm64 Image or a gzip-compressed one)"
        ))),
    }
}

/// Load everything `request` names into `mem` and write the device tree; returns how
/// vCPU 0 must start.
pub fn load(
    mem: &GuestMemory,
    layout: &MemoryLayout,
    request: &mut BootRequest,
    machine: &Machine,
) -> Result<BootEntry> {
    let kpath = request.kernel.path.display().to_string();
    let ram = *layout
        .ram
        .first()
        .ok_or_else(|| Error::Config("the guest has no RAM".into()))?;
    let kernel = read_kernel(request, layout.ram_bytes())?;
    let placement = place(
        ram,
        &kernel.header,
        kernel.len,
        request.initrd.as_ref().map(|i| i.size),
    )?;
    let kernel_at = GuestAddress(placement.kernel_addr);
    match kernel.decompressed {
        Some(image) => mem
            .write_slice(&image, kernel_at)
            .map_err(guest_write("kernel"))?,
        None => {
            let file = &mut request.kernel.file;
            file.seek(SeekFrom::Start(0))
                .and_then(|_| {
                    mem.read_exact_volatile_from(kernel_at, file, kernel.len as usize)
                        .map_err(std::io::Error::other)
                })
                .map_err(|e| Error::Kernel(format!("{kpath}: reading: {e}")))?;
        }
    }

    if let (Some(initrd), Some((addr, size))) = (request.initrd.as_mut(), placement.initrd) {
        let path = initrd.path.display().to_string();
        initrd
            .file
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::Initrd(format!("{path}: {e}")))?;
        mem.read_exact_volatile_from(GuestAddress(addr), &mut initrd.file, size as usize)
            .map_err(|e| Error::Initrd(format!("{path}: reading: {e}")))?;
    }

    let blob = fdt::build(&FdtConfig {
        vcpus: machine.vcpus,
        ram: &layout.ram,
        gic: machine.gic,
        cmdline: &request.cmdline,
        initrd: placement.initrd,
        devices: &machine.platform.devices,
        virtio: machine.virtio,
    })
    .map_err(|e| Error::GuestWrite {
        what: "device tree",
        reason: e.to_string(),
    })?;
    if blob.len() as u64 > FDT_MAX_SIZE {
        return Err(Error::GuestWrite {
            what: "device tree",
            reason: format!("{} bytes exceed the 2 MiB the kernel accepts", blob.len()),
        });
    }
    mem.write_slice(&blob, GuestAddress(placement.fdt_addr))
        .map_err(guest_write("device tree"))?;
    Ok(BootEntry {
        entry: placement.kernel_addr,
        fdt_addr: placement.fdt_addr,
    })
}

#[cfg(test)]
mod tests;
