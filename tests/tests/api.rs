// SPDX-License-Identifier: Apache-2.0
//! The management API (`polyvisor run --api-socket`) driven through its socket by a plain
//! HTTP client, as ch-remote or Kata would: a counting guest's whole lifecycle (ping, info,
//! counters, pause — the guest stops counting — resume, power button, reboot, shutdown,
//! boot again, delete, vmm.shutdown), `polyvisor remote`, the socket's rules at start, and
//! the requests of Cloud Hypervisor's own documentation.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

mod api_common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use api_common::{exchange, get, put, Vmm};
use polyvisor_tests::Polyvisor;

#[test]
fn a_guest_lifecycle_through_the_socket() {
    let Some(mut vmm) = Vmm::start(&[]) else {
        return;
    };
    let sock = vmm.socket.clone();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // vmm.ping: Cloud Hypervisor's VmmPingResponse.
    let ping = get(&sock, "vmm.ping");
    assert_eq!(ping.status, 200, "{ping:?}");
    assert!(
        ping.head.contains("Content-Type: application/json"),
        "{ping:?}"
    );
    let p = ping.json();
    assert_eq!(p["pid"], vmm.pid());
    assert!(
        p["version"].is_string() && p["build_version"].is_string(),
        "{p}"
    );
    assert!(p["features"].is_array(), "{p}");

    // vm.info: VmInfo with the configuration under Cloud Hypervisor's names.
    let info = get(&sock, "vm.info");
    assert_eq!(info.status, 200, "{info:?}");
    let i = info.json();
    assert_eq!(i["state"], "Running");
    assert_eq!(i["memory_actual_size"], 64u64 << 20);
    assert_eq!(i["config"]["cpus"]["boot_vcpus"], 1);
    assert_eq!(i["config"]["memory"]["size"], 64u64 << 20);
    assert!(
        i["config"]["payload"]["kernel"]
            .as_str()
            .unwrap()
            .ends_with("guest.elf"),
        "{i}"
    );
    assert_eq!(i["config"]["serial"]["mode"], "File");

    // vm.counters: per device, per counter.
    let counters = get(&sock, "vm.counters");
    assert_eq!(counters.status, 200, "{counters:?}");
    let c = counters.json();
    assert!(c["pio"]["unclaimed_accesses"].is_u64(), "{c}");
    assert!(c["mmio"]["unclaimed_accesses"].is_u64(), "{c}");
    // The guest counts on COM1: its vCPU has exited for port I/O, and keeps doing so.
    let pio = c["vcpu0"]["pio_exits"].as_u64().unwrap();
    assert!(pio > 0, "{c}");
    let t0 = std::time::Instant::now();
    while get(&sock, "vm.counters").json()["vcpu0"]["pio_exits"].as_u64() <= Some(pio) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "pio_exits stuck at {pio}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // vm.pause: the guest stops counting; a second pause is the wrong state (405).
    assert_eq!(put(&sock, "vm.pause").status, 204);
    assert_eq!(vmm.state(), "Paused");
    let again = put(&sock, "vm.pause");
    assert_eq!(again.status, 405, "{again:?}");
    assert!(again.error().contains("already paused"), "{again:?}");
    let frozen = vmm.settled_size();
    assert!(
        !vmm.grows(frozen, Duration::from_millis(500)),
        "the guest kept counting while paused"
    );
    // vm.resume: it goes on; resuming a running VM is 405.
    assert_eq!(put(&sock, "vm.resume").status, 204);
    assert!(
        vmm.grows(frozen, Duration::from_secs(10)),
        "the guest did not go on after resume"
    );
    assert_eq!(vmm.state(), "Running");
    let again = put(&sock, "vm.resume");
    assert_eq!(again.status, 405, "{again:?}");
    assert!(again.error().contains("already running"), "{again:?}");

    // vm.power-button: pressed (this guest has no driver and ignores it; it runs on).
    let press = put(&sock, "vm.power-button");
    assert_eq!(press.status, 204, "{press:?}");
    let size = vmm.console_size();
    assert!(vmm.grows(size, Duration::from_secs(10)));
    assert_eq!(vmm.state(), "Running");

    // vm.reboot: the guest starts again from its kernel (a second `ready`).
    assert_eq!(put(&sock, "vm.reboot").status, 204);
    let start = std::time::Instant::now();
    while vmm.console_text().matches("ready").count() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no second boot after vm.reboot; stderr:\n{}",
            vmm.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(vmm.state(), "Running");

    // vm.shutdown: the VM stops; its configuration stays (state Created); the VMM serves on.
    assert_eq!(put(&sock, "vm.shutdown").status, 204);
    assert_eq!(vmm.state(), "Created");
    let frozen = vmm.settled_size();
    assert!(!vmm.grows(frozen, Duration::from_millis(300)));
    for (endpoint, method) in [
        ("vm.pause", "PUT"),
        ("vm.resume", "PUT"),
        ("vm.power-button", "PUT"),
        ("vm.shutdown", "PUT"),
        ("vm.reboot", "PUT"),
        ("vm.counters", "GET"),
    ] {
        let a = api_common::call(&sock, method, endpoint, None);
        assert_eq!(a.status, 405, "{endpoint} on a shut-down VM: {a:?}");
        assert!(a.error().contains("not running"), "{a:?}");
    }
    // vm.boot: it runs again.
    assert_eq!(put(&sock, "vm.boot").status, 204);
    assert!(vmm.grows(frozen, Duration::from_secs(30)));
    assert_eq!(vmm.state(), "Running");
    let twice = put(&sock, "vm.boot");
    assert_eq!(twice.status, 405, "{twice:?}");

    // vm.delete (while running): stopped and forgotten; info and boot are 404.
    assert_eq!(put(&sock, "vm.delete").status, 204);
    let info = get(&sock, "vm.info");
    assert_eq!(info.status, 404, "{info:?}");
    assert!(info.error().contains("no VM"), "{info:?}");
    assert_eq!(put(&sock, "vm.boot").status, 404);
    assert_eq!(
        put(&sock, "vm.delete").status,
        204,
        "deleting nothing is fine"
    );
    assert_eq!(get(&sock, "vmm.ping").status, 200);

    // vmm.shutdown: the process ends, status 0, the socket is gone.
    assert_eq!(put(&sock, "vmm.shutdown").status, 204);
    assert_eq!(
        vmm.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        vmm.stderr()
    );
    assert!(!sock.exists(), "the socket was not removed");
    let err = vmm.stderr();
    assert!(err.contains("pressed the guest's"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_guest_reset_or_a_stop_signal_ends_the_vmm_as_without_the_api() {
    // SIGTERM with the API: stopped as without it (exit 128+15), socket removed.
    let Some(mut vmm) = Vmm::start(&[]) else {
        return;
    };
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(vmm.pid() as i32, libc::SIGTERM) };
    assert_eq!(vmm.wait(Duration::from_secs(10)), Some(128 + libc::SIGTERM));
    assert!(!vmm.socket.exists());
    // A guest that resets (without --on-reset restart) ends the run with the API too.
    let dir = polyvisor_tests::TempDir::new();
    let k = dir.write(
        "r.elf",
        &polyvisor_tests::guest::pvh_print_and_reset("ok\n"),
    );
    let sock = dir.path().join("a.sock");
    let out = Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&k)
        .arg("--api-socket")
        .arg(&sock)
        .run();
    out.assert_guest_reset();
    assert!(!sock.exists());
}

#[test]
fn the_socket_path_is_checked_at_start() {
    let dir = polyvisor_tests::TempDir::new();
    let k = dir.write(
        "r.elf",
        &polyvisor_tests::guest::pvh_print_and_reset("ok\n"),
    );
    let run = |sock: &std::path::Path| {
        Polyvisor::new()
            .arg("run")
            .arg("--kernel")
            .arg(&k)
            .arg("--api-socket")
            .arg(sock)
            .run()
    };
    // A regular file: refused, untouched, exit 2, one line naming the flag.
    let file = dir.write("file", b"keep");
    run(&file).assert_clean_error(&[2], &["--api-socket", "not a socket"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    // A missing directory.
    run(&dir.path().join("no/such.sock"))
        .assert_clean_error(&[2], &["--api-socket", "does not exist"]);
    // A socket someone listens on.
    let busy = dir.path().join("busy.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&busy).unwrap();
    run(&busy).assert_clean_error(&[2], &["--api-socket", "listens"]);
    // A stale socket (nobody listening) is replaced, then removed at exit.
    if polyvisor_tests::runner::kvm_available(file!()) {
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(std::fs::metadata(&stale).unwrap().file_type().is_socket());
        run(&stale).assert_guest_reset();
        assert!(!stale.exists());
    }
}

#[test]
fn polyvisor_remote_prints_answers_and_fails_in_one_line() {
    let Some(mut vmm) = Vmm::start(&[]) else {
        return;
    };
    let sock = vmm.socket.clone();
    let remote = |cmd: &str| {
        Polyvisor::new()
            .arg("remote")
            .arg("--api-socket")
            .arg(&sock)
            .arg(cmd)
            .timeout(Duration::from_secs(30))
            .run()
    };
    let ping = remote("ping");
    assert_eq!(ping.code, Some(0), "{ping}");
    let p: serde_json::Value = serde_json::from_str(ping.stdout.trim()).unwrap();
    assert_eq!(p["pid"], vmm.pid());
    let info = remote("info");
    assert_eq!(info.code, Some(0), "{info}");
    assert!(info.stdout.contains("\"state\":\"Running\""), "{info}");
    let counters = remote("counters");
    assert!(counters.stdout.contains("unclaimed_accesses"), "{counters}");
    let pause = remote("pause");
    assert_eq!(
        (pause.code, pause.stdout.as_str()),
        (Some(0), ""),
        "{pause}"
    );
    let again = remote("pause");
    again.assert_clean_error(&[1], &["vm.pause", "405", "already paused"]);
    assert_eq!(remote("resume").code, Some(0));
    assert_eq!(remote("power-button").code, Some(0));
    assert_eq!(remote("reboot").code, Some(0));
    assert_eq!(remote("shutdown").code, Some(0));
    remote("pause").assert_clean_error(&[1], &["405", "not running"]);
    assert_eq!(remote("boot").code, Some(0));
    assert_eq!(remote("delete").code, Some(0));
    remote("info").assert_clean_error(&[1], &["404"]);
    assert_eq!(remote("shutdown-vmm").code, Some(0));
    assert_eq!(vmm.wait(Duration::from_secs(10)), Some(0));
    // Nobody there now: one line naming the socket.
    remote("ping").assert_clean_error(&[1], &["--api-socket"]);
    let bad = Polyvisor::new()
        .args(["remote", "--api-socket", "/nonexistent", "frobnicate"])
        .run();
    bad.assert_clean_error(&[2], &["frobnicate"]);
}

/// The requests of Cloud Hypervisor's docs/api.md ("REST API Examples"), as curl sends
/// them (`curl --unix-socket /tmp/cloud-hypervisor.sock -i -X PUT
/// 'http://localhost/api/v1/vm.reboot'` and the like), byte for byte apart from curl's
/// version (its vm.create body on a VMM without a VM: api_create.rs).
#[test]
fn cloud_hypervisor_documented_requests_are_accepted_unchanged() {
    let Some(mut vmm) = Vmm::start(&[]) else {
        return;
    };
    let curl = |method: &str, endpoint: &str, extra: &str| {
        format!(
            "{method} /api/v1/{endpoint} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.14.1\r\nAccept: */*\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    // docs/api.md, "Dump Virtual Machine Information".
    let info = exchange(
        &vmm.socket,
        curl("GET", "vm.info", "Accept: application/json\r\n").as_bytes(),
    );
    assert_eq!(info.status, 200, "{info:?}");
    // docs/api.md, "Reboot a Virtual Machine" and "Shut a Virtual Machine Down", then
    // "Boot a Virtual Machine".
    for endpoint in ["vm.reboot", "vm.shutdown", "vm.boot"] {
        let a = exchange(&vmm.socket, curl("PUT", endpoint, "").as_bytes());
        assert_eq!(a.status, 204, "{endpoint}: {a:?}");
    }
    // docs/api.md, "Create a Virtual Machine": the body exactly as documented.
    let body = r#"{
         "cpus":{"boot_vcpus": 4, "max_vcpus": 4},
         "payload":{"kernel":"/opt/clh/kernel/vmlinux-virtio-fs-virtio-iommu", "cmdline":"console=ttyS0 console=hvc0 root=/dev/vda1 rw"},
         "disks":[{"path":"/opt/clh/images/focal-server-cloudimg-amd64.raw"}],
         "rng":{"src":"/dev/urandom"},
         "net":[{"ip":"192.168.10.10", "mask":"255.255.255.0", "mac":"12:34:56:78:90:01"}]
         }"#;
    let head = curl(
        "PUT",
        "vm.create",
        &format!(
            "Accept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ),
    );
    let create = exchange(&vmm.socket, format!("{head}{body}").as_bytes());
    // It is valid; this VMM already has a VM, so: wrong state.
    assert_eq!(create.status, 405, "{create:?}");
    assert!(create.error().contains("already created"), "{create:?}");
    assert_eq!(put(&vmm.socket, "vmm.shutdown").status, 204);
    assert_eq!(vmm.wait(Duration::from_secs(10)), Some(0));
}
