// SPDX-License-Identifier: Apache-2.0
//! The s390x backend.
//!
//! Portable pieces (the KVM UAPI structures in [`kvm::bindings`], the IPL layout,
//! SIE-intercept and I/O-instruction decoding) compile and are tested on every target,
//! big-endian under qemu-s390x included; the KVM glue ([`kvm::ioctls`] and the backend)
//! exists only on s390x hosts. kvm-ioctls does not build for s390x, hence our own ioctl
//! layer in [`kvm`]. The devices the backend serves (the channel subsystem, virtio-ccw, the
//! SCLP) live in the `devices` crate: `devices::css`, `devices::virtio::ccw`,
//! `devices::sclp`.

pub mod adapter_route;
pub mod cpu_orders;
pub mod intercept;
pub mod ipl;
pub mod kvm;
pub mod machine_check;
pub mod pgste;

#[cfg(target_arch = "s390x")]
mod backend;

#[cfg(target_arch = "s390x")]
pub use backend::{KvmS390, KvmS390Vcpu, KvmS390Vm};

/// Guest memory as every backend maps it.
pub use arch::GuestMemory;
