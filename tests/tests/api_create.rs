// SPDX-License-Identifier: Apache-2.0
//! `polyvisor --api-socket PATH`: the VMM with no VM, a guest made with `vm.create` (Cloud
//! Hypervisor's `VmConfig`) and started with `vm.boot`; refused configurations name the
//! field; a failed boot is answered and the VMM serves on.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

mod api_common;

use std::time::Duration;

use api_common::{call, get, put, Vmm};

fn create(vmm: &Vmm, body: &str) -> api_common::Answer {
    call(&vmm.socket, "PUT", "vm.create", Some(body))
}

#[test]
fn create_boot_and_run_a_guest_from_a_vm_config() {
    if !polyvisor_tests::runner::kvm_available(file!()) {
        return;
    }
    let mut vmm = Vmm::start_empty();
    let sock = vmm.socket.clone();
    assert_eq!(get(&sock, "vmm.ping").status, 200);
    // Nothing created yet: 404 for the VM's calls.
    for (method, endpoint) in [
        ("GET", "vm.info"),
        ("PUT", "vm.boot"),
        ("PUT", "vm.pause"),
        ("GET", "vm.counters"),
        ("PUT", "vm.shutdown"),
    ] {
        let a = call(&sock, method, endpoint, None);
        assert_eq!(a.status, 404, "{endpoint}: {a:?}");
        assert!(a.error().contains("no VM"), "{a:?}");
    }
    // Refused configurations name the field; nothing is created.
    let bad = create(
        &vmm,
        r#"{"payload":{"kernel":"/k"},"memory":{"size":536870912,"hugepages":true}}"#,
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.error().contains("memory.hugepages"), "{bad:?}");
    let bad = create(&vmm, r#"{"cpus":{"boot_vcpus":2}}"#);
    assert!(bad.error().contains("payload"), "{bad:?}");
    let bad = create(
        &vmm,
        r#"{"payload":{"kernel":"/k"},"memory":{"size":1000}}"#,
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.error().contains("memory.size"), "{bad:?}");
    assert_eq!(create(&vmm, "{\"payload\":").status, 400);
    assert_eq!(call(&sock, "PUT", "vm.create", None).status, 400);
    assert_eq!(get(&sock, "vm.info").status, 404);

    // A kernel that is not there: created, but its boot fails, answered, and the VMM
    // serves on.
    let missing = r#"{"payload":{"kernel":"/nonexistent/vmlinux"},"memory":{"size":67108864}}"#;
    assert_eq!(create(&vmm, missing).status, 204);
    let boot = put(&sock, "vm.boot");
    assert_eq!(boot.status, 500, "{boot:?}");
    assert!(boot.error().contains("/nonexistent/vmlinux"), "{boot:?}");
    assert_eq!(vmm.state(), "Created");
    assert_eq!(put(&sock, "vm.delete").status, 204);

    // The counting guest: created (a second create is refused), booted, steered, shut
    // down, deleted.
    let config = vmm.counting_vm_config();
    assert_eq!(create(&vmm, &config).status, 204);
    let twice = create(&vmm, &config);
    assert_eq!(twice.status, 405, "{twice:?}");
    assert_eq!(vmm.state(), "Created");
    let info = get(&sock, "vm.info").json();
    assert_eq!(info["config"]["memory"]["size"], 64u64 << 20);
    assert_eq!(info["config"]["serial"]["mode"], "File");
    assert_eq!(put(&sock, "vm.boot").status, 204);
    assert_eq!(vmm.state(), "Running");
    assert!(vmm.grows(0, Duration::from_secs(30)), "{}", vmm.stderr());
    assert_eq!(put(&sock, "vm.pause").status, 204);
    let frozen = vmm.settled_size();
    assert!(!vmm.grows(frozen, Duration::from_millis(500)));
    assert_eq!(put(&sock, "vm.resume").status, 204);
    assert!(vmm.grows(frozen, Duration::from_secs(10)));
    // A paused VM shuts down as promptly.
    assert_eq!(put(&sock, "vm.pause").status, 204);
    let t0 = std::time::Instant::now();
    assert_eq!(put(&sock, "vm.shutdown").status, 204);
    assert_eq!(vmm.state(), "Created");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(put(&sock, "vm.delete").status, 204);
    assert_eq!(get(&sock, "vm.info").status, 404);
    assert_eq!(put(&sock, "vmm.shutdown").status, 204);
    assert_eq!(
        vmm.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        vmm.stderr()
    );
    assert!(!sock.exists());
}

/// Cloud Hypervisor's docs/api.md, "Create a Virtual Machine", body unchanged: accepted
/// (its files are not on this host, so it is deleted rather than booted).
#[test]
fn cloud_hypervisor_documented_vm_create_body_is_accepted() {
    let mut vmm = Vmm::start_empty();
    let body = r#"{
         "cpus":{"boot_vcpus": 4, "max_vcpus": 4},
         "payload":{"kernel":"/opt/clh/kernel/vmlinux-virtio-fs-virtio-iommu", "cmdline":"console=ttyS0 console=hvc0 root=/dev/vda1 rw"},
         "disks":[{"path":"/opt/clh/images/focal-server-cloudimg-amd64.raw"}],
         "rng":{"src":"/dev/urandom"},
         "net":[{"ip":"192.168.10.10", "mask":"255.255.255.0", "mac":"12:34:56:78:90:01"}]
         }"#;
    let a = create(&vmm, body);
    assert_eq!(a.status, 204, "{a:?}");
    let info = get(&vmm.socket, "vm.info");
    assert_eq!(info.status, 200, "{info:?}; stderr:\n{}", vmm.stderr());
    let info = info.json();
    assert_eq!(info["state"], "Created");
    assert_eq!(info["config"]["cpus"]["boot_vcpus"], 4);
    assert_eq!(info["config"]["net"][0]["mac"], "12:34:56:78:90:01");
    assert_eq!(info["config"]["rng"]["src"], "/dev/urandom");
    assert_eq!(put(&vmm.socket, "vm.delete").status, 204);
    assert_eq!(put(&vmm.socket, "vmm.shutdown").status, 204);
    assert_eq!(vmm.wait(Duration::from_secs(10)), Some(0));
}

#[test]
fn polyvisor_remote_creates_and_boots_from_a_file() {
    if !polyvisor_tests::runner::kvm_available(file!()) {
        return;
    }
    let mut vmm = Vmm::start_empty();
    let file = vmm
        .dir
        .write("vm.json", vmm.counting_vm_config().as_bytes());
    let remote = |args: &[&std::ffi::OsStr]| {
        polyvisor_tests::Polyvisor::new()
            .arg("remote")
            .arg("--api-socket")
            .arg(&vmm.socket)
            .args(args)
            .timeout(Duration::from_secs(30))
            .run()
    };
    remote(&["create".as_ref()]).assert_clean_error(&[2], &["create", "FILE"]);
    remote(&["ping".as_ref(), file.as_os_str()]).assert_clean_error(&[2], &["takes no argument"]);
    let created = remote(&["create".as_ref(), file.as_os_str()]);
    assert_eq!(created.code, Some(0), "{created}");
    assert_eq!(remote(&["boot".as_ref()]).code, Some(0));
    assert_eq!(vmm.state(), "Running");
    assert!(vmm.grows(0, Duration::from_secs(30)));
    assert_eq!(remote(&["shutdown-vmm".as_ref()]).code, Some(0));
    assert_eq!(vmm.wait(Duration::from_secs(10)), Some(0));
}
