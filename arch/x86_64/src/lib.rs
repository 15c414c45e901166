// SPDX-License-Identifier: Apache-2.0
//! The x86_64 backend.
//!
//! Portable pieces (memory map, GDT, page tables, MP table, ACPI tables, CPUID policy, the reset vector's code)
//! compile and are tested on every target; the KVM glue in [`kvm`] exists only on x86_64
//! hosts.
#![forbid(unsafe_code)]

pub mod acpi;
pub mod cpuid;
pub mod gdt;
pub mod layout;
pub mod mptable;
pub mod paging;
pub mod placement;
pub mod reset_vector;

#[cfg(target_arch = "x86_64")]
pub mod kvm;

#[cfg(target_arch = "x86_64")]
pub use kvm::KvmX86;
