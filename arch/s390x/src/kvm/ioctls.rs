// SPDX-License-Identifier: Apache-2.0
//! Safe wrappers over the KVM ioctls this backend uses, on an s390x host.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::bindings::*;

/// `ioctl(fd, request, arg)` where the kernel takes `arg` by value; returns the result.
fn ioctl_val(fd: RawFd, request: u64, arg: u64) -> io::Result<i32> {
    // SAFETY: the requests passed here take an integer argument (or none); the kernel does
    // not dereference it, so no memory of ours can be touched.
    let r = unsafe { libc::ioctl(fd, request as libc::c_ulong, arg as libc::c_ulong) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `ioctl(fd, request, &arg)` where the kernel reads `*arg` (an `_IOW` request whose size
/// is `size_of::<T>()`).
fn ioctl_write<T>(fd: RawFd, request: u64, arg: &T) -> io::Result<i32> {
    // SAFETY: `arg` is a live, initialised `T`, and every caller pairs `T` with the request
    // whose encoded size is `size_of::<T>()`: the kernel reads exactly that object.
    let r = unsafe { libc::ioctl(fd, request as libc::c_ulong, arg as *const T) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `ioctl(fd, request, &mut arg)` where the kernel writes `*arg` (an `_IOR` request).
fn ioctl_read<T>(fd: RawFd, request: u64, arg: &mut T) -> io::Result<i32> {
    // SAFETY: `arg` is a live, exclusively borrowed `T` matching the request's encoded size;
    // the kernel writes at most that object, and every `T` used here is plain old data.
    let r = unsafe { libc::ioctl(fd, request as libc::c_ulong, arg as *mut T) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Wrap a new file descriptor returned by an ioctl.
fn owned_fd(fd: i32) -> File {
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that nothing else
    // owns; the File takes sole ownership and closes it.
    unsafe { File::from_raw_fd(fd) }
}

/// The buffer of a [`VcpuFd::logical_access`].
pub enum LogicalBuf<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

/// An open `/dev/kvm`.
pub struct Kvm {
    fd: File,
}

impl Kvm {
    pub fn open() -> io::Result<Self> {
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/kvm")?;
        Ok(Self { fd })
    }

    pub fn api_version(&self) -> io::Result<i32> {
        ioctl_val(self.fd.as_raw_fd(), KVM_GET_API_VERSION, 0)
    }

    /// `KVM_CHECK_EXTENSION`: 0 when absent, otherwise the capability's value.
    pub fn check_extension(&self, cap: u32) -> i32 {
        ioctl_val(self.fd.as_raw_fd(), KVM_CHECK_EXTENSION, u64::from(cap)).unwrap_or(0)
    }

    pub fn vcpu_mmap_size(&self) -> io::Result<usize> {
        ioctl_val(self.fd.as_raw_fd(), KVM_GET_VCPU_MMAP_SIZE, 0).map(|n| n as usize)
    }

    /// `KVM_CREATE_VM` with machine type 0 (not user-controlled).
    pub fn create_vm(&self) -> io::Result<VmFd> {
        let fd = ioctl_val(self.fd.as_raw_fd(), KVM_CREATE_VM, 0)?;
        Ok(VmFd { fd: owned_fd(fd) })
    }
}

/// A VM file descriptor.
pub struct VmFd {
    fd: File,
}

impl VmFd {
    /// `KVM_CHECK_EXTENSION` on the VM (what this VM supports).
    pub fn check_extension(&self, cap: u32) -> i32 {
        ioctl_val(self.fd.as_raw_fd(), KVM_CHECK_EXTENSION, u64::from(cap)).unwrap_or(0)
    }

    /// `KVM_ENABLE_CAP` without arguments.
    pub fn enable_cap(&self, cap: u32) -> io::Result<()> {
        ioctl_write(self.fd.as_raw_fd(), KVM_ENABLE_CAP, &KvmEnableCap::new(cap)).map(|_| ())
    }

    /// `KVM_SET_USER_MEMORY_REGION`.
    ///
    /// # Safety
    /// `region.userspace_addr .. + memory_size` must be a mapping that stays valid (and is not
    /// handed out as anything but guest memory) for as long as the slot exists.
    pub unsafe fn set_user_memory_region(
        &self,
        region: &KvmUserspaceMemoryRegion,
    ) -> io::Result<()> {
        ioctl_write(self.fd.as_raw_fd(), KVM_SET_USER_MEMORY_REGION, region).map(|_| ())
    }

    /// `KVM_S390_INTERRUPT` on the VM: inject a floating interrupt.
    pub fn inject_floating(&self, irq: &KvmS390Interrupt) -> io::Result<()> {
        ioctl_write(self.fd.as_raw_fd(), KVM_S390_INTERRUPT, irq).map(|_| ())
    }

    /// `KVM_IOEVENTFD` for a virtio-ccw queue: `event` is signalled, without a userspace
    /// exit, when the guest notifies queue `queue` of subchannel `schid` (the 32-bit
    /// subchannel identifier as the guest puts it in GR2) with DIAG 0x500.
    pub fn register_ccw_ioeventfd(
        &self,
        event: &impl AsRawFd,
        schid: u32,
        queue: u16,
    ) -> io::Result<()> {
        self.ccw_ioeventfd(event, schid, queue, 0)
    }

    /// Undo [`VmFd::register_ccw_ioeventfd`] (the same arguments, `KVM_IOEVENTFD_FLAG_DEASSIGN`).
    pub fn unregister_ccw_ioeventfd(
        &self,
        event: &impl AsRawFd,
        schid: u32,
        queue: u16,
    ) -> io::Result<()> {
        self.ccw_ioeventfd(event, schid, queue, KVM_IOEVENTFD_FLAG_DEASSIGN)
    }

    fn ccw_ioeventfd(
        &self,
        event: &impl AsRawFd,
        schid: u32,
        queue: u16,
        extra: u32,
    ) -> io::Result<()> {
        let args = KvmIoeventfd {
            datamatch: u64::from(queue),
            addr: u64::from(schid),
            // The kernel compares GR3, a doubleword, with the datamatch.
            len: 8,
            fd: event.as_raw_fd(),
            flags: KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY | KVM_IOEVENTFD_FLAG_DATAMATCH | extra,
            pad: [0; 36],
        };
        ioctl_write(self.fd.as_raw_fd(), KVM_IOEVENTFD, &args).map(|_| ())
    }

    /// `KVM_CREATE_IRQCHIP`: on s390x (after `KVM_CAP_S390_IRQCHIP` is enabled) it sets up
    /// an empty GSI routing table.
    pub fn create_irqchip(&self) -> io::Result<()> {
        ioctl_val(self.fd.as_raw_fd(), KVM_CREATE_IRQCHIP, 0).map(|_| ())
    }

    /// `KVM_IRQFD`: a write to `event` raises GSI `gsi` (whatever its route says).
    pub fn register_irqfd(&self, event: &impl AsRawFd, gsi: u32) -> io::Result<()> {
        self.irqfd(event, gsi, 0)
    }

    /// Undo [`VmFd::register_irqfd`] (`KVM_IRQFD_FLAG_DEASSIGN`).
    pub fn unregister_irqfd(&self, event: &impl AsRawFd, gsi: u32) -> io::Result<()> {
        self.irqfd(event, gsi, KVM_IRQFD_FLAG_DEASSIGN)
    }

    fn irqfd(&self, event: &impl AsRawFd, gsi: u32, flags: u32) -> io::Result<()> {
        let args = KvmIrqfd {
            fd: event.as_raw_fd() as u32,
            gsi,
            flags,
            resamplefd: 0,
            pad: [0; 16],
        };
        ioctl_write(self.fd.as_raw_fd(), KVM_IRQFD, &args).map(|_| ())
    }

    /// `KVM_SET_GSI_ROUTING`: replace the whole routing table with `entries`.
    pub fn set_gsi_routing(&self, entries: &[KvmIrqRoutingEntry]) -> io::Result<()> {
        /// The header followed by the entries, as the kernel reads them.
        #[repr(C)]
        struct Table {
            header: KvmIrqRoutingHeader,
            entries: [KvmIrqRoutingEntry; MAX_ROUTES],
        }
        const MAX_ROUTES: usize = 256;
        if entries.len() > MAX_ROUTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} routes, at most {MAX_ROUTES}", entries.len()),
            ));
        }
        let mut table = Box::new(Table {
            header: KvmIrqRoutingHeader {
                nr: entries.len() as u32,
                flags: 0,
            },
            entries: [KvmIrqRoutingEntry::default(); MAX_ROUTES],
        });
        table.entries[..entries.len()].copy_from_slice(entries);
        // SAFETY: KVM_SET_GSI_ROUTING reads the header and then `nr` entries right after
        // it; `table` is a live, initialised header followed by MAX_ROUTES >= nr entries
        // with the kernel's layout (checked in the bindings' tests), and is not written.
        let r = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                KVM_SET_GSI_ROUTING as libc::c_ulong,
                &*table as *const Table,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// `KVM_CREATE_DEVICE` of `type_`: the device's file descriptor.
    pub fn create_device(&self, type_: u32) -> io::Result<DeviceFd> {
        let mut args = KvmCreateDevice {
            type_,
            fd: 0,
            flags: 0,
        };
        ioctl_read(self.fd.as_raw_fd(), KVM_CREATE_DEVICE, &mut args)?;
        Ok(DeviceFd {
            fd: owned_fd(args.fd as i32),
        })
    }

    /// The in-kernel interrupt routing adapter interrupts need: `KVM_CAP_S390_IRQCHIP`
    /// enabled, `KVM_CREATE_IRQCHIP`, and the FLIC with one I/O adapter per ISC (adapter id
    /// = ISC, not maskable, indicators swapped). Errors name the step that failed.
    pub fn create_adapter_flic(&self) -> Result<DeviceFd, String> {
        self.enable_cap(KVM_CAP_S390_IRQCHIP)
            .map_err(|e| format!("KVM_ENABLE_CAP(KVM_CAP_S390_IRQCHIP): {e}"))?;
        self.create_irqchip()
            .map_err(|e| format!("KVM_CREATE_IRQCHIP: {e}"))?;
        let flic = self
            .create_device(KVM_DEV_TYPE_FLIC)
            .map_err(|e| format!("KVM_CREATE_DEVICE(FLIC): {e}"))?;
        for isc in 0..8u8 {
            let adapter = KvmS390IoAdapter {
                id: u32::from(isc),
                isc,
                maskable: 0,
                swap: 1,
                flags: 0,
            };
            flic.register_adapter(&adapter)
                .map_err(|e| format!("KVM_DEV_FLIC_ADAPTER_REGISTER (ISC {isc}): {e}"))?;
        }
        Ok(flic)
    }

    /// `KVM_CREATE_VCPU` and map its `kvm_run` (`mmap_size` from the system fd).
    pub fn create_vcpu(&self, id: u32, mmap_size: usize) -> io::Result<VcpuFd> {
        if mmap_size < std::mem::size_of::<KvmRun>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("kvm_run mapping of {mmap_size} bytes is too small"),
            ));
        }
        let fd = owned_fd(ioctl_val(
            self.fd.as_raw_fd(),
            KVM_CREATE_VCPU,
            u64::from(id),
        )?);
        // SAFETY: a shared mapping of the vCPU fd at offset 0, as KVM documents for kvm_run;
        // we check the result before using it and unmap it in Drop.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mmap_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let run = NonNull::new(addr.cast::<KvmRun>()).ok_or_else(io::Error::last_os_error)?;
        // SAFETY: only the field's address is taken, inside the mapping just checked.
        let byte = unsafe { std::ptr::addr_of_mut!((*run.as_ptr()).immediate_exit) };
        let immediate_exit = Arc::new(ImmediateExit(Mutex::new(Some(byte))));
        Ok(VcpuFd {
            fd,
            run,
            mmap_size,
            immediate_exit,
        })
    }
}

/// A vCPU file descriptor with its mapped `kvm_run`.
pub struct VcpuFd {
    fd: File,
    run: NonNull<KvmRun>,
    mmap_size: usize,
    immediate_exit: Arc<ImmediateExit>,
}

/// The `immediate_exit` byte of a vCPU's `kvm_run` (KVM_CAP_IMMEDIATE_EXIT), settable from
/// other threads while the mapping exists: a `KVM_RUN` entered while it is 1 returns
/// `EINTR` at once. After the vCPU is dropped, setting it does nothing.
pub struct ImmediateExit(Mutex<Option<*mut u8>>);

// SAFETY: the pointer is only dereferenced (atomically) under the lock while the mapping
// lives; `VcpuFd::drop` takes it away under the lock before unmapping.
unsafe impl Send for ImmediateExit {}
// SAFETY: as above; every access goes through the mutex.
unsafe impl Sync for ImmediateExit {}

impl ImmediateExit {
    pub fn set(&self, value: u8) {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(byte) = *guard {
            // SAFETY: `byte` lies in the live kvm_run mapping (checked under the lock); the
            // kernel reads it with READ_ONCE and this process only touches it atomically.
            unsafe { AtomicU8::from_ptr(byte) }.store(value, Ordering::SeqCst);
        }
    }
}

// SAFETY: the kvm_run mapping belongs to this vCPU alone; it is only touched through
// `&self`/`&mut self` of the thread that owns the VcpuFd, and the kernel writes it only
// during KVM_RUN, which that same thread issues.
unsafe impl Send for VcpuFd {}

impl VcpuFd {
    /// The shared run structure.
    pub fn run_struct(&self) -> &KvmRun {
        // SAFETY: `run` points to a live mapping of at least size_of::<KvmRun>() bytes
        // (checked at creation), valid until Drop; the kernel only writes it inside KVM_RUN,
        // which needs `&mut self`, so no write overlaps this shared borrow.
        unsafe { self.run.as_ref() }
    }

    /// The shared run structure, for setting registers before the next run.
    pub fn run_struct_mut(&mut self) -> &mut KvmRun {
        // SAFETY: as in `run_struct`, and `&mut self` makes this borrow exclusive.
        unsafe { self.run.as_mut() }
    }

    /// The `immediate_exit` byte, for other threads to set.
    pub fn immediate_exit(&self) -> Arc<ImmediateExit> {
        self.immediate_exit.clone()
    }

    /// Forget a kick once the vCPU has reported it.
    pub fn clear_immediate_exit(&self) {
        self.immediate_exit.set(0);
    }

    /// `KVM_RUN`. `Err` with `EINTR` when a signal or `immediate_exit` cut it short.
    pub fn run(&mut self) -> io::Result<()> {
        ioctl_val(self.fd.as_raw_fd(), KVM_RUN, 0).map(|_| ())
    }

    pub fn initial_reset(&self) -> io::Result<()> {
        ioctl_val(self.fd.as_raw_fd(), KVM_S390_INITIAL_RESET, 0).map(|_| ())
    }

    /// `KVM_ENABLE_CAP` on the vCPU without arguments (KVM_CAP_S390_CSS_SUPPORT is a vCPU
    /// capability that switches the whole VM).
    pub fn enable_cap(&self, cap: u32) -> io::Result<()> {
        ioctl_write(self.fd.as_raw_fd(), KVM_ENABLE_CAP, &KvmEnableCap::new(cap)).map(|_| ())
    }

    /// `KVM_S390_NORMAL_RESET` (the CPU reset of SIGP; needs KVM_CAP_S390_VCPU_RESETS).
    pub fn normal_reset(&self) -> io::Result<()> {
        ioctl_val(self.fd.as_raw_fd(), KVM_S390_NORMAL_RESET, 0).map(|_| ())
    }

    /// `KVM_S390_MEM_OP` on guest logical address `gaddr` (through access register `ar`),
    /// reading into or writing from `buf`; access exceptions are made pending for the
    /// vCPU. `Ok(0)`: done; `Ok(code)`: an access exception with that program code.
    pub fn logical_access(&self, gaddr: u64, ar: u8, buf: LogicalBuf<'_>) -> io::Result<i32> {
        let (op, ptr, len) = match buf {
            LogicalBuf::Read(b) => (KVM_S390_MEMOP_LOGICAL_READ, b.as_mut_ptr(), b.len()),
            LogicalBuf::Write(b) => (KVM_S390_MEMOP_LOGICAL_WRITE, b.as_ptr() as *mut u8, b.len()),
        };
        let mop = KvmS390MemOp {
            gaddr,
            flags: KVM_S390_MEMOP_F_INJECT_EXCEPTION,
            size: len as u32,
            op,
            buf: ptr as u64,
            ar,
            ..Default::default()
        };
        // KVM_S390_MEM_OP is _IOW: the kernel reads `mop`, then reads or writes `size` bytes
        // at `buf`, which is the live buffer borrowed in `buf` (mutably for reads).
        ioctl_write(self.fd.as_raw_fd(), KVM_S390_MEM_OP, &mop)
    }

    pub fn set_initial_psw(&self, psw: &KvmS390Psw) -> io::Result<()> {
        ioctl_write(self.fd.as_raw_fd(), KVM_S390_SET_INITIAL_PSW, psw).map(|_| ())
    }

    /// `KVM_S390_IRQ`: inject a local interrupt (allowed from any thread on s390).
    pub fn inject(&self, irq: &KvmS390Irq) -> io::Result<()> {
        ioctl_write(self.fd.as_raw_fd(), KVM_S390_IRQ, irq).map(|_| ())
    }

    /// `KVM_S390_INTERRUPT` on the vCPU (legacy local injection).
    pub fn inject_legacy(&self, irq: &KvmS390Interrupt) -> io::Result<()> {
        ioctl_write(self.fd.as_raw_fd(), KVM_S390_INTERRUPT, irq).map(|_| ())
    }

    pub fn store_status(&self, addr: u64) -> io::Result<()> {
        ioctl_val(self.fd.as_raw_fd(), KVM_S390_STORE_STATUS, addr).map(|_| ())
    }

    pub fn set_mp_state(&self, state: u32) -> io::Result<()> {
        let s = KvmMpState { mp_state: state };
        ioctl_write(self.fd.as_raw_fd(), KVM_SET_MP_STATE, &s).map(|_| ())
    }

    pub fn get_mp_state(&self) -> io::Result<u32> {
        let mut s = KvmMpState::default();
        ioctl_read(self.fd.as_raw_fd(), KVM_GET_MP_STATE, &mut s)?;
        Ok(s.mp_state)
    }

    pub fn get_regs(&self) -> io::Result<KvmRegs> {
        let mut r = KvmRegs::default();
        ioctl_read(self.fd.as_raw_fd(), KVM_GET_REGS, &mut r)?;
        Ok(r)
    }

    pub fn set_regs(&self, regs: &KvmRegs) -> io::Result<()> {
        ioctl_write(self.fd.as_raw_fd(), KVM_SET_REGS, regs).map(|_| ())
    }

    pub fn get_sregs(&self) -> io::Result<KvmSregs> {
        let mut r = KvmSregs::default();
        ioctl_read(self.fd.as_raw_fd(), KVM_GET_SREGS, &mut r)?;
        Ok(r)
    }

    pub fn set_sregs(&self, sregs: &KvmSregs) -> io::Result<()> {
        ioctl_write(self.fd.as_raw_fd(), KVM_SET_SREGS, sregs).map(|_| ())
    }

    /// `KVM_GET_ONE_REG` of a 64-bit register (`KVM_REG_SIZE_U64` ids only).
    pub fn get_one_reg(&self, id: u64) -> io::Result<u64> {
        let mut value: u64 = 0;
        let reg = KvmOneReg {
            id,
            addr: &mut value as *mut u64 as u64,
        };
        // KVM_GET_ONE_REG is _IOW: the kernel reads `reg`, then writes through `reg.addr`,
        // which points at `value`, live for this call and 8 bytes wide.
        ioctl_write(self.fd.as_raw_fd(), KVM_GET_ONE_REG, &reg)?;
        Ok(value)
    }

    /// `KVM_SET_ONE_REG` of a 64-bit register (`KVM_REG_SIZE_U64` ids only).
    pub fn set_one_reg(&self, id: u64, value: u64) -> io::Result<()> {
        let reg = KvmOneReg {
            id,
            addr: &value as *const u64 as u64,
        };
        ioctl_write(self.fd.as_raw_fd(), KVM_SET_ONE_REG, &reg).map(|_| ())
    }
}

impl Drop for VcpuFd {
    fn drop(&mut self) {
        // First: kickers still around must not write into the mapping once it is gone.
        *self
            .immediate_exit
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        // SAFETY: unmapping the kvm_run mapping created in `create_vcpu` with this size; no
        // reference into it outlives `self`.
        unsafe {
            libc::munmap(self.run.as_ptr().cast(), self.mmap_size);
        }
    }
}

/// A second handle on a vCPU for what other threads may do to it: interrupt injection is an
/// asynchronous vCPU ioctl on s390 (allowed while the owner thread sits in `KVM_RUN`).
pub struct VcpuInjector {
    fd: File,
}

impl VcpuInjector {
    /// `KVM_S390_IRQ`.
    pub fn inject(&self, irq: &KvmS390Irq) -> io::Result<()> {
        ioctl_write(self.fd.as_raw_fd(), KVM_S390_IRQ, irq).map(|_| ())
    }
}

impl VcpuFd {
    /// A handle other threads may inject interrupts through.
    pub fn injector(&self) -> io::Result<VcpuInjector> {
        Ok(VcpuInjector {
            fd: self.fd.try_clone()?,
        })
    }
}

/// A KVM device file descriptor (`KVM_CREATE_DEVICE`).
pub struct DeviceFd {
    fd: File,
}

impl DeviceFd {
    /// `KVM_SET_DEVICE_ATTR` `KVM_DEV_FLIC_ADAPTER_REGISTER` on a FLIC: register an I/O
    /// adapter that adapter routes can name.
    pub fn register_adapter(&self, adapter: &KvmS390IoAdapter) -> io::Result<()> {
        let attr = KvmDeviceAttr {
            flags: 0,
            group: KVM_DEV_FLIC_ADAPTER_REGISTER,
            attr: 0,
            addr: adapter as *const KvmS390IoAdapter as u64,
        };
        // SAFETY: the kernel reads `attr`, then `size_of::<kvm_s390_io_adapter>()` bytes
        // through `attr.addr`, which points to `adapter`, a live KvmS390IoAdapter with that
        // layout (checked in the bindings' tests); nothing is written.
        let r = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                KVM_SET_DEVICE_ATTR as libc::c_ulong,
                &attr as *const KvmDeviceAttr,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}
