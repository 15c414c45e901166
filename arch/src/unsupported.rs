// SPDX-License-Identifier: Apache-2.0
//! The backend of a host architecture Polyvisor cannot run guests on yet. It compiles
//! everywhere so the workspace and its portable tests build for every target, and it
//! refuses at once, saying so, instead of pretending.

use std::sync::Arc;

use devices::InterruptLine;

use crate::{
    BootRequest, Error, GuestMemory, Hypervisor, MemoryLayout, Platform, Result, Vcpu, VcpuExit,
    VcpuKicker, Vm, VmConfig,
};

/// No backend for this host architecture yet.
pub struct Unsupported;

/// A VM or vCPU of [`Unsupported`]: cannot exist.
pub enum Never {}

impl Hypervisor for Unsupported {
    type Vm = Never;

    fn name(&self) -> &'static str {
        "none"
    }

    fn open() -> Result<Self> {
        Err(Error::Unsupported {
            arch: std::env::consts::ARCH,
            what: "Polyvisor has no backend for this host architecture yet".into(),
        })
    }

    fn max_vcpus(&self) -> u32 {
        0
    }

    fn create_vm(&self, _config: &VmConfig) -> Result<Never> {
        Self::open().map(|_| unreachable!("open never succeeds"))
    }
}

impl Vm for Never {
    type Vcpu = Never;

    fn memory(&self) -> &GuestMemory {
        match *self {}
    }
    fn layout(&self) -> &MemoryLayout {
        match *self {}
    }
    fn platform(&self) -> &Platform {
        match *self {}
    }
    fn interrupt_line(&self, _irq: u32) -> Result<Arc<dyn InterruptLine>> {
        match *self {}
    }
    fn load(&mut self, _request: &mut BootRequest) -> Result<()> {
        match *self {}
    }
    fn create_vcpus(&mut self) -> Result<Vec<Never>> {
        match *self {}
    }
}

impl Vcpu for Never {
    fn run(&mut self) -> Result<VcpuExit<'_>> {
        match *self {}
    }
    fn kicker(&self) -> Arc<dyn VcpuKicker> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_with_the_architecture_named() {
        let e = Unsupported::open().err().unwrap().to_string();
        assert!(e.contains(std::env::consts::ARCH), "{e}");
        assert!(e.contains("not supported yet"), "{e}");
    }
}
