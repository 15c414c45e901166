// SPDX-License-Identifier: Apache-2.0
//! Initial program load: placing what `--kernel` names in guest memory the way QEMU's
//! s390x loader does, and the parameter area of a Linux image.
//!
//! - An s390x ELF64 executable (big-endian, `EM_S390`; kvm-unit-tests builds its tests so):
//!   its `PT_LOAD` segments at their physical addresses, entered at `e_entry` ([`elf`]).
//! - Anything else is a raw image: loaded at absolute 0 whatever its first bytes hold,
//!   entered at 0x10000.
//!
//! Either way the PSW is 64-bit (EA+BA). An image that carries Linux's signature "S390EP"
//! at 0x10008 once loaded is Linux: its parameter area gets the initrd and the command
//! line. Any other image gets no parameter area: its memory is left as the file made it,
//! the command line is not passed and `--initrd` is ignored, each with a warning.
//!
//! Parameter area (Linux `arch/s390/include/asm/setup.h`, `struct parmarea` at 0x10400):
//! initrd start and size as big-endian u64 at 0x10408 / 0x10410, the largest command line
//! the kernel accepts (including its NUL) as a u64 at 0x10430 (0 in kernels that predate it:
//! then 896 bytes), the NUL-terminated command line at 0x10480.
//! Portable: tested on every target.

pub mod elf;
#[cfg(test)]
mod tests;

use std::io::{Seek, SeekFrom};

use arch::{BootRequest, KernelFormat};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _, ReadVolatile};

use crate::GuestMemory;

/// The PSW every image starts with: EA+BA (64-bit addressing), everything else off.
pub const IPL_PSW_MASK: u64 = 0x0000_0001_8000_0000;
/// Where a raw image (a Linux image among them) is entered.
pub const IPL_PSW_ADDR: u64 = 0x10000;

/// Linux's signature in its image, and where.
pub const LINUX_MAGIC_ADDR: u64 = 0x10008;
pub const LINUX_MAGIC: &[u8; 6] = b"S390EP";

pub const PARMAREA: u64 = 0x10400;
pub const INITRD_START_ADDR: u64 = 0x10408;
pub const INITRD_SIZE_ADDR: u64 = 0x10410;
pub const MAX_CMDLINE_ADDR: u64 = 0x10430;
pub const CMDLINE_ADDR: u64 = 0x10480;
/// Command-line room (with its NUL) in kernels that do not say.
pub const LEGACY_CMDLINE_SIZE: u64 = 896;
/// The initrd goes at least this high (the decompressor's working area is below), ...
pub const INITRD_MIN_ADDR: u64 = 8 << 20;
/// ... 1 MiB aligned, and at least 1 MiB above the end of the image.
pub const INITRD_ALIGN: u64 = 1 << 20;

/// Why a boot payload cannot be placed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IplError {
    #[error("the image ({size} bytes) does not fit in {ram} bytes of guest memory")]
    KernelTooBig { size: u64, ram: u64 },
    #[error("is an {0}; s390x boots a raw s390x image or an s390x ELF64 executable")]
    ForeignFormat(&'static str),
    #[error("ELF: {0}")]
    Elf(String),
    #[error("the initrd ({size} bytes at {start:#x}) does not fit in {ram} bytes of guest memory")]
    InitrdTooBig { start: u64, size: u64, ram: u64 },
    #[error("is {len} bytes; this kernel accepts at most {max} (including the final NUL)")]
    CmdlineTooLong { len: u64, max: u64 },
    #[error("contains a NUL byte")]
    CmdlineNul,
    #[error("reading: {0}")]
    Read(String),
    #[error("guest memory: {0}")]
    Memory(String),
}

/// Where an image ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The PSW address to start at.
    pub entry: u64,
    /// One past the highest byte loaded.
    pub end: u64,
}

/// The result of an IPL: where to start, and what the guest was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipl {
    pub entry: u64,
    /// The image is Linux ("S390EP" at 0x10008): its parameter area was filled.
    pub linux: bool,
    /// Where the initrd went, and its size.
    pub initrd: Option<(u64, u64)>,
}

/// Load the payload `request` names into `mem`; errors name the file (and are reported
/// against its flag).
pub fn load(mem: &GuestMemory, request: &mut BootRequest) -> arch::Result<Ipl> {
    let kpath = format!("{:?}", request.kernel.path);
    let kernel_err = |e: IplError| arch::Error::Kernel(format!("{kpath}: {e}"));
    let file = &mut request.kernel.file;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| kernel_err(IplError::Read(e.to_string())))?;
    let size = request.kernel.size;
    let loaded = match request.kernel.format {
        KernelFormat::Elf64 => elf::load(mem, file, size),
        KernelFormat::S390Image | KernelFormat::Raw => load_raw(mem, file, size),
        KernelFormat::BzImage => Err(IplError::ForeignFormat("x86 bzImage")),
        KernelFormat::Arm64Image => Err(IplError::ForeignFormat("arm64 Image")),
        KernelFormat::Gzip => Err(IplError::ForeignFormat("gzip file")),
    }
    .map_err(kernel_err)?;
    if !is_linux(mem) {
        if let Some(rd) = &request.initrd {
            log::warn!(
                "{kpath}: not a Linux image (no \"S390EP\" at 0x10008): --initrd {:?} and the \
                 command line are not passed to it",
                rd.path
            );
        } else {
            log::warn!(
                "{kpath}: not a Linux image (no \"S390EP\" at 0x10008): the command line is \
                 not passed to it"
            );
        }
        return Ok(Ipl {
            entry: loaded.entry,
            linux: false,
            initrd: None,
        });
    }
    let initrd = match request.initrd.as_mut() {
        Some(rd) => {
            let rd_err = |e: IplError| arch::Error::Initrd(format!("{:?}: {e}", rd.path));
            rd.file
                .seek(SeekFrom::Start(0))
                .map_err(|e| rd_err(IplError::Read(e.to_string())))?;
            let at = load_initrd(mem, &mut rd.file, loaded.end, rd.size).map_err(rd_err)?;
            Some((at, rd.size))
        }
        None => None,
    };
    write_parmarea(mem, initrd, &request.cmdline).map_err(|e| match e {
        IplError::CmdlineTooLong { .. } | IplError::CmdlineNul => {
            arch::Error::Cmdline(e.to_string())
        }
        other => arch::Error::GuestWrite {
            what: "the IPL parameter area",
            reason: other.to_string(),
        },
    })?;
    Ok(Ipl {
        entry: loaded.entry,
        linux: true,
        initrd,
    })
}

/// Whether the image in `mem` is Linux (its signature at 0x10008).
pub fn is_linux(mem: &GuestMemory) -> bool {
    let mut magic = [0u8; 6];
    mem.read_slice(&mut magic, GuestAddress(LINUX_MAGIC_ADDR))
        .is_ok_and(|()| &magic == LINUX_MAGIC)
}

/// Where the initrd of an image ending at `end` goes.
pub fn initrd_address(end: u64) -> u64 {
    let above = end
        .saturating_add(INITRD_ALIGN)
        .div_ceil(INITRD_ALIGN)
        .saturating_mul(INITRD_ALIGN);
    above.max(INITRD_MIN_ADDR)
}

/// Copy a raw image of `size` bytes from `src` to guest address 0.
pub fn load_raw<R: ReadVolatile>(
    mem: &GuestMemory,
    src: &mut R,
    size: u64,
) -> Result<Loaded, IplError> {
    let ram = ram_size(mem);
    if size > ram {
        return Err(IplError::KernelTooBig { size, ram });
    }
    let len = usize::try_from(size).map_err(|_| IplError::KernelTooBig { size, ram })?;
    mem.read_exact_volatile_from(GuestAddress(0), src, len)
        .map_err(|e| IplError::Read(e.to_string()))?;
    Ok(Loaded {
        entry: IPL_PSW_ADDR,
        end: size,
    })
}

/// Copy `size` bytes of the initrd from `src` above an image ending at `end`; returns
/// its address.
pub fn load_initrd<R: ReadVolatile>(
    mem: &GuestMemory,
    src: &mut R,
    end: u64,
    size: u64,
) -> Result<u64, IplError> {
    let start = initrd_address(end);
    let ram = ram_size(mem);
    let too_big = IplError::InitrdTooBig { start, size, ram };
    if start.checked_add(size).is_none_or(|end| end > ram) {
        return Err(too_big);
    }
    let len = usize::try_from(size).map_err(|_| too_big)?;
    mem.read_exact_volatile_from(GuestAddress(start), src, len)
        .map_err(|e| IplError::Read(e.to_string()))?;
    Ok(start)
}

/// Fill the parameter area of a Linux image already in memory: the initrd (when there is
/// one) and the command line, checked against the room the kernel declares.
pub fn write_parmarea(
    mem: &GuestMemory,
    initrd: Option<(u64, u64)>,
    cmdline: &str,
) -> Result<(), IplError> {
    if cmdline.as_bytes().contains(&0) {
        return Err(IplError::CmdlineNul);
    }
    let mut declared = [0u8; 8];
    mem.read_slice(&mut declared, GuestAddress(MAX_CMDLINE_ADDR))
        .map_err(|e| IplError::Memory(e.to_string()))?;
    let max = match u64::from_be_bytes(declared) {
        0 => LEGACY_CMDLINE_SIZE,
        n => n,
    };
    let len = cmdline.len() as u64 + 1;
    if len > max {
        return Err(IplError::CmdlineTooLong { len, max });
    }
    let w = |addr: u64, v: u64| {
        mem.write_slice(&v.to_be_bytes(), GuestAddress(addr))
            .map_err(|e| IplError::Memory(e.to_string()))
    };
    if let Some((start, size)) = initrd {
        w(INITRD_START_ADDR, start)?;
        w(INITRD_SIZE_ADDR, size)?;
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_ADDR))
        .map_err(|e| IplError::Memory(e.to_string()))
}

fn ram_size(mem: &GuestMemory) -> u64 {
    mem.last_addr().0.saturating_add(1)
}
