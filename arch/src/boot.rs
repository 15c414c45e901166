// SPDX-License-Identifier: Apache-2.0
//! What to boot: the request the VMM hands to a backend.

use std::fs::File;
use std::path::PathBuf;

/// Kernel image formats, as recognised from the file's first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// x86 bzImage (boot protocol header "HdrS" at 0x202).
    BzImage,
    /// ELF64 (`vmlinux`, or a PVH-capable ELF).
    Elf64,
    /// arm64 `Image` ("ARM\x64" at 0x38).
    Arm64Image,
    /// gzip-compressed arm64 `Image.gz` (Debian 12's arm64 `vmlinuz` is an uncompressed
    /// `Image`, recognised as [`KernelFormat::Arm64Image`]).
    Gzip,
    /// s390x image (an IPL-able kernel with its entry at 0x10000).
    S390Image,
    /// No format recognised: a raw image, which only a backend that boots raw images
    /// ([`crate::Hypervisor::RAW_KERNEL_IMAGES`], s390x) takes.
    Raw,
}

/// An open kernel image.
#[derive(Debug)]
pub struct KernelFile {
    pub path: PathBuf,
    pub file: File,
    pub size: u64,
    pub format: KernelFormat,
}

/// An open initial ramdisk.
#[derive(Debug)]
pub struct InitrdFile {
    pub path: PathBuf,
    pub file: File,
    pub size: u64,
}

/// Everything a backend needs to place the guest's boot payload.
#[derive(Debug)]
pub struct BootRequest {
    pub kernel: KernelFile,
    pub initrd: Option<InitrdFile>,
    /// The kernel command line, without the terminating NUL.
    pub cmdline: String,
}
