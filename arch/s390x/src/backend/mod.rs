// SPDX-License-Identifier: Apache-2.0
//! KVM glue for s390x hosts: `/dev/kvm`, the VM with its 1 MiB-aligned memory slot, the IPL
//! and the vCPUs (SIE intercepts are served in [`vcpu`]).

mod adapter_routes;
mod hotplug;
mod vcpu;

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use arch::{
    BootRequest, Error, GuestMemory, Hotplugged, Hypervisor, MemoryLayout, Platform, RamRange,
    Result, VirtioTransport, Vm, VmConfig,
};
use devices::virtio::VirtioDevice;
use devices::{ConsoleInput, InterruptLine, PowerButton};
use vm_memory::{GuestAddress, GuestRegionMmap, MmapRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::cpu_orders::CpuState;
use crate::ipl;
use crate::kvm::bindings::*;
use crate::kvm::ioctls::{Kvm, VcpuInjector, VmFd};
use crate::machine_check;
use devices::css::{ChannelSubsystem, IoInterrupt, IoInterruptSink, SubchannelId};
use devices::log_limit::LogLimit;
use devices::sclp::{self, Sclp, SclpConsole};
pub use vcpu::KvmS390Vcpu;

/// Memory slots must start and end on a segment (1 MiB) boundary, in the guest and in the
/// host process.
const SEGMENT: u64 = 1 << 20;
/// Enough for the image, the decompressor's work area and an initrd at 8 MiB.
const MIN_MEMORY: u64 = 16 << 20;
/// SCLP's READ SCP INFO lists every CPU in one 4 KiB SCCB after offset 128: 248 entries.
const MAX_CPUS: u32 = 248;

/// Capabilities this backend cannot run without.
const REQUIRED_CAPS: &[(u32, &str)] = &[
    (KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"),
    (KVM_CAP_SYNC_REGS, "KVM_CAP_SYNC_REGS"),
    (KVM_CAP_S390_PSW, "KVM_CAP_S390_PSW"),
    (KVM_CAP_S390_USER_SIGP, "KVM_CAP_S390_USER_SIGP"),
    (KVM_CAP_S390_INJECT_IRQ, "KVM_CAP_S390_INJECT_IRQ"),
    (KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"),
];

/// `/dev/kvm` on an s390x host.
pub struct KvmS390 {
    kvm: Kvm,
    mmap_size: usize,
}

impl Hypervisor for KvmS390 {
    type Vm = KvmS390Vm;

    const RAW_KERNEL_IMAGES: bool = true;
    /// The SCLP VT220 console is `ttysclp0` (there is no UART).
    const DEFAULT_CMDLINE: &'static str = "console=ttysclp0 panic=1";

    fn name(&self) -> &'static str {
        "KVM s390x"
    }

    fn open() -> Result<Self> {
        let kvm = Kvm::open().map_err(|source| Error::OpenHypervisor {
            path: "/dev/kvm",
            source,
        })?;
        let version = kvm
            .api_version()
            .map_err(|e| Error::hv("KVM_GET_API_VERSION", e))?;
        if version != KVM_API_VERSION {
            return Err(Error::MissingCapability("KVM API version 12"));
        }
        for (cap, name) in REQUIRED_CAPS {
            if kvm.check_extension(*cap) <= 0 {
                return Err(Error::MissingCapability(name));
            }
        }
        let mmap_size = kvm
            .vcpu_mmap_size()
            .map_err(|e| Error::hv("KVM_GET_VCPU_MMAP_SIZE", e))?;
        Ok(Self { kvm, mmap_size })
    }

    fn max_vcpus(&self) -> u32 {
        let n = match self.kvm.check_extension(KVM_CAP_MAX_VCPUS) {
            n if n > 0 => n,
            _ => self.kvm.check_extension(KVM_CAP_NR_VCPUS).max(1),
        };
        (n as u32).min(MAX_CPUS)
    }

    fn create_vm(&self, config: &VmConfig) -> Result<KvmS390Vm> {
        config.refuse_pit("s390x")?;
        if config.memory_bytes < MIN_MEMORY || config.memory_bytes % SEGMENT != 0 {
            return Err(Error::Memory(format!(
                "guest memory must be a multiple of 1 MiB and at least {} MiB on s390x",
                MIN_MEMORY >> 20
            )));
        }
        if config.vcpus == 0 || config.vcpus > self.max_vcpus() {
            return Err(Error::Vcpus(format!(
                "vCPU count must be 1..={}",
                self.max_vcpus()
            )));
        }
        let size = usize::try_from(config.memory_bytes).map_err(|_| Error::GuestMemory {
            bytes: config.memory_bytes,
            reason: "larger than the address space".into(),
        })?;
        let (memory, host_addr) = map_guest_memory(size)?;
        let vm = self.kvm.create_vm().map_err(create_vm_error)?;
        vm.enable_cap(KVM_CAP_S390_USER_SIGP)
            .map_err(|e| Error::hv("KVM_ENABLE_CAP(KVM_CAP_S390_USER_SIGP)", e))?;
        let slot = KvmUserspaceMemoryRegion {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: config.memory_bytes,
            userspace_addr: host_addr,
        };
        // SAFETY: the slot is the mapping made by `map_guest_memory`, which is never unmapped
        // (it lives as long as the process) and is used only as this guest's memory.
        unsafe { vm.set_user_memory_region(&slot) }
            .map_err(|e| Error::hv("KVM_SET_USER_MEMORY_REGION", e))?;
        let vm = Arc::new(vm);
        let sink = Arc::new(KvmIoSink { vm: vm.clone() });
        let sclp = Arc::new(Mutex::new(Sclp::new(
            config.memory_bytes,
            config.vcpus as u16,
            SclpConsole::Vt220,
        )));
        Ok(KvmS390Vm {
            sclp,
            css: Arc::new(ChannelSubsystem::new(memory.clone(), sink)),
            started: false,
            css_support: false,
            attached: Vec::new(),
            queue_events: Mutex::default(),
            vm,
            memory,
            layout: MemoryLayout {
                ram: vec![RamRange {
                    start: 0,
                    size: config.memory_bytes,
                }],
                mmio_start: config.memory_bytes,
                mmio_size: 0,
            },
            // No UART, no i8042, no MMIO boot timer: the console is SCLP, served here.
            platform: Platform::default(),
            vcpus: config.vcpus,
            mmap_size: self.mmap_size,
            console: Mutex::new(None),
            entry: None,
            adapter_routing: Mutex::new(None),
        })
    }
}

/// `KVM_CREATE_VM` failed; `EINVAL` on s390x most often means the process has no
/// page-status tables: the error then says which of their two sources is missing.
fn create_vm_error(e: std::io::Error) -> Error {
    if e.raw_os_error() != Some(libc::EINVAL) {
        return Error::hv("KVM_CREATE_VM", e);
    }
    let hint = crate::pgste::create_vm_einval_hint_here();
    Error::hv(
        "KVM_CREATE_VM",
        std::io::Error::new(e.kind(), format!("{e}: {hint}")),
    )
}

/// Map `size` bytes of anonymous memory at a 1 MiB-aligned host address; returns the guest
/// memory over it and that address. The mapping is never unmapped: KVM's memory slot refers
/// to it for as long as the VM exists, which is as long as the process.
fn map_guest_memory(size: usize) -> Result<(GuestMemory, u64)> {
    let err = |reason: String| Error::GuestMemory {
        bytes: size as u64,
        reason,
    };
    let align = SEGMENT as usize;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    let total = size
        .checked_add(align)
        .ok_or_else(|| err("too large".into()))?;
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses; checked below.
    let raw = unsafe { libc::mmap(std::ptr::null_mut(), total, prot, flags, -1, 0) };
    if raw == libc::MAP_FAILED {
        return Err(err(std::io::Error::last_os_error().to_string()));
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(align);
    let head = aligned - start;
    let tail = align - head;
    // SAFETY: both ranges lie inside the mapping just made and outside
    // [aligned, aligned + size), which nothing references yet.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((aligned + size) as *mut libc::c_void, tail);
        }
    }
    // SAFETY: [aligned, aligned + size) is a live private anonymous mapping with exactly
    // these prot/flags, owned by nothing else and never unmapped.
    let region = unsafe { MmapRegion::<()>::build_raw(aligned as *mut u8, size, prot, flags) }
        .map_err(|e| err(e.to_string()))?;
    let region = GuestRegionMmap::new(region, GuestAddress(0))
        .ok_or_else(|| err("region does not fit the guest address space".into()))?;
    let memory = GuestMemory::from_regions(vec![region]).map_err(|e| err(e.to_string()))?;
    Ok((memory, aligned as u64))
}

/// Bind each queue's kick `EventFd` to the guest's virtio-ccw notifications of subchannel
/// `id` (`KVM_IOEVENTFD` with `KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY`, the subchannel
/// identifier as the address, the queue index as the datamatch), as QEMU's
/// `kvm_s390_assign_subch_ioeventfd` does: KVM then signals the worker itself and the vCPU
/// does not leave `KVM_RUN`. Both forms of the identifier a guest may put in GR2 are bound
/// (css 0, and the virtual css 0xfe with the M bit). A notify KVM does not match (no
/// `KVM_CAP_IOEVENTFD`, a failed registration, a device without kick `EventFd`s) still
/// reaches the DIAG 0x500 intercept, which writes the same `EventFd`
/// (`ChannelSubsystem::notify`). Returns how notifies arrive, for the log.
fn bind_ccw_notifies(vm: &VmFd, id: SubchannelId, events: &[Arc<EventFd>]) -> String {
    const INTERCEPT: &str = "by DIAG 0x500 intercept";
    if events.is_empty() {
        return format!("{INTERCEPT} (the device has no kick EventFds)");
    }
    if vm.check_extension(KVM_CAP_IOEVENTFD) <= 0 {
        return format!("{INTERCEPT} (no KVM_CAP_IOEVENTFD)");
    }
    let forms = [SubchannelId { cssid: 0, ..id }.encode(), id.encode()];
    for (queue, event) in events.iter().enumerate() {
        let Ok(queue) = u16::try_from(queue) else {
            break;
        };
        for schid in forms {
            if let Err(e) = vm.register_ccw_ioeventfd(&**event, schid, queue) {
                log::warn!(
                    "KVM_IOEVENTFD (virtio-ccw notify) for subchannel {schid:#010x} queue \
                     {queue}: {e}; its notifies go through the DIAG 0x500 intercept"
                );
                return format!("{INTERCEPT} (KVM_IOEVENTFD failed: {e})");
            }
        }
    }
    format!(
        "by ioeventfd ({} queue(s), KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY)",
        events.len()
    )
}

/// I/O interrupts into KVM's floating interrupt queue.
struct KvmIoSink {
    vm: Arc<VmFd>,
}

impl IoInterruptSink for KvmIoSink {
    fn inject(&self, irq: IoInterrupt) {
        inject_io(&self.vm, irq);
    }

    /// A floating `KVM_S390_MCHK` (parm: the CR14 submask, parm64: the MCIC), as QEMU's
    /// `kvm_s390_crw_mchk`.
    fn channel_report_pending(&self) {
        let irq = KvmS390Interrupt {
            type_: machine_check::KVM_S390_MCHK,
            parm: machine_check::CR14_CHANNEL_REPORT,
            parm64: machine_check::channel_report_mcic(),
        };
        if let Err(e) = self.vm.inject_floating(&irq) {
            IO_INTERRUPT.warn(format_args!("channel-report machine check: {e}"));
        }
    }
}

/// Make an I/O interrupt pending in KVM (`KVM_S390_INTERRUPT` with a `KVM_S390_INT_IO`
/// type: parm = subchannel identifier, parm64 = interruption parameter and word). An
/// adapter interruption has the AI bit in its type and no subchannel; KVM queues it by the
/// ISC in its word (or sets it in the GISA where the host has one).
fn inject_io(vm: &VmFd, irq: IoInterrupt) {
    if irq.is_adapter() {
        ADAPTER_INJECTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let ssid = ((irq.subchannel_id >> 1) & 3) as u8;
    let type_ = if irq.is_adapter() {
        kvm_s390_int_io(true, 0, 0, 0)
    } else {
        kvm_s390_int_io(false, 0, ssid, irq.subchannel_nr)
    };
    let kirq = KvmS390Interrupt {
        type_,
        parm: irq.schid(),
        parm64: (u64::from(irq.parm) << 32) | u64::from(irq.word),
    };
    if let Err(e) = vm.inject_floating(&kirq) {
        IO_INTERRUPT.warn(format_args!("for {:#010x}: {e}", irq.schid()));
    }
}

/// Adapter interruptions the VMM injected itself (not through KVM's adapter routes).
static ADAPTER_INJECTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Warnings a guest can cause, limited per site (see [`LogLimit`]).
static IO_INTERRUPT: LogLimit = LogLimit::new("I/O interrupt");
static SERVICE_SIGNAL: LogLimit = LogLimit::new("service signal");

/// A KVM VM on s390x.
pub struct KvmS390Vm {
    vm: Arc<VmFd>,
    /// The channel subsystem, shared with the vCPUs once they exist.
    css: Arc<ChannelSubsystem>,
    /// The vCPUs exist (devices added from here on are hotplugged).
    started: bool,
    /// Channel I/O reaches userspace (`KVM_CAP_S390_CSS_SUPPORT` enabled): without it
    /// KVM answers every I/O instruction itself and nothing can be hotplugged.
    css_support: bool,
    /// The subchannel of each device attached before boot, in order.
    attached: Vec<Option<u32>>,
    /// Each device's kick `EventFd`s by subchannel number, to unbind them at unplug.
    queue_events: Mutex<std::collections::BTreeMap<u16, Vec<Arc<EventFd>>>>,
    memory: GuestMemory,
    layout: MemoryLayout,
    platform: Platform,
    vcpus: u32,
    mmap_size: usize,
    console: Mutex<Option<Box<dyn Write + Send>>>,
    /// Where the loaded image starts.
    entry: Option<u64>,
    /// The SCLP, shared with the vCPUs (SERVC), the console input and the power button.
    sclp: Arc<Mutex<Sclp>>,
    /// KVM adapter routes for virtio-ccw, set up with the first device (`Err`: not here).
    adapter_routing: Mutex<Option<std::result::Result<Arc<adapter_routes::AdapterRouting>, ()>>>,
}

impl Vm for KvmS390Vm {
    type Vcpu = KvmS390Vcpu;

    fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    fn platform(&self) -> &Platform {
        &self.platform
    }

    fn interrupt_line(&self, irq: u32) -> Result<Arc<dyn InterruptLine>> {
        Err(Error::Unsupported {
            arch: "s390x",
            what: format!("interrupt line {irq}: no channel-subsystem devices yet"),
        })
    }

    fn power_button(&self) -> Option<Box<dyn PowerButton>> {
        Some(Box::new(QuiesceButton(self.sclp_events())))
    }

    fn attach_console(&mut self, out: Box<dyn Write + Send>) -> Option<Arc<dyn ConsoleInput>> {
        *self.console.lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
        Some(Arc::new(SclpConsoleInput(self.sclp_events())))
    }

    fn add_virtio_device(
        &mut self,
        device: Box<dyn VirtioDevice>,
    ) -> Result<Option<VirtioTransport>> {
        if self.started {
            return Err(Error::Config("virtio device added after the vCPUs".into()));
        }
        let id = self.attach_ccw(device, false)?;
        self.attached.push(Some(u32::from(id.number)));
        Ok(None)
    }

    fn attached_slots(&self) -> Vec<Option<u32>> {
        self.attached.clone()
    }

    fn hotplug_virtio_device(&self, device: Box<dyn VirtioDevice>) -> Result<Hotplugged> {
        self.hotplug(device)
    }

    fn unplug_virtio_device(&self, slot: u32) -> Result<()> {
        self.unplug(slot)
    }

    fn load(&mut self, request: &mut BootRequest) -> Result<()> {
        let ipl = ipl::load(&self.memory, request)?;
        log::debug!(
            "IPL: entry {:#x}, {}, initrd {:?}",
            ipl.entry,
            if ipl.linux { "Linux" } else { "not Linux" },
            ipl.initrd
        );
        self.entry = Some(ipl.entry);
        Ok(())
    }

    fn create_vcpus(&mut self) -> Result<Vec<KvmS390Vcpu>> {
        let Some(entry) = self.entry else {
            return Err(Error::Config("create_vcpus before load".into()));
        };
        let mut fds = Vec::with_capacity(self.vcpus as usize);
        let mut slots = Vec::with_capacity(self.vcpus as usize);
        for index in 0..self.vcpus {
            let fd = self
                .vm
                .create_vcpu(index, self.mmap_size)
                .map_err(|e| Error::hv("KVM_CREATE_VCPU", e))?;
            fd.initial_reset()
                .map_err(|e| Error::hv("KVM_S390_INITIAL_RESET", e))?;
            if index == 0 {
                fd.set_initial_psw(&KvmS390Psw {
                    mask: ipl::IPL_PSW_MASK,
                    addr: entry,
                })
                .map_err(|e| Error::hv("KVM_S390_SET_INITIAL_PSW", e))?;
            }
            let injector = fd
                .injector()
                .map_err(|e| Error::hv("duplicating a vCPU fd", e))?;
            slots.push(CpuSlot {
                state: Mutex::new(CpuState {
                    stopped: index != 0,
                    orders: VecDeque::new(),
                }),
                injector,
            });
            fds.push(fd);
        }
        if self.started {
            return Err(Error::Config("create_vcpus twice".into()));
        }
        // Channel I/O reaches userspace from now on (without it KVM answers cc 3 itself):
        // needed by the devices there are, and by any a hotplug adds later.
        let missing = [
            (KVM_CAP_S390_CSS_SUPPORT, "KVM_CAP_S390_CSS_SUPPORT"),
            (KVM_CAP_S390_MEM_OP, "KVM_CAP_S390_MEM_OP"),
        ]
        .into_iter()
        .find(|(cap, _)| self.vm.check_extension(*cap) <= 0);
        match missing {
            Some((_, name)) if !self.css.is_empty() => {
                return Err(Error::MissingCapability(name));
            }
            Some((_, name)) => log::info!("virtio-ccw: no hotplug: the host lacks {name}"),
            None => {
                // A vCPU capability that switches the whole VM (as QEMU enables it).
                fds[0]
                    .enable_cap(KVM_CAP_S390_CSS_SUPPORT)
                    .map_err(|e| Error::hv("KVM_ENABLE_CAP(KVM_CAP_S390_CSS_SUPPORT)", e))?;
                self.css_support = true;
            }
        }
        self.started = true;
        let css = self.css.clone();
        let console = self
            .console
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| Box::new(std::io::sink()));
        let machine = Arc::new(Machine {
            vm: self.vm.clone(),
            memory: self.memory.clone(),
            sclp: self.sclp.clone(),
            console: Mutex::new(console),
            cpus: slots,
            css,
            normal_reset: self.vm.check_extension(KVM_CAP_S390_VCPU_RESETS) > 0,
        });
        Ok(fds
            .into_iter()
            .enumerate()
            .map(|(i, fd)| KvmS390Vcpu::new(fd, i as u32, machine.clone()))
            .collect())
    }
}

impl KvmS390Vm {
    /// KVM adapter routes for a device's `queues` (the FLIC is set up for the first
    /// device); `None`, said once in the log, where KVM cannot route them.
    fn adapter_routes(&self, queues: usize) -> Option<adapter_routes::DeviceRoutes> {
        let mut routing = self
            .adapter_routing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let routing = routing
            .get_or_insert_with(|| {
                let r = adapter_routes::AdapterRouting::new(self.vm.clone());
                match &r {
                    Ok(_) => log::info!("virtio-ccw: adapter routes ready (FLIC, irqfd)"),
                    Err(why) => log::info!("virtio-ccw: no adapter routes: {why}"),
                }
                r.map_err(|_| ())
            })
            .as_ref()
            .ok()?;
        match routing.device(queues) {
            Ok(routes) => Some(routes),
            Err(why) => {
                log::info!("virtio-ccw: no adapter routes for this device: {why}");
                None
            }
        }
    }

    fn sclp_events(&self) -> SclpEvents {
        SclpEvents {
            sclp: self.sclp.clone(),
            vm: self.vm.clone(),
        }
    }
}

/// Events the SCLP sends the guest unasked (console input, signal quiesce): queued in the
/// SCLP, announced with a service signal whose parameter says an event is pending (no
/// SCCB finished); the guest then reads them with READ EVENT DATA.
struct SclpEvents {
    sclp: Arc<Mutex<Sclp>>,
    vm: Arc<VmFd>,
}

impl SclpEvents {
    /// Run `queue` on the SCLP; announce what the guest can take now.
    fn queue<T>(&self, queue: impl FnOnce(&mut Sclp) -> T) -> T {
        let sclp = self.sclp.lock().unwrap_or_else(|p| p.into_inner());
        self.queue_locked(sclp, queue)
    }

    fn queue_locked<T>(
        &self,
        mut sclp: MutexGuard<'_, Sclp>,
        queue: impl FnOnce(&mut Sclp) -> T,
    ) -> T {
        let result = queue(&mut sclp);
        if sclp.event_pending() {
            let irq = KvmS390Interrupt {
                type_: KVM_S390_INT_SERVICE,
                parm: 1,
                parm64: 0,
            };
            if let Err(e) = self.vm.inject_floating(&irq) {
                SERVICE_SIGNAL.warn(format_args!("KVM_S390_INTERRUPT (event pending): {e}"));
            }
        }
        result
    }
}

/// The s390x power button: an SCLP signal-quiesce event. Linux's `sclp_quiesce` runs
/// `ctrl_alt_del()` (init's orderly shutdown or restart) and ends in a disabled wait, which
/// the vCPU reports as poweroff.
struct QuiesceButton(SclpEvents);

impl PowerButton for QuiesceButton {
    /// Waits for the SCLP at most [`sclp::PRESS_WAIT`] (it is held only for one service
    /// call's memory work, never across console output, but a stop must not depend on it).
    fn press(&self) {
        let Some(sclp) = sclp::lock_within(&self.0.sclp, sclp::PRESS_WAIT) else {
            log::warn!(
                "the SCLP stayed busy for {:?}: no signal-quiesce request sent",
                sclp::PRESS_WAIT
            );
            return;
        };
        if !self.0.queue_locked(sclp, Sclp::request_quiesce) {
            log::warn!("the guest has not registered for SCLP signal-quiesce events yet");
        }
    }

    /// A quiesce request is one event; there is nothing to let go of.
    fn release(&self) {}

    fn describe(&self) -> &'static str {
        "SCLP signal-quiesce request"
    }
}

/// Console input for the SCLP VT220 console (`console=ttysclp0`).
struct SclpConsoleInput(SclpEvents);

impl ConsoleInput for SclpConsoleInput {
    fn enqueue_input(&self, bytes: &[u8]) -> std::io::Result<usize> {
        Ok(self.0.queue(|sclp| sclp.queue_input(bytes)))
    }

    fn notify_room(&self, event: vmm_sys_util::eventfd::EventFd) {
        self.0.queue(|sclp| sclp.input_room().set_event(event));
    }
}

/// One vCPU's architected state (stopped, orders waiting) and how other vCPUs inject into
/// it. A stopped vCPU's thread is parked by the VMM, not here (`VcpuExit::Stopped`).
struct CpuSlot {
    state: Mutex<CpuState>,
    injector: VcpuInjector,
}

impl CpuSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, CpuState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the vCPUs of one VM share.
struct Machine {
    vm: Arc<VmFd>,
    memory: GuestMemory,
    sclp: Arc<Mutex<Sclp>>,
    console: Mutex<Box<dyn Write + Send>>,
    cpus: Vec<CpuSlot>,
    css: Arc<ChannelSubsystem>,
    /// KVM_S390_NORMAL_RESET is there (KVM_CAP_S390_VCPU_RESETS).
    normal_reset: bool,
}

impl Machine {
    fn all_stopped(&self) -> bool {
        self.cpus.iter().all(|c| c.lock().stopped)
    }
}
