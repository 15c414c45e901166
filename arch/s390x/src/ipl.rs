//! The IPL layout of a Linux s390x image: kernel at absolute 0, entry at 0x10000 in 64-bit
//! mode, and the parameter area the kernel reads its initrd and command line from.
//!
//! Parameter area (Linux `arch/s390/include/asm/setup.h`, `struct parmarea` at 0x10400):
//! initrd start and size as big-endian u64 at 0x10408 / 0x10410, the largest command line
//! the kernel accepts (including its NUL) as a u64 at 0x10430 (0 in kernels that predate it:
//! then 896 bytes), the NUL-terminated command line at 0x10480.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _, ReadVolatile};

use crate::GuestMemory;

/// The PSW a Linux image starts with: EA+BA (64-bit addressing), everything else off.
pub const IPL_PSW_MASK: u64 = 0x0000_0001_8000_0000;
/// Where a Linux image's 64-bit entry point is.
pub const IPL_PSW_ADDR: u64 = 0x10000;

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

/// Why a boot payload does not fit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IplError {
    #[error("the image ({size} bytes) does not fit in {ram} bytes of guest memory")]
    KernelTooBig { size: u64, ram: u64 },
    #[error("the image ({size} bytes) is too small to hold the IPL parameter area at 0x10400")]
    KernelTooSmall { size: u64 },
    #[error("the initrd ({size} bytes at {start:#x}) does not fit in {ram} bytes of guest memory")]
    InitrdTooBig { start: u64, size: u64, ram: u64 },
    #[error("is {len} bytes; this kernel accepts at most {max} (including the final NUL)")]
    CmdlineTooLong { len: u64, max: u64 },
    #[error("contains a NUL byte")]
    CmdlineNul,
    #[error("guest memory: {0}")]
    Memory(String),
}

/// Where the initrd of an image of `kernel_size` bytes goes.
pub fn initrd_address(kernel_size: u64) -> u64 {
    let above = (kernel_size + INITRD_ALIGN).div_ceil(INITRD_ALIGN) * INITRD_ALIGN;
    above.max(INITRD_MIN_ADDR)
}

/// Copy `size` bytes of the image from `src` to guest address 0.
pub fn load_kernel<R: ReadVolatile>(
    mem: &GuestMemory,
    src: &mut R,
    size: u64,
) -> Result<(), IplError> {
    let ram = ram_size(mem);
    if size > ram {
        return Err(IplError::KernelTooBig { size, ram });
    }
    if size < CMDLINE_ADDR {
        return Err(IplError::KernelTooSmall { size });
    }
    mem.read_exact_volatile_from(GuestAddress(0), src, size as usize)
        .map_err(|e| IplError::Memory(e.to_string()))
}

/// Copy `size` bytes of the initrd from `src` above the image; returns its address.
pub fn load_initrd<R: ReadVolatile>(
    mem: &GuestMemory,
    src: &mut R,
    kernel_size: u64,
    size: u64,
) -> Result<u64, IplError> {
    let start = initrd_address(kernel_size);
    let ram = ram_size(mem);
    if start.checked_add(size).is_none_or(|end| end > ram) {
        return Err(IplError::InitrdTooBig { start, size, ram });
    }
    mem.read_exact_volatile_from(GuestAddress(start), src, size as usize)
        .map_err(|e| IplError::Memory(e.to_string()))?;
    Ok(start)
}

/// Fill the parameter area of an image already at 0: the initrd (when there is one) and
/// the command line, checked against the room the kernel declares.
pub fn write_parmarea(
    mem: &GuestMemory,
    initrd: Option<(u64, u64)>,
    cmdline: &str,
) -> Result<(), IplError> {
    let w = |addr: u64, v: u64| {
        mem.write_slice(&v.to_be_bytes(), GuestAddress(addr))
            .map_err(|e| IplError::Memory(e.to_string()))
    };
    if let Some((start, size)) = initrd {
        w(INITRD_START_ADDR, start)?;
        w(INITRD_SIZE_ADDR, size)?;
    }
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
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_ADDR))
        .map_err(|e| IplError::Memory(e.to_string()))
}

fn ram_size(mem: &GuestMemory) -> u64 {
    mem.last_addr().0 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(mib: usize) -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), mib << 20)]).unwrap()
    }

    fn read(mem: &GuestMemory, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    fn image(size: usize, max_cmdline: u64) -> Vec<u8> {
        let mut img = vec![0xaa; size];
        img[MAX_CMDLINE_ADDR as usize..][..8].copy_from_slice(&max_cmdline.to_be_bytes());
        img
    }

    #[test]
    fn initrd_goes_above_the_image_1mib_aligned_and_at_least_at_8mib() {
        assert_eq!(initrd_address(0x20000), 8 << 20);
        assert_eq!(initrd_address(7 << 20), 8 << 20);
        assert_eq!(initrd_address((7 << 20) + 1), 9 << 20);
        assert_eq!(initrd_address(20 << 20), 21 << 20);
    }

    #[test]
    fn kernel_initrd_and_parmarea_bytes() {
        let mem = memory(32);
        let img = image(0x20000, 0);
        load_kernel(&mem, &mut img.as_slice(), img.len() as u64).unwrap();
        let rd = vec![0x5a; 4096];
        let at = load_initrd(&mem, &mut rd.as_slice(), img.len() as u64, 4096).unwrap();
        assert_eq!(at, 0x80_0000);
        write_parmarea(&mem, Some((at, 4096)), "console=ttysclp0").unwrap();
        assert_eq!(
            read(&mem, 0x10408, 16),
            [0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]
        );
        assert_eq!(read(&mem, 0x10480, 17), b"console=ttysclp0\0");
        assert_eq!(read(&mem, 0x80_0000, 2), [0x5a, 0x5a]);
        // The image around the parameters is untouched.
        assert_eq!(read(&mem, 0x10400, 8), [0xaa; 8]);
        assert_eq!(read(&mem, 0x10418, 8), [0xaa; 8]);
    }

    #[test]
    fn cmdline_limit_is_the_kernels_or_896() {
        let mem = memory(16);
        let img = image(0x20000, 0);
        load_kernel(&mem, &mut img.as_slice(), img.len() as u64).unwrap();
        write_parmarea(&mem, None, &"x".repeat(895)).unwrap();
        assert_eq!(
            write_parmarea(&mem, None, &"x".repeat(896)),
            Err(IplError::CmdlineTooLong { len: 897, max: 896 })
        );
        let img = image(0x20000, 4096);
        load_kernel(&mem, &mut img.as_slice(), img.len() as u64).unwrap();
        write_parmarea(&mem, None, &"x".repeat(4000)).unwrap();
        assert_eq!(read(&mem, 0x10480 + 4000, 1), [0]);
        assert_eq!(
            write_parmarea(&mem, None, &"y".repeat(4096)),
            Err(IplError::CmdlineTooLong {
                len: 4097,
                max: 4096
            })
        );
        assert_eq!(
            write_parmarea(&mem, None, "a\0b"),
            Err(IplError::CmdlineNul)
        );
    }

    #[test]
    fn payloads_that_do_not_fit_are_refused() {
        let mem = memory(16);
        let img = vec![0u8; 0x100];
        assert_eq!(
            load_kernel(&mem, &mut img.as_slice(), 0x100),
            Err(IplError::KernelTooSmall { size: 0x100 })
        );
        assert!(matches!(
            load_kernel(&mem, &mut [0u8; 0].as_slice(), 17 << 20),
            Err(IplError::KernelTooBig { .. })
        ));
        assert!(matches!(
            load_initrd(&mem, &mut [0u8; 0].as_slice(), 0x20000, 9 << 20),
            Err(IplError::InitrdTooBig { .. })
        ));
        assert!(matches!(
            load_initrd(&mem, &mut [0u8; 0].as_slice(), 0x20000, u64::MAX),
            Err(IplError::InitrdTooBig { .. })
        ));
    }
}
