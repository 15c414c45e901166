// SPDX-License-Identifier: Apache-2.0
//! Our own KVM layer for s390x (kvm-ioctls and kvm-bindings do not build there).
//!
//! [`bindings`] holds the UAPI structures and numbers (portable, layout-tested on every
//! target); [`ioctls`] the safe wrappers over `ioctl(2)`, which exist only on s390x hosts.

pub mod bindings;

#[cfg(target_arch = "s390x")]
pub mod ioctls;
