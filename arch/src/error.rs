// SPDX-License-Identifier: Apache-2.0
//! Errors every backend reports in the same words.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{arch} guests are not supported yet: {what}")]
    Unsupported { arch: &'static str, what: String },
    #[error("cannot open {path}: {source}")]
    OpenHypervisor {
        path: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the hypervisor lacks {0}, which this backend needs")]
    MissingCapability(&'static str),
    #[error("cannot map {bytes} bytes of guest memory: {reason}")]
    GuestMemory { bytes: u64, reason: String },
    #[error("invalid VM configuration: {0}")]
    Config(String),
    /// The guest memory size cannot be given to this guest (the `--memory` flag's value).
    #[error("{0}")]
    Memory(String),
    /// The vCPU count cannot be given to this guest (the `--cpus` flag's value).
    #[error("{0}")]
    Vcpus(String),
    /// The in-kernel PIT cannot be given to this guest (the `--pit` flag).
    #[error("{0}")]
    Pit(String),
    #[error("kernel: {0}")]
    Kernel(String),
    #[error("initrd: {0}")]
    Initrd(String),
    #[error("kernel command line: {0}")]
    Cmdline(String),
    #[error("writing {what} into guest memory: {reason}")]
    GuestWrite { what: &'static str, reason: String },
    #[error("{op} failed: {source}")]
    Hypervisor {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("vCPU {vcpu}: {reason}")]
    VcpuFault { vcpu: u32, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wrap an OS error from a hypervisor call.
    pub fn hv(op: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Hypervisor {
            op,
            source: source.into(),
        }
    }
}
