// SPDX-License-Identifier: Apache-2.0
//! The CLI contract: bad flags and files give a non-zero exit (2 for bad CLI/config, 1 for a
//! runtime failure) and exactly one stderr line naming the flag or file, never a panic;
//! `--help` lists every flag; valid sizes are accepted.
//!
//! Needs an x86_64 host with /dev/kvm (for the cases that get as far as creating a VM) and a
//! built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::LOAD_ADDR;
use polyvisor_tests::{ElfBuilder, Polyvisor, RunOutput, TempDir};

mod cli_common;
use cli_common::*;

#[test]
fn help_lists_every_flag() {
    let out = Polyvisor::new().args(["run", "--help"]).run();
    out.assert_no_panic();
    assert_eq!(out.code, Some(0), "`run --help` should exit 0\n{out}");
    let text = format!("{}{}", out.stdout, out.stderr);
    for flag in [
        "--kernel",
        "--initrd",
        "--cmdline",
        "--cpus",
        "--memory",
        "--disk",
        "--net",
        "--rng",
        "--vsock",
        "--console",
        "--shutdown-timeout",
    ] {
        assert!(
            text.contains(flag),
            "`run --help` does not mention {flag}\n{out}"
        );
    }
}

#[test]
fn top_level_help_exits_0() {
    let out = Polyvisor::new().arg("--help").run();
    out.assert_no_panic();
    assert_eq!(out.code, Some(0), "`--help` should exit 0\n{out}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("run"),
        "`--help` should mention the `run` command\n{out}"
    );
}

#[test]
fn version_exits_0_on_stdout() {
    let out = Polyvisor::new().arg("--version").run();
    out.assert_no_panic();
    assert_eq!(out.code, Some(0), "`--version` should exit 0\n{out}");
    assert!(out.stdout.starts_with("polyvisor "), "{out}");
    assert!(out.stderr.is_empty(), "{out}");
}

#[test]
fn retired_manpage_and_completions_name_polyvisor_gen() {
    // The generators left the VMM binary (issue 19); the old commands say where they went.
    for args in [&["manpage"][..], &["completions", "bash"]] {
        let out = Polyvisor::new().args(args).run();
        out.assert_clean_error(CONFIG, &["polyvisor-gen", "man polyvisor"]);
        assert!(out.stdout.is_empty(), "{out}");
    }
}

#[test]
fn good_kernel_runs() {
    polyvisor_tests::require_kvm!();
    // The baseline every error case below differs from by one thing.
    let out = run_with_good_kernel(&[]);
    out.assert_guest_reset();
    out.assert_stdout_contains("ok\n");
}

#[test]
fn memory_in_bytes_and_gigabytes_is_accepted() {
    polyvisor_tests::require_kvm!();
    for size in ["134217728", "1G", "64M"] {
        let out = run_with_good_kernel(&["--memory", size]);
        out.assert_guest_reset();
        out.assert_stdout_contains("ok\n");
    }
}

#[test]
fn missing_kernel_flag() {
    let out = Polyvisor::new().arg("run").run();
    out.assert_clean_error(CONFIG, &["--kernel"]);
}

#[test]
fn missing_kernel_file() {
    let dir = TempDir::new();
    let k = dir.path().join("no-such-vmlinux");
    let out = Polyvisor::new().arg("run").arg("--kernel").arg(&k).run();
    out.assert_clean_error(CONFIG_OR_RUNTIME, &[path_str(&k)]);
}

#[test]
fn kernel_is_a_directory() {
    let dir = TempDir::new();
    let out = Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(dir.path())
        .run();
    out.assert_clean_error(CONFIG_OR_RUNTIME, &[path_str(dir.path())]);
}

#[test]
fn empty_kernel_file() {
    let dir = TempDir::new();
    let k = dir.write("empty.elf", &[]);
    let out = Polyvisor::new().arg("run").arg("--kernel").arg(&k).run();
    out.assert_clean_error(CONFIG_OR_RUNTIME, &[path_str(&k)]);
}

#[test]
fn garbage_kernel_file() {
    let dir = TempDir::new();
    // 8 KiB of deterministic noise (xorshift), no ELF or bzImage magic.
    let mut x: u32 = 0x2545_f491;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let k = dir.write("garbage.bin", &bytes);
    let out = Polyvisor::new().arg("run").arg("--kernel").arg(&k).run();
    out.assert_clean_error(CONFIG_OR_RUNTIME, &[path_str(&k)]);
}

#[test]
fn elf_segment_below_1mib_is_refused() {
    polyvisor_tests::require_kvm!();
    // p_paddr 0x1000 is below the 1 MiB the loader requires (it would overwrite the VMM's
    // low-memory tables, or they it).
    let dir = TempDir::new();
    let image = ElfBuilder::new(0x1000)
        .segment(0x1000, vec![0xf4; 16])
        .build();
    let k = dir.write("low.elf", &image);
    let out = Polyvisor::new().arg("run").arg("--kernel").arg(&k).run();
    out.assert_clean_error(CONFIG_OR_RUNTIME, &[path_str(&k)]);
}

#[test]
fn elf_segment_beyond_ram_is_refused() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let image = ElfBuilder::new(LOAD_ADDR)
        .segment(LOAD_ADDR, vec![0xf4; 16])
        .segment(0x1_0000_0000, vec![0xf4; 16]) // 4 GiB, beyond 64 MiB of RAM
        .build();
    let k = dir.write("high.elf", &image);
    let out = Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&k)
        .args(["--memory", "64M"])
        .run();
    out.assert_clean_error(CONFIG_OR_RUNTIME, &[path_str(&k)]);
}

#[test]
fn missing_initrd_file() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let i = dir.path().join("no-such-initrd");
    let out = run_with_good_kernel(&["--initrd", path_str(&i)]);
    out.assert_clean_error(CONFIG_OR_RUNTIME, &[path_str(&i)]);
}

#[test]
fn memory_zero() {
    polyvisor_tests::require_kvm!();
    run_with_good_kernel(&["--memory", "0"]).assert_clean_error(CONFIG, &["--memory"]);
}

#[test]
fn memory_banana() {
    polyvisor_tests::require_kvm!();
    run_with_good_kernel(&["--memory", "banana"])
        .assert_clean_error(CONFIG, &["--memory", "banana"]);
}

#[test]
fn memory_overflowing_u64() {
    polyvisor_tests::require_kvm!();
    run_with_good_kernel(&["--memory", "99999999999999999999G"])
        .assert_clean_error(CONFIG, &["--memory"]);
}

#[test]
fn memory_larger_than_the_host_can_map() {
    polyvisor_tests::require_kvm!();
    run_with_good_kernel(&["--memory", "100000G"])
        .assert_clean_error(CONFIG_OR_RUNTIME, &["memory"]);
}

#[test]
fn cpus_zero() {
    polyvisor_tests::require_kvm!();
    run_with_good_kernel(&["--cpus", "0"]).assert_clean_error(CONFIG, &["--cpus"]);
}

#[test]
fn cpus_too_many() {
    polyvisor_tests::require_kvm!();
    run_with_good_kernel(&["--cpus", "100000"]).assert_clean_error(CONFIG_OR_RUNTIME, &["--cpus"]);
}

#[test]
fn cpus_not_a_number() {
    polyvisor_tests::require_kvm!();
    run_with_good_kernel(&["--cpus", "four"]).assert_clean_error(CONFIG, &["--cpus"]);
}

#[test]
fn unknown_flag() {
    polyvisor_tests::require_kvm!();
    run_with_good_kernel(&["--frobnicate"]).assert_clean_error(CONFIG, &["--frobnicate"]);
}

#[test]
fn rng_is_accepted() {
    polyvisor_tests::require_kvm!();
    let out = run_with_good_kernel(&["--rng"]);
    out.assert_guest_reset();
    out.assert_stdout_contains("ok");
}

/// Makes a FIFO (named pipe) at `path`.
fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in the path");
    // SAFETY: mkfifo reads the NUL-terminated path, which lives across the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Nobody ever writes the FIFO: opening it for reading would block forever.
const AT_ONCE: std::time::Duration = std::time::Duration::from_secs(10);

#[test]
fn kernel_is_a_fifo() {
    let dir = TempDir::new();
    let fifo = dir.path().join("kernel.fifo");
    mkfifo(&fifo);
    let out = Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&fifo)
        .timeout(AT_ONCE)
        .run();
    out.assert_clean_error(CONFIG, &["--kernel", path_str(&fifo)]);
}

#[test]
fn initrd_is_a_fifo() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let k = good_kernel(&dir);
    let fifo = dir.path().join("initrd.fifo");
    mkfifo(&fifo);
    let out = Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&k)
        .arg("--initrd")
        .arg(&fifo)
        .timeout(AT_ONCE)
        .run();
    out.assert_clean_error(CONFIG, &["--initrd", path_str(&fifo)]);
}

#[test]
fn console_file_that_cannot_be_created_names_the_path() {
    polyvisor_tests::require_kvm!();
    let path = "/nonexistent-dir/x";
    let out = run_with_good_kernel(&["--console", &format!("file={path}")]);
    out.assert_clean_error(CONFIG, &[path]);
}

#[test]
fn non_utf8_cmdline_names_the_flag() {
    polyvisor_tests::require_kvm!();
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new();
    let k = good_kernel(&dir);
    let out = Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&k)
        .arg("--cmdline")
        .arg(std::ffi::OsStr::from_bytes(b"console=ttyS0 \xff\xfe"))
        .run();
    out.assert_clean_error(CONFIG, &["--cmdline"]);
}

#[test]
fn a_newline_in_a_path_cannot_split_the_error_line() {
    let dir = TempDir::new();
    let k = dir.path().join("no\nsuch-kernel");
    let out = Polyvisor::new().arg("run").arg("--kernel").arg(&k).run();
    // assert_clean_error checks for exactly one line; the path shows escaped in it.
    out.assert_clean_error(CONFIG_OR_RUNTIME, &["--kernel", "no\\nsuch-kernel"]);
}

#[test]
fn shutdown_timeout_out_of_range() {
    polyvisor_tests::require_kvm!();
    // `-1` reads as a flag to the parser; naming the value is enough there.
    for (bad, named) in [
        ("3601", "--shutdown-timeout"),
        ("ten", "--shutdown-timeout"),
        ("-1", "-1"),
    ] {
        run_with_good_kernel(&["--shutdown-timeout", bad]).assert_clean_error(CONFIG, &[named]);
    }
}

#[test]
fn console_file_max_size_not_a_size() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let console = format!(
        "file={},max-size=banana",
        dir.path().join("c.log").display()
    );
    run_with_good_kernel(&["--console", &console])
        .assert_clean_error(CONFIG, &["--console", "banana"]);
}

#[test]
fn boot_timer_is_accepted() {
    polyvisor_tests::require_kvm!();
    let out = run_with_good_kernel(&["--boot-timer"]);
    out.assert_guest_reset();
    out.assert_stdout_contains("ok\n");
}

#[test]
fn pit_is_accepted() {
    polyvisor_tests::require_kvm!();
    // The in-kernel PIT is off by default and made on request; the guest runs either way.
    let out = run_with_good_kernel(&["--pit"]);
    out.assert_guest_reset();
    out.assert_stdout_contains("ok\n");
}

// ---- --disk: every bad image or value is one line naming --disk and the file, exit 2 ----

/// `--disk path=<path><extra>` with the good kernel.
fn run_with_disk(path: &std::path::Path, extra: &str) -> RunOutput {
    run_with_good_kernel(&["--disk", &format!("path={}{extra}", path_str(path))])
}

#[test]
fn disk_image_is_accepted_and_a_read_only_one_shared() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let img = dir.write("disk.img", &[0u8; 4096]);
    let out = run_with_disk(&img, ",serial=pv-serial,id=root,direct=off");
    out.assert_guest_reset();
    out.assert_stdout_contains("ok");
    let p = format!("path={},readonly=on", path_str(&img));
    let out = run_with_good_kernel(&["--disk", &p, "--disk", &p, "--rng"]);
    out.assert_guest_reset();
}

#[test]
fn disk_missing_directory_fifo_and_odd_size() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let missing = dir.path().join("missing.img");
    run_with_disk(&missing, "").assert_clean_error(CONFIG, &["--disk", "missing.img"]);
    run_with_disk(dir.path(), "").assert_clean_error(CONFIG, &["--disk", "directory"]);
    let odd = dir.write("odd.img", &[0u8; 1000]);
    run_with_disk(&odd, "").assert_clean_error(CONFIG, &["--disk", "odd.img", "512"]);
    let fifo = dir.path().join("disk.fifo");
    mkfifo(&fifo);
    let out = Polyvisor::new()
        .args(["run", "--kernel", path_str(&good_kernel(&dir))])
        .args(["--disk", &format!("path={}", path_str(&fifo))])
        .timeout(AT_ONCE)
        .run();
    out.assert_clean_error(CONFIG, &["--disk", "disk.fifo", "FIFO"]);
    run_with_disk(std::path::Path::new("/dev/null"), "")
        .assert_clean_error(CONFIG, &["--disk", "/dev/null", "character device"]);
}

#[test]
fn disk_without_permission() {
    polyvisor_tests::require_kvm!();
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let img = dir.write("locked-up.img", &[0u8; 512]);
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&img).is_ok() {
        // Root reads any file: ask as nobody (the disk is opened before the kernel and
        // /dev/kvm, so nothing else needs root).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(polyvisor_tests::runner::polyvisor_bin())
            .args(["run", "--kernel", "/nonexistent-kernel"])
            .args(["--disk", &format!("path={}", path_str(&img))])
            .output()
            .expect("setpriv (util-linux)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("--disk")
                && stderr.contains("locked-up.img")
                && stderr.contains("ermission"),
            "{stderr}"
        );
        return;
    }
    run_with_disk(&img, "").assert_clean_error(CONFIG, &["--disk", "locked-up.img", "ermission"]);
}

/// Take an OFD lock on all of `file` (what another VMM holds); false when it is taken.
fn ofd_lock(file: &std::fs::File, write: bool) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero bytes are a valid flock (integers only).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if write { libc::F_WRLCK } else { libc::F_RDLCK } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_OFD_SETLK reads the flock, a local that lives across the call.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) == 0 }
}

#[test]
fn disk_locked_by_another_process() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let img = dir.write("shared.img", &[0u8; 4096]);
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    // A reader elsewhere: writers are refused, readers are not.
    assert!(ofd_lock(&holder, false));
    run_with_disk(&img, "").assert_clean_error(CONFIG, &["--disk", "shared.img", "locked"]);
    run_with_disk(&img, ",readonly=on").assert_guest_reset();
    // A writer elsewhere: everyone is refused.
    assert!(ofd_lock(&holder, true));
    run_with_disk(&img, ",readonly=on")
        .assert_clean_error(CONFIG, &["--disk", "shared.img", "locked"]);
}

#[test]
fn disk_in_use_by_a_running_polyvisor() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let img = dir.write("busy.img", &[0u8; 4096]);
    let mut a = polyvisor_tests::guest::pvh_asm();
    polyvisor_tests::guest::halt_forever(&mut a);
    let spinner = dir.write("spin.elf", &polyvisor_tests::guest::pvh_kernel(a.finish()));
    let mut first = std::process::Command::new(polyvisor_tests::runner::polyvisor_bin())
        .args(["run", "--console", "off", "--kernel", path_str(&spinner)])
        .args(["--disk", &format!("path={}", path_str(&img))])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until the first one holds the image: a read lock is refused then.
    let probe = std::fs::File::open(&img).unwrap();
    let start = std::time::Instant::now();
    while ofd_lock(&probe, false) {
        unlock(&probe);
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first polyvisor ended"
        );
        assert!(
            start.elapsed() < AT_ONCE,
            "the first polyvisor never locked the image"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = run_with_disk(&img, ",readonly=on");
    let _ = first.kill();
    let _ = first.wait();
    out.assert_clean_error(CONFIG, &["--disk", "busy.img", "locked"]);
}

fn unlock(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: as in ofd_lock.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_UNLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: as in ofd_lock.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
}

#[test]
fn disk_same_image_twice_read_write() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let img = dir.write("twice.img", &[0u8; 4096]);
    let other = dir.path().join("other-name.img");
    std::fs::hard_link(&img, &other).unwrap();
    let out = run_with_good_kernel(&[
        "--disk",
        &format!("path={}", path_str(&img)),
        "--disk",
        &format!("path={},readonly=on", path_str(&other)),
    ]);
    out.assert_clean_error(CONFIG, &["--disk", "other-name.img", "same image"]);
}

#[test]
fn more_disks_than_virtio_mmio_slots() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let mut args = Vec::new();
    for i in 0..9 {
        let img = dir.write(&format!("d{i}.img"), &[0u8; 512]);
        args.push("--disk".to_string());
        args.push(format!("path={}", path_str(&img)));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_with_good_kernel(&args).assert_clean_error(CONFIG, &["--disk", "d8.img", "at most 8"]);
    // Eight fit.
    run_with_good_kernel(&args[..16]).assert_guest_reset();
}

#[test]
fn disk_bad_values() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let img = dir.write("v.img", &[0u8; 512]);
    for (extra, needle) in [
        (",color=red", "color"),
        (",serial=", "serial"),
        (",serial=123456789012345678901", "1 to 20"),
        (",readonly=maybe", "readonly"),
        (",direct=2", "direct"),
        (",id=", "id="),
    ] {
        run_with_disk(&img, extra).assert_clean_error(CONFIG, &["--disk", needle]);
    }
    run_with_good_kernel(&["--disk", "readonly=on"])
        .assert_clean_error(CONFIG, &["--disk", "path="]);
}
