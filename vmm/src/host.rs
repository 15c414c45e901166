//! The one place that knows which architecture this VMM was built for.

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
