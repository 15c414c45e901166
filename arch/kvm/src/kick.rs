// SPDX-License-Identifier: Apache-2.0
//! Kicking a kvm-ioctls vCPU out of the guest without racing `KVM_RUN`: the kick sets the
//! `immediate_exit` byte of the vCPU's `kvm_run` (KVM_CAP_IMMEDIATE_EXIT), so a `KVM_RUN`
//! entered after it returns `EINTR` at once; the VMM's signal interrupts one already in
//! the guest. The vCPU clears the byte when it reports the interruption.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use kvm_ioctls::VcpuFd;

/// Where a vCPU's `immediate_exit` byte is, while its `kvm_run` mapping exists.
struct ExitByte(Mutex<Option<*mut u8>>);

// SAFETY: the pointer is only dereferenced through `AtomicU8` while the lock is held and
// the mapping is alive (`RunFd::drop` takes it away under the lock before the unmap).
unsafe impl Send for ExitByte {}
// SAFETY: as above; every access goes through the mutex.
unsafe impl Sync for ExitByte {}

impl ExitByte {
    fn store(&self, value: u8) {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(byte) = *guard {
            // SAFETY: `byte` points into the vCPU's live kvm_run mapping (checked under the
            // lock, see `RunFd::drop`); the kernel reads it with READ_ONCE and every other
            // access from this process is atomic too; u8 needs no alignment.
            unsafe { AtomicU8::from_ptr(byte) }.store(value, Ordering::SeqCst);
        }
    }
}

/// A vCPU fd whose `immediate_exit` byte other threads can set ([`RunFd::kicker`]).
pub struct RunFd {
    fd: VcpuFd,
    exit: Arc<ExitByte>,
}

impl RunFd {
    pub fn new(mut fd: VcpuFd) -> Self {
        let run: *mut kvm_bindings::kvm_run = fd.get_kvm_run();
        // SAFETY: `run` points to the vCPU's kvm_run mapping, owned by `fd` until it drops;
        // only the field's address is taken here.
        let byte = unsafe { std::ptr::addr_of_mut!((*run).immediate_exit) };
        Self {
            fd,
            exit: Arc::new(ExitByte(Mutex::new(Some(byte)))),
        }
    }

    /// The handle that kicks this vCPU.
    pub fn kicker(&self) -> Arc<dyn arch::VcpuKicker> {
        Arc::new(Kicker(self.exit.clone()))
    }

    /// The fd to run, and the kick to forget once `KVM_RUN` has reported it (before the
    /// VMM looks at its requests).
    pub(crate) fn parts(&mut self) -> (&mut VcpuFd, Kick<'_>) {
        (&mut self.fd, Kick(&self.exit))
    }
}

impl Deref for RunFd {
    type Target = VcpuFd;
    fn deref(&self) -> &VcpuFd {
        &self.fd
    }
}

impl DerefMut for RunFd {
    fn deref_mut(&mut self) -> &mut VcpuFd {
        &mut self.fd
    }
}

impl Drop for RunFd {
    fn drop(&mut self) {
        // Before `fd` (and its mapping) goes: kickers still around do nothing from now on.
        *self.exit.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A kick seen by the vCPU thread itself.
pub(crate) struct Kick<'a>(&'a ExitByte);

impl Kick<'_> {
    pub(crate) fn clear(&self) {
        self.0.store(0);
    }
}

struct Kicker(Arc<ExitByte>);

impl arch::VcpuKicker for Kicker {
    fn kick(&self) {
        self.0.store(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vcpu() -> Option<RunFd> {
        let kvm = kvm_ioctls::Kvm::new().ok()?;
        let vm = kvm.create_vm().ok()?;
        Some(RunFd::new(vm.create_vcpu(0).ok()?))
    }

    #[test]
    fn a_kick_sets_immediate_exit_until_cleared_and_outlives_the_vcpu() {
        let Some(mut fd) = vcpu() else {
            eprintln!("skipped: no usable /dev/kvm");
            return;
        };
        let kicker = fd.kicker();
        assert_eq!(fd.get_kvm_run().immediate_exit, 0);
        kicker.kick();
        assert_eq!(fd.get_kvm_run().immediate_exit, 1);
        fd.parts().1.clear();
        assert_eq!(fd.get_kvm_run().immediate_exit, 0);
        drop(fd);
        kicker.kick(); // the mapping is gone: nothing happens
    }
}
