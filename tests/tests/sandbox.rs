// SPDX-License-Identifier: Apache-2.0
//! `--seccomp`: with the default every thread of a running polyvisor has a seccomp filter
//! (`Seccomp: 2` in /proc/PID/task/*/status) and `no_new_privs`; with `false` none has a
//! filter but `no_new_privs` stays. The guest brings its virtio device (rng, or a disk)
//! up first, so the device's worker thread (`virtio-rng`, `virtio-blk`, started on
//! DRIVER_OK) is among the threads checked. Guest RAM is kept out of core dumps (`dd` in its mapping's VmFlags). (The
//! sandbox crate's own tests show a forbidden call from a vCPU-filtered thread killing the
//! process.)
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use polyvisor_tests::guest::{print, pvh_asm, pvh_kernel};
use polyvisor_tests::runner::{polyvisor_bin, Polyvisor};
use polyvisor_tests::virtio_mmio::{drive_to_ready, GUEST_QUEUE};
use polyvisor_tests::TempDir;

/// Guest RAM: a size no other mapping of the process has (glibc's thread arenas reserve
/// 64 MiB), so its mapping is found by size in /proc/PID/smaps.
const MEMORY_MIB: u64 = 80;

/// A guest that activates the virtio device in slot 0 (`--rng`, or `--disk` alone: which
/// starts the device's worker thread), says it is running, then spins forever.
fn spinning_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    drive_to_ready(&mut a, &GUEST_QUEUE, &mut |_, _, _| {});
    print(&mut a, "spinning\n");
    let top = a.here_label();
    a.jmp_short(top);
    pvh_kernel(a.finish())
}

/// (thread name, Seccomp, NoNewPrivs) of every thread of a polyvisor running the spinning
/// guest on 2 vCPUs with `extra` flags (its device among them), stdin a pipe (read by the
/// main thread's loop).
fn threads_of_a_running_guest(extra: &[&str], expected: &[&str]) -> Vec<(String, String, String)> {
    a_running_guest(extra, expected).0
}

/// The threads (as [`threads_of_a_running_guest`]) and /proc/PID/smaps of a polyvisor
/// running the spinning guest, once the threads named `expected` run (or after 10 s).
fn a_running_guest(extra: &[&str], expected: &[&str]) -> (Vec<(String, String, String)>, String) {
    let dir = TempDir::new();
    let kernel = dir.write("guest.elf", &spinning_guest());
    let memory = format!("{MEMORY_MIB}M");
    let mut child = Command::new(polyvisor_bin())
        .args(["run", "--cpus", "2", "--memory", &memory])
        .args(extra)
        .arg("--kernel")
        .arg(&kernel)
        .env_remove("POLYVISOR_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting polyvisor");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // vcpu1 starts after vcpu0 ran the guest's first line, the worker on the guest's
    // DRIVER_OK, and a thread names itself once running: wait until all are there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let tasks = loop {
        let tasks = tasks_of(child.id());
        if names(&tasks) == expected || std::time::Instant::now() > deadline {
            break tasks;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line, "spinning\n", "the guest did not start");
    (tasks, smaps)
}

/// (Name, Seccomp, NoNewPrivs) of each task of process `pid`.
fn tasks_of(pid: u32) -> Vec<(String, String, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let status = std::fs::read_to_string(e.ok()?.path().join("status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        Some((field("Name:"), field("Seccomp:"), field("NoNewPrivs:")))
    })
    .collect()
}

/// The threads polyvisor starts for this guest (the main thread keeps the binary's name and
/// reads console input on its event loop; `virtio-rng` is the device's queue worker).
const EXPECTED: [&str; 5] = ["console-out", "polyvisor", "vcpu0", "vcpu1", "virtio-rng"];

/// The sorted names of polyvisor's own threads: KVM's kernel workers that newer kernels put
/// in the VM's process (`kvm-nx-lpage-recovery`) are left out here but checked with the
/// rest (they inherit the creating thread's filter).
fn names(tasks: &[(String, String, String)]) -> Vec<&str> {
    let mut n: Vec<&str> = tasks
        .iter()
        .map(|t| t.0.as_str())
        .filter(|n| !n.starts_with("kvm-"))
        .collect();
    n.sort_unstable();
    n
}

/// Every task has its seccomp filter and `no_new_privs`.
fn assert_all_filtered(tasks: &[(String, String, String)]) {
    for (name, seccomp, nnp) in tasks {
        assert_eq!(seccomp, "2", "{name} has no seccomp filter: {tasks:?}");
        assert_eq!(nnp, "1", "{name} lacks no_new_privs: {tasks:?}");
    }
}

#[test]
fn by_default_every_thread_is_filtered_and_has_no_new_privs() {
    polyvisor_tests::require_kvm!();
    let tasks = threads_of_a_running_guest(&["--rng"], &EXPECTED);
    assert_eq!(names(&tasks), EXPECTED, "{tasks:?}");
    assert_all_filtered(&tasks);
}

#[test]
fn a_disk_workers_thread_is_filtered_too() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let img = dir.write("disk.img", &vec![0u8; 64 << 10]);
    let disk = format!("path={}", img.display());
    let expected = ["console-out", "polyvisor", "vcpu0", "vcpu1", "virtio-blk"];
    let tasks = threads_of_a_running_guest(&["--disk", &disk], &expected);
    assert_eq!(names(&tasks), expected, "{tasks:?}");
    assert_all_filtered(&tasks);
}

#[test]
fn with_the_management_api_its_thread_is_filtered_too() {
    polyvisor_tests::require_kvm!();
    let sock = std::env::temp_dir().join(format!("pv-sandbox-api-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let expected = [
        "api",
        "console-out",
        "polyvisor",
        "vcpu0",
        "vcpu1",
        "virtio-rng",
    ];
    let tasks = threads_of_a_running_guest(
        &["--rng", "--api-socket", sock.to_str().unwrap()],
        &expected,
    );
    let _ = std::fs::remove_file(&sock);
    assert_eq!(names(&tasks), expected, "{tasks:?}");
    assert_all_filtered(&tasks);
}

/// The VmFlags of each mapping of `smaps` whose Size is `kib` KiB.
fn vm_flags_of_mappings_sized(smaps: &str, kib: u64) -> Vec<String> {
    let size = format!("{kib} kB");
    let mut found = Vec::new();
    let mut this_size = false;
    for line in smaps.lines() {
        if let Some(v) = line.strip_prefix("Size:") {
            this_size = v.trim() == size;
        } else if let Some(v) = line.strip_prefix("VmFlags:") {
            if this_size {
                found.push(v.trim().to_string());
            }
            this_size = false;
        }
    }
    found
}

#[test]
fn guest_ram_is_kept_out_of_core_dumps() {
    polyvisor_tests::require_kvm!();
    let (_, smaps) = a_running_guest(&["--rng"], &EXPECTED);
    // Without MADV_DONTDUMP the kernel may also merge guest RAM into a neighbouring
    // anonymous mapping: then no mapping has its size, which fails here as well.
    let ram = vm_flags_of_mappings_sized(&smaps, MEMORY_MIB * 1024);
    let dont_dump = ram
        .iter()
        .filter(|flags| flags.split_whitespace().any(|f| f == "dd"))
        .count();
    assert_eq!(
        (ram.len(), dont_dump),
        (1, 1),
        "one {MEMORY_MIB} MiB mapping (guest RAM) with dd (MADV_DONTDUMP) in its VmFlags: \
         {ram:?}\n{smaps}"
    );
}

#[test]
fn log_mode_filters_too() {
    polyvisor_tests::require_kvm!();
    let tasks = threads_of_a_running_guest(&["--rng", "--seccomp", "log"], &EXPECTED);
    assert_eq!(names(&tasks), EXPECTED, "{tasks:?}");
    assert!(tasks.iter().all(|t| t.1 == "2" && t.2 == "1"), "{tasks:?}");
}

#[test]
fn seccomp_false_installs_no_filter_but_keeps_no_new_privs() {
    polyvisor_tests::require_kvm!();
    let tasks = threads_of_a_running_guest(&["--rng", "--seccomp", "false"], &EXPECTED);
    assert_eq!(names(&tasks), EXPECTED, "{tasks:?}");
    assert!(tasks.iter().all(|t| t.1 == "0" && t.2 == "1"), "{tasks:?}");
}

#[test]
fn a_bad_mode_is_one_line_naming_the_flag() {
    let out = Polyvisor::new()
        .args(["run", "--kernel", "/nonexistent", "--seccomp", "maybe"])
        .run();
    out.assert_clean_error(&[2], &["--seccomp", "maybe"]);
}
