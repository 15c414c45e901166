// SPDX-License-Identifier: Apache-2.0
//! The hotplug calls (`vm.add-disk`, `vm.add-net`, `vm.add-vsock`, `vm.remove-device`) on
//! x86_64, whose virtio-mmio cannot announce a device to a running guest: under the
//! default `--seccomp true`, a well-formed request opens the device's host side on the main
//! thread, reaches the backend's refusal and is answered 501 with its reason, the process
//! alive and the host side closed again; bad requests are answered 400/404 as Cloud
//! Hypervisor answers them, and a VM created and not booted takes devices into its
//! configuration (204), as Cloud Hypervisor's does. (Plugging in for real is s390x virtio-ccw's, tested with its
//! backend.)
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

mod api_common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use api_common::{call, get, put, Vmm};
use polyvisor_tests::{Polyvisor, TempDir};
use serde_json::json;

/// Take an OFD write lock on `file` (as another VMM holding the image would).
fn lock(file: &std::fs::File) {
    // SAFETY: all-zero bytes are a valid `flock` (integers only).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_OFD_SETLK reads one `struct flock` through the pointer, which lives for the
    // call; the fd is open.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn hotplug_reaches_the_backend_under_seccomp_and_answers_as_cloud_hypervisor() {
    let images = TempDir::new();
    let boot = images.write("boot.img", &[0u8; 4096]);
    let data = images.write("data.img", &[0u8; 4096]);
    let busy = images.write("busy.img", &[0u8; 4096]);
    let boot_disk = format!("path={},id=root", boot.display());
    let Some(mut vmm) = Vmm::start(&["--seccomp", "true", "--disk", &boot_disk]) else {
        return;
    };
    let sock = vmm.socket.clone();
    let add = |name: &str, body: &str| call(&sock, "PUT", name, Some(body));

    // Well-formed: the image is opened and locked on the main thread (under its filter),
    // the device built and offered to the backend, which refuses: 501 with its reason.
    let disk = json!({"path": data, "readonly": false}).to_string();
    let r = add("vm.add-disk", &disk);
    assert_eq!(r.status, 501, "{r:?}\n{}", vmm.stderr());
    let why = r.error();
    assert!(
        why.contains("virtio-mmio cannot announce a device to a running guest"),
        "{why}"
    );
    assert_eq!(vmm.state(), "Running", "the VMM lives on: {}", vmm.stderr());
    // The image was closed again (its lock released): the same call, the same answer.
    assert_eq!(add("vm.add-disk", &disk).status, 501);
    // Paused: the same path (Cloud Hypervisor plugs into a paused VM too).
    assert_eq!(put(&sock, "vm.pause").status, 204);
    assert_eq!(add("vm.add-disk", &disk).status, 501);
    assert_eq!(put(&sock, "vm.resume").status, 204);
    // A vsock: its socket is bound, then removed again with the refused device.
    let vsock_path = images.path().join("v.sock");
    let vsock = json!({"cid": 3, "socket": vsock_path}).to_string();
    let r = add("vm.add-vsock", &vsock);
    assert_eq!(r.status, 501, "{r:?}");
    assert!(!vsock_path.exists());

    // Bad requests, before anything is opened: 400 naming the field.
    let refused = |name: &str, body: &str, status: u16, needle: &str| {
        let r = add(name, body);
        assert_eq!(r.status, status, "{name} {body}: {r:?}");
        let why = r.error();
        assert!(why.contains(needle), "{name} {body}: {why}");
    };
    refused("vm.add-disk", "{\"path\":", 400, "not valid JSON");
    refused("vm.add-disk", "{}", 400, "DiskConfig.path: required");
    let unknown = json!({"path": data, "vhost_user": true}).to_string();
    refused("vm.add-disk", &unknown, 400, "DiskConfig.vhost_user");
    let taken = json!({"path": data, "id": "root"}).to_string();
    refused("vm.add-disk", &taken, 400, "id=root");
    let again = json!({"path": boot}).to_string();
    refused("vm.add-disk", &again, 400, "boot.img");
    // An image another process holds locked: 400 naming it.
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&busy)
        .unwrap();
    lock(&holder);
    let locked = json!({"path": busy}).to_string();
    refused("vm.add-disk", &locked, 400, "busy.img");
    refused("vm.add-net", "{\"tap\":\"a/b\"}", 400, "--net tap=a/b");
    refused("vm.add-vsock", "{\"cid\":3}", 400, "VsockConfig.socket");
    // Removing: unknown ids are 404 (as Cloud Hypervisor), boot-time devices 501.
    refused("vm.remove-device", "{\"id\":\"nope\"}", 404, "nope");
    refused(
        "vm.remove-device",
        "{\"id\":\"root\"}",
        501,
        "attached at boot",
    );
    refused(
        "vm.remove-device",
        "{\"ID\":\"root\"}",
        400,
        "VmRemoveDevice.ID",
    );

    // vm.info: nothing was added.
    let info = get(&sock, "vm.info").json();
    assert_eq!(info["config"]["disks"].as_array().map(Vec::len), Some(1));
    assert_eq!(info["config"]["disks"][0]["id"], "root");
    assert!(info["config"]["vsock"].is_null(), "{info}");

    // `polyvisor remote`, in ch-remote's style.
    let remote = |args: &[&str]| {
        Polyvisor::new()
            .arg("remote")
            .arg("--api-socket")
            .arg(&sock)
            .args(args)
            .timeout(Duration::from_secs(30))
            .run()
    };
    let path = format!("path={},readonly=on", data.display());
    remote(&["add-disk", &path]).assert_clean_error(&[1], &["vm.add-disk: 501", "virtio-mmio"]);
    remote(&["add-disk", "readonly=on"]).assert_clean_error(&[2], &["path= is required"]);
    remote(&["remove-device", "nope"]).assert_clean_error(&[1], &["404"]);
    remote(&["add-net"]).assert_clean_error(&[2], &["needs tap="]);

    // The sandbox never killed the process: it ends as asked.
    assert_eq!(put(&sock, "vmm.shutdown").status, 204);
    assert_eq!(vmm.wait(Duration::from_secs(30)), Some(0));
    let stderr = vmm.stderr();
    assert!(!stderr.contains("seccomp"), "{stderr}");
}

/// A tap plugged in: created and addressed on the main thread under its filter (inside a
/// network namespace of the test's own, so no host interface is touched), then refused by
/// the backend and closed again.
#[test]
fn a_tap_is_opened_under_seccomp_and_released_after_the_refusal() {
    if !polyvisor_tests::runner::can_unshare_net("a_tap_is_opened_under_seccomp") {
        return;
    }
    let Some(mut vmm) = Vmm::start_under(&["unshare", "--net"], &["--seccomp", "true"]) else {
        return;
    };
    let net = json!({"tap": "pvhp0", "ip": "192.168.77.1", "mask": "255.255.255.0"}).to_string();
    for _ in 0..2 {
        // Twice: the tap was let go after the first refusal (else: busy).
        let r = call(&vmm.socket, "PUT", "vm.add-net", Some(&net));
        assert_eq!(r.status, 501, "{r:?}\n{}", vmm.stderr());
        assert!(r.error().contains("virtio-mmio"), "{r:?}");
    }
    assert_eq!(vmm.state(), "Running");
    assert_eq!(put(&vmm.socket, "vmm.shutdown").status, 204);
    assert_eq!(vmm.wait(Duration::from_secs(30)), Some(0));
}

#[test]
fn a_created_vm_takes_devices_into_its_configuration() {
    if !polyvisor_tests::runner::kvm_available(file!()) {
        return;
    }
    let vmm = Vmm::start_empty();
    let images = TempDir::new();
    let data = images.write("data.img", &[0u8; 4096]);
    let disk = json!({"path": data}).to_string();
    let add = || call(&vmm.socket, "PUT", "vm.add-disk", Some(&disk));
    let remove = |id: &str| {
        let body = json!({ "id": id }).to_string();
        call(&vmm.socket, "PUT", "vm.remove-device", Some(&body))
    };
    assert_eq!(add().status, 404, "no VM");
    assert_eq!(remove("x").status, 404, "no VM");
    let created = call(
        &vmm.socket,
        "PUT",
        "vm.create",
        Some(&vmm.counting_vm_config()),
    );
    assert_eq!(created.status, 204, "{created:?}");
    // As in Cloud Hypervisor: created, not booted, the device joins the configuration
    // (204, nothing opened yet) with its id, and leaves it by id.
    let r = add();
    assert_eq!(r.status, 204, "created, not running: {r:?}");
    let info = get(&vmm.socket, "vm.info").json();
    assert_eq!(info["config"]["disks"][0]["id"], "_disk0", "{info}");
    let r = add();
    assert_eq!(r.status, 400, "the same image twice: {r:?}");
    assert!(r.error().contains("--disk"), "{r:?}");
    assert_eq!(remove("x").status, 404);
    assert_eq!(remove("_disk0").status, 204);
    let info = get(&vmm.socket, "vm.info").json();
    assert!(
        info["config"]["disks"]
            .as_array()
            .is_none_or(|d| d.is_empty()),
        "{info}"
    );
    // Added again, it is there when the VM boots.
    assert_eq!(add().status, 204);
    assert_eq!(put(&vmm.socket, "vm.boot").status, 204);
    assert_eq!(vmm.state(), "Running");
    let info = get(&vmm.socket, "vm.info").json();
    assert_eq!(info["config"]["disks"][0]["id"], "_disk0", "{info}");
    assert!(
        vmm.stderr().contains("virtio-blk") || info["config"]["disks"][0]["path"] == json!(data),
        "{info}"
    );
    assert_eq!(put(&vmm.socket, "vmm.shutdown").status, 204);
}
