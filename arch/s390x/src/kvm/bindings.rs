// SPDX-License-Identifier: Apache-2.0
//! KVM UAPI definitions for s390x, written from the kernel headers of Linux 6.1
//! (`include/uapi/linux/kvm.h`, `arch/s390/include/uapi/asm/kvm.h`, as shipped in Debian's
//! `linux-libc-dev-s390x-cross` 6.1.4). Only what this backend uses is defined. The layouts
//! are those of s390x (64-bit, big-endian, natural alignment); the offset tests below were
//! checked against a C program compiled from those headers and run under qemu-s390x.
//!
//! These are plain `repr(C)` structures: they compile on every target and their layout tests
//! run everywhere, but only an s390x host passes them to the kernel.

/// `KVMIO`, the ioctl type of every KVM request.
pub const KVMIO: u32 = 0xae;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const fn ioc(dir: u32, nr: u32, size: usize) -> u64 {
    ((dir << IOC_DIRSHIFT)
        | (KVMIO << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)) as u64
}
const fn io(nr: u32) -> u64 {
    ioc(IOC_NONE, nr, 0)
}
const fn iow(nr: u32, size: usize) -> u64 {
    ioc(IOC_WRITE, nr, size)
}
const fn ior(nr: u32, size: usize) -> u64 {
    ioc(IOC_READ, nr, size)
}
const fn iowr(nr: u32, size: usize) -> u64 {
    ioc(IOC_READ | IOC_WRITE, nr, size)
}

// System ioctls.
pub const KVM_GET_API_VERSION: u64 = io(0x00);
pub const KVM_CREATE_VM: u64 = io(0x01);
pub const KVM_CHECK_EXTENSION: u64 = io(0x03);
pub const KVM_GET_VCPU_MMAP_SIZE: u64 = io(0x04);
// VM ioctls.
pub const KVM_CREATE_VCPU: u64 = io(0x41);
pub const KVM_SET_USER_MEMORY_REGION: u64 =
    iow(0x46, std::mem::size_of::<KvmUserspaceMemoryRegion>());
pub const KVM_ENABLE_CAP: u64 = iow(0xa3, std::mem::size_of::<KvmEnableCap>());
/// On the VM fd: a floating interrupt; on a vCPU fd: a local one.
pub const KVM_S390_INTERRUPT: u64 = iow(0x94, std::mem::size_of::<KvmS390Interrupt>());
pub const KVM_IOEVENTFD: u64 = iow(0x79, std::mem::size_of::<KvmIoeventfd>());
pub const KVM_CREATE_IRQCHIP: u64 = io(0x60);
/// Encodes the size of the header only; the entries follow it.
pub const KVM_SET_GSI_ROUTING: u64 = iow(0x6a, std::mem::size_of::<KvmIrqRoutingHeader>());
pub const KVM_IRQFD: u64 = iow(0x76, std::mem::size_of::<KvmIrqfd>());
pub const KVM_CREATE_DEVICE: u64 = iowr(0xe0, std::mem::size_of::<KvmCreateDevice>());
pub const KVM_SET_DEVICE_ATTR: u64 = iow(0xe1, std::mem::size_of::<KvmDeviceAttr>());
// vCPU ioctls.
pub const KVM_RUN: u64 = io(0x80);
pub const KVM_GET_REGS: u64 = ior(0x81, std::mem::size_of::<KvmRegs>());
pub const KVM_SET_REGS: u64 = iow(0x82, std::mem::size_of::<KvmRegs>());
pub const KVM_GET_SREGS: u64 = ior(0x83, std::mem::size_of::<KvmSregs>());
pub const KVM_SET_SREGS: u64 = iow(0x84, std::mem::size_of::<KvmSregs>());
pub const KVM_S390_STORE_STATUS: u64 = iow(0x95, std::mem::size_of::<u64>());
pub const KVM_S390_SET_INITIAL_PSW: u64 = iow(0x96, std::mem::size_of::<KvmS390Psw>());
pub const KVM_S390_INITIAL_RESET: u64 = io(0x97);
pub const KVM_GET_MP_STATE: u64 = ior(0x98, std::mem::size_of::<KvmMpState>());
pub const KVM_SET_MP_STATE: u64 = iow(0x99, std::mem::size_of::<KvmMpState>());
pub const KVM_GET_ONE_REG: u64 = iow(0xab, std::mem::size_of::<KvmOneReg>());
pub const KVM_SET_ONE_REG: u64 = iow(0xac, std::mem::size_of::<KvmOneReg>());
pub const KVM_S390_IRQ: u64 = iow(0xb4, std::mem::size_of::<KvmS390Irq>());
pub const KVM_S390_MEM_OP: u64 = iow(0xb1, std::mem::size_of::<KvmS390MemOp>());
pub const KVM_S390_NORMAL_RESET: u64 = io(0xc3);

pub const KVM_API_VERSION: i32 = 12;

// Capabilities (KVM_CHECK_EXTENSION / KVM_ENABLE_CAP).
pub const KVM_CAP_USER_MEMORY: u32 = 3;
pub const KVM_CAP_NR_VCPUS: u32 = 9;
pub const KVM_CAP_IRQ_ROUTING: u32 = 25;
pub const KVM_CAP_IRQFD: u32 = 32;
pub const KVM_CAP_IOEVENTFD: u32 = 36;
pub const KVM_CAP_S390_PSW: u32 = 42;
pub const KVM_CAP_MAX_VCPUS: u32 = 66;
pub const KVM_CAP_ONE_REG: u32 = 70;
pub const KVM_CAP_S390_GMAP: u32 = 71;
pub const KVM_CAP_SYNC_REGS: u32 = 74;
pub const KVM_CAP_S390_CSS_SUPPORT: u32 = 85;
pub const KVM_CAP_DEVICE_CTRL: u32 = 89;
pub const KVM_CAP_S390_IRQCHIP: u32 = 99;
pub const KVM_CAP_S390_USER_SIGP: u32 = 106;
pub const KVM_CAP_S390_MEM_OP: u32 = 108;
pub const KVM_CAP_S390_USER_STSI: u32 = 109;
pub const KVM_CAP_S390_INJECT_IRQ: u32 = 113;
pub const KVM_CAP_IMMEDIATE_EXIT: u32 = 136;
pub const KVM_CAP_S390_VCPU_RESETS: u32 = 179;

// kvm_ioeventfd.flags.
pub const KVM_IOEVENTFD_FLAG_DATAMATCH: u32 = 1 << 0;
pub const KVM_IOEVENTFD_FLAG_DEASSIGN: u32 = 1 << 2;
/// `KVM_IRQFD` flag: remove the irqfd instead of adding it.
pub const KVM_IRQFD_FLAG_DEASSIGN: u32 = 1 << 0;
/// The address is a subchannel identifier: the eventfd is signalled by the virtio-ccw
/// notification hypercall (DIAG 0x500, GR1 = 3, GR2 = the subchannel, GR3 = the queue).
pub const KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY: u32 = 1 << 3;

/// `struct kvm_ioeventfd`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmIoeventfd {
    pub datamatch: u64,
    pub addr: u64,
    pub len: u32,
    pub fd: i32,
    pub flags: u32,
    pub pad: [u8; 36],
}

/// `struct kvm_irqfd`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmIrqfd {
    pub fd: u32,
    pub gsi: u32,
    pub flags: u32,
    pub resamplefd: u32,
    pub pad: [u8; 16],
}

/// `struct kvm_create_device` (the kernel writes `fd`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KvmCreateDevice {
    pub type_: u32,
    pub fd: u32,
    pub flags: u32,
}

/// `struct kvm_device_attr`: `addr` points to the attribute's argument.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmDeviceAttr {
    pub flags: u32,
    pub group: u32,
    pub attr: u64,
    pub addr: u64,
}

/// The floating-interrupt controller device (`KVM_DEV_TYPE_FLIC`) and its groups.
pub const KVM_DEV_TYPE_FLIC: u32 = 6;
pub const KVM_DEV_FLIC_ADAPTER_REGISTER: u32 = 6;

/// `struct kvm_s390_io_adapter` (KVM_DEV_FLIC_ADAPTER_REGISTER).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KvmS390IoAdapter {
    pub id: u32,
    pub isc: u8,
    pub maskable: u8,
    /// Indicator bits numbered from the most significant bit of each doubleword.
    pub swap: u8,
    pub flags: u8,
}

/// `struct kvm_irq_routing` without its flexible array of entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KvmIrqRoutingHeader {
    pub nr: u32,
    pub flags: u32,
}

pub const KVM_IRQ_ROUTING_S390_ADAPTER: u32 = 3;

/// `struct kvm_irq_routing_s390_adapter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmIrqRoutingS390Adapter {
    pub ind_addr: u64,
    pub summary_addr: u64,
    pub ind_offset: u64,
    pub summary_offset: u32,
    pub adapter_id: u32,
}

/// `struct kvm_irq_routing_entry` with its union as the adapter member (the union's
/// largest, with `pad[8]`: 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmIrqRoutingEntry {
    pub gsi: u32,
    pub type_: u32,
    pub flags: u32,
    pub pad: u32,
    pub adapter: KvmIrqRoutingS390Adapter,
}

// Exit reasons.
pub const KVM_EXIT_UNKNOWN: u32 = 0;
pub const KVM_EXIT_DEBUG: u32 = 4;
pub const KVM_EXIT_FAIL_ENTRY: u32 = 9;
pub const KVM_EXIT_INTR: u32 = 10;
pub const KVM_EXIT_S390_SIEIC: u32 = 13;
pub const KVM_EXIT_S390_RESET: u32 = 14;
pub const KVM_EXIT_INTERNAL_ERROR: u32 = 17;
pub const KVM_EXIT_S390_UCONTROL: u32 = 20;
pub const KVM_EXIT_S390_TSCH: u32 = 22;
pub const KVM_EXIT_SYSTEM_EVENT: u32 = 24;
pub const KVM_EXIT_S390_STSI: u32 = 25;

// KVM_EXIT_S390_RESET flags.
pub const KVM_S390_RESET_POR: u64 = 1;
pub const KVM_S390_RESET_CLEAR: u64 = 2;
pub const KVM_S390_RESET_SUBSYSTEM: u64 = 4;
pub const KVM_S390_RESET_CPU_INIT: u64 = 8;
pub const KVM_S390_RESET_IPL: u64 = 16;

// kvm_run.kvm_valid_regs / kvm_dirty_regs bits.
pub const KVM_SYNC_PREFIX: u64 = 1 << 0;
pub const KVM_SYNC_GPRS: u64 = 1 << 1;
pub const KVM_SYNC_ACRS: u64 = 1 << 2;
pub const KVM_SYNC_CRS: u64 = 1 << 3;

// Interrupt types (kvm_s390_interrupt.type / kvm_s390_irq.type).
pub const KVM_S390_SIGP_STOP: u32 = 0xfffe_0000;
pub const KVM_S390_PROGRAM_INT: u32 = 0xfffe_0001;
pub const KVM_S390_SIGP_SET_PREFIX: u32 = 0xfffe_0002;
pub const KVM_S390_RESTART: u32 = 0xfffe_0003;
pub const KVM_S390_INT_SERVICE: u32 = 0xffff_2401;
pub const KVM_S390_INT_EMERGENCY: u32 = 0xffff_1201;
pub const KVM_S390_INT_EXTERNAL_CALL: u32 = 0xffff_1202;

/// `KVM_S390_INT_IO(ai, cssid, ssid, schid)`: the interrupt type of an I/O interrupt.
pub const fn kvm_s390_int_io(ai: bool, cssid: u8, ssid: u8, schid: u16) -> u32 {
    (schid as u32) | ((ssid as u32) << 16) | ((cssid as u32) << 18) | ((ai as u32) << 26)
}

/// `kvm_s390_mem_op.op`: logical (DAT, prefixing) reads and writes for the vCPU.
pub const KVM_S390_MEMOP_LOGICAL_READ: u32 = 0;
pub const KVM_S390_MEMOP_LOGICAL_WRITE: u32 = 1;
/// `kvm_s390_mem_op.flags`: make the access exception pending for the vCPU.
pub const KVM_S390_MEMOP_F_INJECT_EXCEPTION: u64 = 1 << 1;

// MP states.
pub const KVM_MP_STATE_STOPPED: u32 = 5;
pub const KVM_MP_STATE_OPERATING: u32 = 7;

// KVM_S390_STORE_STATUS special addresses.
pub const KVM_S390_STORE_STATUS_NOADDR: u64 = u64::MAX;
pub const KVM_S390_STORE_STATUS_PREFIXED: u64 = u64::MAX - 1;

/// `struct kvm_userspace_memory_region`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmUserspaceMemoryRegion {
    pub slot: u32,
    pub flags: u32,
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub userspace_addr: u64,
}

/// `struct kvm_enable_cap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvmEnableCap {
    pub cap: u32,
    pub flags: u32,
    pub args: [u64; 4],
    pub pad: [u8; 64],
}

impl KvmEnableCap {
    pub fn new(cap: u32) -> Self {
        Self {
            cap,
            flags: 0,
            args: [0; 4],
            pad: [0; 64],
        }
    }
}

/// `struct kvm_s390_psw`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmS390Psw {
    pub mask: u64,
    pub addr: u64,
}

/// `struct kvm_s390_interrupt` (legacy injection).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmS390Interrupt {
    pub type_: u32,
    pub parm: u32,
    pub parm64: u64,
}

/// `struct kvm_s390_pgm_info`, the program-interrupt member of `kvm_s390_irq.u`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmS390PgmInfo {
    pub trans_exc_code: u64,
    pub mon_code: u64,
    pub per_address: u64,
    pub data_exc_code: u32,
    pub code: u16,
    pub mon_class_nr: u16,
    pub per_code: u8,
    pub per_atmid: u8,
    pub exc_access_id: u8,
    pub per_access_id: u8,
    pub op_access_id: u8,
    pub flags: u8,
    pub pad: [u8; 2],
}

/// `struct kvm_s390_irq`: a type and a 64-byte union of per-type payloads, kept as bytes
/// (native-endian as the kernel reads them) with typed setters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvmS390Irq {
    pub type_: u64,
    pub u: [u64; 8],
}

impl KvmS390Irq {
    /// An interrupt of `type_` without payload (restart, stop, service...).
    pub fn new(type_: u32) -> Self {
        Self {
            type_: u64::from(type_),
            u: [0; 8],
        }
    }

    /// A program interrupt with interruption code `code`.
    pub fn program(code: u16) -> Self {
        let pgm = KvmS390PgmInfo {
            code,
            ..Default::default()
        };
        let mut irq = Self::new(KVM_S390_PROGRAM_INT);
        // Copy field by field into the union's native-endian words, as the kernel reads it.
        irq.u[0] = pgm.trans_exc_code;
        irq.u[1] = pgm.mon_code;
        irq.u[2] = pgm.per_address;
        let mut w3 = [0u8; 8];
        w3[0..4].copy_from_slice(&pgm.data_exc_code.to_ne_bytes());
        w3[4..6].copy_from_slice(&pgm.code.to_ne_bytes());
        w3[6..8].copy_from_slice(&pgm.mon_class_nr.to_ne_bytes());
        irq.u[3] = u64::from_ne_bytes(w3);
        irq
    }

    /// A stop order, optionally storing the status first.
    pub fn stop(store_status: bool) -> Self {
        let mut irq = Self::new(KVM_S390_SIGP_STOP);
        // kvm_s390_stop_info { __u32 flags; }: the first four bytes of the union.
        let flags: u32 = if store_status { 1 } else { 0 };
        let mut w = [0u8; 8];
        w[0..4].copy_from_slice(&flags.to_ne_bytes());
        irq.u[0] = u64::from_ne_bytes(w);
        irq
    }
}

/// `struct kvm_s390_mem_op` (the 32-byte union after `buf` holds `ar` and `key`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmS390MemOp {
    pub gaddr: u64,
    pub flags: u64,
    pub size: u32,
    pub op: u32,
    pub buf: u64,
    pub ar: u8,
    pub key: u8,
    pub reserved: [u8; 30],
}

/// `struct kvm_mp_state`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmMpState {
    pub mp_state: u32,
}

/// `struct kvm_one_reg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmOneReg {
    pub id: u64,
    pub addr: u64,
}

/// `struct kvm_regs` of s390.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmRegs {
    pub gprs: [u64; 16],
}

/// `struct kvm_sregs` of s390.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmSregs {
    pub acrs: [u32; 16],
    pub crs: [u64; 16],
}

pub const KVM_REG_S390: u64 = 0x5000_0000_0000_0000;
pub const KVM_REG_SIZE_U32: u64 = 0x0020_0000_0000_0000;
pub const KVM_REG_SIZE_U64: u64 = 0x0030_0000_0000_0000;
pub const KVM_REG_S390_TODPR: u64 = KVM_REG_S390 | KVM_REG_SIZE_U32 | 0x1;
pub const KVM_REG_S390_EPOCHDIFF: u64 = KVM_REG_S390 | KVM_REG_SIZE_U64 | 0x2;
pub const KVM_REG_S390_CPU_TIMER: u64 = KVM_REG_S390 | KVM_REG_SIZE_U64 | 0x3;
pub const KVM_REG_S390_CLOCK_COMP: u64 = KVM_REG_S390 | KVM_REG_SIZE_U64 | 0x4;

/// `struct kvm_sync_regs` of s390: registers shared through `kvm_run` (up to the guarded-
/// storage block; the tail of the 2048-byte area is kept as padding).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmSyncRegs {
    pub prefix: u64,
    pub gprs: [u64; 16],
    pub acrs: [u32; 16],
    pub crs: [u64; 16],
    pub todpr: u64,
    pub cputm: u64,
    pub ckc: u64,
    pub pp: u64,
    pub gbea: u64,
    pub pft: u64,
    pub pfs: u64,
    pub pfc: u64,
    /// `vrs[32][2]` / `fprs[16]` union.
    pub vrs: [[u64; 2]; 32],
    pub reserved: [u8; 512],
    pub fpc: u32,
    /// `bpbc:1, reserved2:7`.
    pub bpbc: u8,
    pub padding1: [u8; 51],
    pub riccb: [u8; 64],
    pub diag318: u64,
    pub padding2: [u8; 184],
    /// `sdnx[SDNXL]` union `{ reserved1[2], gscb[4], etoken, etoken_extension }`.
    pub sdnx: [u64; 32],
}

/// The s390 members of `kvm_run`'s exit union this backend reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmS390Sieic {
    pub icptcode: u8,
    pub ipa: u16,
    pub ipb: u32,
}

/// `kvm_run.s390_tsch` (KVM_EXIT_S390_TSCH): the I/O interrupt KVM dequeued for the
/// subchannel in GR1, if any, and the instruction's `ipb`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmS390Tsch {
    pub subchannel_id: u16,
    pub subchannel_nr: u16,
    pub io_int_parm: u32,
    pub io_int_word: u32,
    pub ipb: u32,
    pub dequeued: u8,
}

/// `kvm_run.s390_stsi`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmS390Stsi {
    pub addr: u64,
    pub ar: u8,
    pub reserved: u8,
    pub fc: u8,
    pub sel1: u8,
    pub sel2: u16,
}

/// `kvm_run.internal` (KVM_EXIT_INTERNAL_ERROR), without its data array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmInternalError {
    pub suberror: u32,
    pub ndata: u32,
}

/// The 256-byte exit union of `kvm_run`, with the members s390 uses.
#[repr(C)]
#[derive(Clone, Copy)]
pub union KvmRunExit {
    pub s390_sieic: KvmS390Sieic,
    pub s390_reset_flags: u64,
    pub s390_stsi: KvmS390Stsi,
    pub s390_tsch: KvmS390Tsch,
    pub internal: KvmInternalError,
    pub fail_entry_hardware_entry_failure_reason: u64,
    pub padding: [u8; 256],
}

/// The synced-registers area of `kvm_run` (`SYNC_REGS_SIZE_BYTES` = 2048).
#[repr(C)]
#[derive(Clone, Copy)]
pub union KvmRunSync {
    pub regs: KvmSyncRegs,
    pub padding: [u8; 2048],
}

/// `struct kvm_run` as laid out for s390 (`__KVM_S390` adds the PSW after `apic_base`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KvmRun {
    pub request_interrupt_window: u8,
    pub immediate_exit: u8,
    pub padding1: [u8; 6],
    pub exit_reason: u32,
    pub ready_for_interrupt_injection: u8,
    pub if_flag: u8,
    pub flags: u16,
    pub cr8: u64,
    pub apic_base: u64,
    pub psw_mask: u64,
    pub psw_addr: u64,
    pub exit: KvmRunExit,
    pub kvm_valid_regs: u64,
    pub kvm_dirty_regs: u64,
    pub s: KvmRunSync,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Values printed by a C program built from the Linux 6.1 s390x UAPI headers.
    #[test]
    fn kvm_run_layout_matches_the_kernel() {
        assert_eq!(size_of::<KvmRun>(), 0x940);
        assert_eq!(offset_of!(KvmRun, immediate_exit), 0x1);
        assert_eq!(offset_of!(KvmRun, exit_reason), 0x8);
        assert_eq!(offset_of!(KvmRun, psw_mask), 0x20);
        assert_eq!(offset_of!(KvmRun, psw_addr), 0x28);
        assert_eq!(offset_of!(KvmRun, exit), 0x30);
        assert_eq!(offset_of!(KvmRun, kvm_valid_regs), 0x130);
        assert_eq!(offset_of!(KvmRun, kvm_dirty_regs), 0x138);
        assert_eq!(offset_of!(KvmRun, s), 0x140);
        assert_eq!(size_of::<KvmRunExit>(), 256);
        assert_eq!(offset_of!(KvmS390Sieic, ipa), 2);
        assert_eq!(offset_of!(KvmS390Sieic, ipb), 4);
        assert_eq!(offset_of!(KvmS390Stsi, fc), 0xa);
        assert_eq!(offset_of!(KvmS390Stsi, sel2), 0xc);
        assert_eq!(offset_of!(KvmS390Tsch, io_int_word), 8);
        assert_eq!(offset_of!(KvmS390Tsch, dequeued), 0x10);
        assert_eq!(size_of::<KvmS390Tsch>(), 0x14);
    }

    #[test]
    fn sync_regs_layout_matches_the_kernel() {
        assert_eq!(offset_of!(KvmSyncRegs, gprs), 0x8);
        assert_eq!(offset_of!(KvmSyncRegs, acrs), 0x88);
        assert_eq!(offset_of!(KvmSyncRegs, crs), 0xc8);
        assert_eq!(offset_of!(KvmSyncRegs, todpr), 0x148);
        assert_eq!(offset_of!(KvmSyncRegs, fpc), 0x588);
        assert_eq!(offset_of!(KvmSyncRegs, riccb), 0x5c0);
        assert_eq!(offset_of!(KvmSyncRegs, diag318), 0x600);
        assert_eq!(offset_of!(KvmSyncRegs, sdnx), 0x6c0);
        assert_eq!(size_of::<KvmSyncRegs>(), 0x7c0);
        assert_eq!(size_of::<KvmRunSync>(), 2048);
    }

    #[test]
    fn argument_structs_match_the_kernel() {
        assert_eq!(size_of::<KvmUserspaceMemoryRegion>(), 0x20);
        assert_eq!(size_of::<KvmEnableCap>(), 0x68);
        assert_eq!(size_of::<KvmS390Interrupt>(), 0x10);
        assert_eq!(size_of::<KvmS390Irq>(), 0x48);
        assert_eq!(size_of::<KvmS390PgmInfo>(), 40);
        assert_eq!(offset_of!(KvmS390PgmInfo, code), 28);
        assert_eq!(size_of::<KvmRegs>(), 0x80);
        assert_eq!(size_of::<KvmSregs>(), 0xc0);
        assert_eq!(offset_of!(KvmSregs, crs), 0x40);
        assert_eq!(size_of::<KvmS390MemOp>(), 0x40);
        assert_eq!(size_of::<KvmIoeventfd>(), 0x40);
        // Adapter routes, irqfd and the FLIC: sizes and offsets from a C program built
        // against linux-libc-dev-s390x-cross 6.1 and run under qemu-s390x.
        assert_eq!(size_of::<KvmIrqRoutingEntry>(), 48);
        assert_eq!(offset_of!(KvmIrqRoutingEntry, adapter), 16);
        assert_eq!(size_of::<KvmIrqRoutingS390Adapter>(), 32);
        assert_eq!(offset_of!(KvmIrqRoutingS390Adapter, summary_offset), 24);
        assert_eq!(size_of::<KvmIrqRoutingHeader>(), 8);
        assert_eq!(size_of::<KvmIrqfd>(), 32);
        assert_eq!(size_of::<KvmCreateDevice>(), 12);
        assert_eq!(size_of::<KvmDeviceAttr>(), 24);
        assert_eq!(size_of::<KvmS390IoAdapter>(), 8);
        assert_eq!(offset_of!(KvmIoeventfd, len), 0x10);
        assert_eq!(offset_of!(KvmIoeventfd, fd), 0x14);
        assert_eq!(offset_of!(KvmIoeventfd, flags), 0x18);
        assert_eq!(offset_of!(KvmS390MemOp, buf), 0x18);
        assert_eq!(offset_of!(KvmS390MemOp, ar), 0x20);
    }

    #[test]
    fn ioctl_numbers_match_the_kernel() {
        assert_eq!(KVM_GET_API_VERSION, 0xae00);
        assert_eq!(KVM_CREATE_VM, 0xae01);
        assert_eq!(KVM_CHECK_EXTENSION, 0xae03);
        assert_eq!(KVM_GET_VCPU_MMAP_SIZE, 0xae04);
        assert_eq!(KVM_CREATE_VCPU, 0xae41);
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_SET_USER_MEMORY_REGION, 0x4020_ae46);
        assert_eq!(KVM_ENABLE_CAP, 0x4068_aea3);
        assert_eq!(KVM_S390_INITIAL_RESET, 0xae97);
        assert_eq!(KVM_S390_SET_INITIAL_PSW, 0x4010_ae96);
        assert_eq!(KVM_S390_INTERRUPT, 0x4010_ae94);
        assert_eq!(KVM_S390_IRQ, 0x4048_aeb4);
        assert_eq!(KVM_SET_MP_STATE, 0x4004_ae99);
        assert_eq!(KVM_GET_MP_STATE, 0x8004_ae98);
        assert_eq!(KVM_GET_ONE_REG, 0x4010_aeab);
        assert_eq!(KVM_SET_ONE_REG, 0x4010_aeac);
        assert_eq!(KVM_GET_REGS, 0x8080_ae81);
        assert_eq!(KVM_SET_REGS, 0x4080_ae82);
        assert_eq!(KVM_GET_SREGS, 0x80c0_ae83);
        assert_eq!(KVM_SET_SREGS, 0x40c0_ae84);
        assert_eq!(KVM_S390_MEM_OP, 0x4040_aeb1);
        assert_eq!(KVM_S390_NORMAL_RESET, 0xaec3);
        assert_eq!(KVM_IOEVENTFD, 0x4040_ae79);
        assert_eq!(KVM_IRQFD, 0x4020_ae76);
        assert_eq!(KVM_SET_GSI_ROUTING, 0x4008_ae6a);
        assert_eq!(KVM_CREATE_DEVICE, 0xc00c_aee0);
        assert_eq!(KVM_SET_DEVICE_ATTR, 0x4018_aee1);
        assert_eq!(KVM_CREATE_IRQCHIP, 0xae60);
        // KVM_S390_INT_IO(0, 0, 0, 2) and the adapter-interrupt bit.
        assert_eq!(kvm_s390_int_io(false, 0, 0, 2), 2);
        assert_eq!(kvm_s390_int_io(true, 0, 1, 0), 0x0401_0000);
        assert_eq!(KVM_REG_S390_CPU_TIMER, 0x5030_0000_0000_0003);
    }

    #[test]
    fn program_interrupt_payload_is_where_the_kernel_reads_it() {
        let irq = KvmS390Irq::program(0x0006);
        // SAFETY: KvmS390Irq is plain old data of 72 bytes without padding.
        let bytes: [u8; 72] = unsafe { std::mem::transmute(irq) };
        let code_at = 8 + offset_of!(KvmS390PgmInfo, code);
        assert_eq!(
            u16::from_ne_bytes([bytes[code_at], bytes[code_at + 1]]),
            0x0006
        );
        assert_eq!(
            u64::from_ne_bytes(bytes[0..8].try_into().unwrap()),
            u64::from(KVM_S390_PROGRAM_INT)
        );
    }
}
