// SPDX-License-Identifier: Apache-2.0
//! The kernel loaders: the input is a kernel file (and an initrd and a command line) as a
//! user passes them; `boot` recognises its format, then each architecture's loader places
//! it in guest RAM: x86_64 bzImage and ELF/PVH (x86_64 hosts only: the loader is part of
//! the KVM glue), the arm64 Image (raw or gzip) with its device tree, the s390x IPL (ELF
//! or raw image, parameter area). Any file must load or be refused with an error.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use arch::boot::BootRequest;
use arch::GuestMemory;
use libfuzzer_sys::fuzz_target;
use vm_memory::GuestAddress;
use vmm_sys_util::tempdir::TempDir;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Guest RAM in MiB (taken modulo a small range: allocated per input).
    ram_mib: u8,
    cmdline: String,
    initrd: Option<Vec<u8>>,
    kernel: Vec<u8>,
}

const MIB: u64 = 1 << 20;

fn dir() -> &'static Path {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| TempDir::new().expect("temp dir"))
        .as_path()
}

fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir().join(name);
    std::fs::write(&path, bytes).expect("writing a temp file");
    path
}

/// The request as the VMM builds it, or `None` when `boot` refuses the files (an error is
/// a fine answer).
fn request(raw: bool, cmdline: &str, kernel: &Path, initrd: Option<&Path>) -> Option<BootRequest> {
    let kernel = if raw {
        boot::open_kernel_or_raw(kernel)
    } else {
        boot::open_kernel(kernel)
    }
    .ok()?;
    let initrd = match initrd {
        Some(p) => Some(boot::open_initrd(p).ok()?),
        None => None,
    };
    let cmdline = boot::check_cmdline(cmdline).ok()?;
    Some(BootRequest {
        kernel,
        initrd,
        cmdline,
    })
}

#[cfg(target_arch = "x86_64")]
fn x86_64(ram: u64, req: &mut BootRequest) {
    let layout = arch_x86_64::layout::memory_layout(ram).expect("layout");
    let mem = layout.allocate().expect("guest memory");
    let _ = arch_x86_64::kvm::load_kernel(&mem, &layout, req);
}

#[cfg(not(target_arch = "x86_64"))]
fn x86_64(_ram: u64, _req: &mut BootRequest) {}

fn aarch64(ram: u64, req: &mut BootRequest) {
    use arch_aarch64::fdt::GicVersion;
    use arch_aarch64::loader::{load, Machine};
    let layout = arch_aarch64::layout::memory_layout(ram).expect("layout");
    let mem = layout.allocate().expect("guest memory");
    let platform = arch_aarch64::layout::platform();
    let machine = Machine {
        vcpus: 1,
        gic: GicVersion::V3,
        platform: &platform,
        virtio: &[],
    };
    let _ = load(&mem, &layout, req, &machine);
}

fn s390x(ram: u64, req: &mut BootRequest) {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), ram as usize)]).expect("memory");
    let _ = arch_s390x::ipl::load(&mem, req);
}

fuzz_target!(|input: Input| {
    let ram = (16 + u64::from(input.ram_mib % 48)) * MIB;
    let kernel = file("kernel", &input.kernel);
    let initrd = input.initrd.as_ref().map(|b| file("initrd", b));
    let initrd = initrd.as_deref();
    if let Some(mut req) = request(false, &input.cmdline, &kernel, initrd) {
        x86_64(ram, &mut req);
    }
    if let Some(mut req) = request(false, &input.cmdline, &kernel, initrd) {
        aarch64(ram, &mut req);
    }
    if let Some(mut req) = request(true, &input.cmdline, &kernel, initrd) {
        s390x(ram, &mut req);
    }
});
