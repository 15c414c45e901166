// SPDX-License-Identifier: Apache-2.0
//! The one place that knows which architecture this VMM was built for.

use arch::Hypervisor;

/// The kernel command line when `--cmdline` is not given, for this host's architecture
/// (x86_64 and aarch64: `console=ttyS0 panic=1`; s390x: `console=ttysclp0 panic=1`).
pub const DEFAULT_CMDLINE: &str = <Host as Hypervisor>::DEFAULT_CMDLINE;

cfg_if::cfg_if! {
    if #[cfg(target_arch = "x86_64")] {
        /// The hypervisor backend for this host.
        pub type Host = arch_x86_64::KvmX86;
    } else if #[cfg(target_arch = "aarch64")] {
        /// The hypervisor backend for this host.
        pub type Host = arch_aarch64::KvmArm64;
    } else if #[cfg(target_arch = "s390x")] {
        /// The hypervisor backend for this host.
        pub type Host = arch_s390x::KvmS390;
    } else {
        /// No backend for this host architecture yet: every run fails saying so.
        pub type Host = arch::unsupported::Unsupported;
    }
}
