// SPDX-License-Identifier: Apache-2.0
//! The s390x backend.
//!
//! Portable pieces (the KVM UAPI structures in [`kvm::bindings`], the IPL layout, SCLP,
//! SIE-intercept decoding, EBCDIC) compile and are tested on every target, big-endian under
//! qemu-s390x included; the KVM glue ([`kvm::ioctls`] and the backend) exists only on s390x
//! hosts. kvm-ioctls does not build for s390x, hence our own ioctl layer in [`kvm`].

pub mod css;
pub mod ebcdic;
pub mod intercept;
pub mod ipl;
pub mod kvm;
pub mod log_limit;
pub mod pgste;
pub mod sclp;
pub mod virtio_ccw;

#[cfg(target_arch = "s390x")]
mod backend;

#[cfg(target_arch = "s390x")]
pub use backend::{KvmS390, KvmS390Vcpu, KvmS390Vm};

/// Guest memory as every backend maps it.
pub use arch::GuestMemory;
