// SPDX-License-Identifier: Apache-2.0
//! The aarch64 backend.
//!
//! Portable pieces (memory map, device tree, arm64 `Image` loader, boot register values)
//! compile and are tested on every target; the KVM glue in [`kvm`] exists only on aarch64
//! hosts.
#![forbid(unsafe_code)]

pub mod fdt;
pub mod layout;
pub mod loader;
pub mod regs;

#[cfg(target_arch = "aarch64")]
pub mod kvm;

#[cfg(target_arch = "aarch64")]
pub use kvm::KvmArm64;
