// SPDX-License-Identifier: Apache-2.0
use super::*;
use serde_json::json;

fn args(v: Value) -> Vec<String> {
    to_args(&v).unwrap()
}

fn refused(v: Value) -> FieldError {
    to_args(&v).unwrap_err()
}

/// Cloud Hypervisor's docs/api.md, "Create a Virtual Machine", unchanged.
const CH_DOCS_CREATE: &str = r#"{
         "cpus":{"boot_vcpus": 4, "max_vcpus": 4},
         "payload":{"kernel":"/opt/clh/kernel/vmlinux-virtio-fs-virtio-iommu", "cmdline":"console=ttyS0 console=hvc0 root=/dev/vda1 rw"},
         "disks":[{"path":"/opt/clh/images/focal-server-cloudimg-amd64.raw"}],
         "rng":{"src":"/dev/urandom"},
         "net":[{"ip":"192.168.10.10", "mask":"255.255.255.0", "mac":"12:34:56:78:90:01"}]
         }"#;

#[test]
fn cloud_hypervisor_documented_body_becomes_flags() {
    let v: Value = serde_json::from_str(CH_DOCS_CREATE).unwrap();
    assert_eq!(
        args(v.clone()),
        [
            "--kernel",
            "/opt/clh/kernel/vmlinux-virtio-fs-virtio-iommu",
            "--cmdline",
            "console=ttyS0 console=hvc0 root=/dev/vda1 rw",
            "--cpus",
            "4",
            "--disk",
            "path=/opt/clh/images/focal-server-cloudimg-amd64.raw",
            "--net",
            "tap=pvtap0,mac=12:34:56:78:90:01,ip=192.168.10.10,mask=255.255.255.0",
            "--rng",
        ]
    );
    let c = to_config(&v).unwrap();
    assert_eq!(c.cpus, 4);
    assert!(c.rng);
    assert_eq!(c.disks.len(), 1);
    assert_eq!(c.nets[0].tap, "pvtap0");
}

#[test]
fn every_honoured_field_and_defaults() {
    let v = json!({
        "payload": {"kernel": "/k", "initramfs": "/i", "cmdline": "quiet"},
        "cpus": {"boot_vcpus": 2, "max_vcpus": 2, "kvm_hyperv": false, "max_phys_bits": 46},
        "memory": {"size": 268435456u64, "mergeable": false, "thp": true, "hotplug_method": "Acpi"},
        "disks": [{"path": "/d", "readonly": true, "direct": true, "serial": "s1", "id": "d0",
                   "num_queues": 1, "queue_size": 128, "iommu": false}],
        "vsock": {"cid": 3, "socket": "/tmp/v.sock", "id": "v0"},
        "serial": {"mode": "File", "file": "/tmp/console.log"},
        "console": {"mode": "Off"},
        "iommu": false, "watchdog": false, "pvpanic": false, "devices": [], "balloon": null
    });
    let c = to_config(&v).unwrap();
    assert_eq!(c.kernel, std::path::Path::new("/k"));
    assert_eq!(c.initrd.as_deref(), Some(std::path::Path::new("/i")));
    assert_eq!(c.cmdline, "quiet");
    assert_eq!((c.cpus, c.memory_bytes), (2, 256 << 20));
    let d = &c.disks[0];
    assert!(d.readonly && d.direct);
    assert_eq!(
        (d.serial.as_deref(), d.id.as_deref()),
        (Some("s1"), Some("d0"))
    );
    assert_eq!(c.vsock.as_ref().map(|v| v.cid), Some(3));
    assert!(matches!(c.console, crate::config::ConsoleMode::File { .. }));
    // The output of vm.info reads back as the same configuration.
    assert_eq!(to_config(&super::super::vm_config::to_json(&c)).unwrap(), c);
}

#[test]
fn what_polyvisor_cannot_do_is_refused_naming_the_field() {
    let base = |extra: Value| {
        let mut v = json!({"payload": {"kernel": "/k"}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let field = |v: Value| refused(v).field;
    assert_eq!(field(json!({})), "payload");
    assert_eq!(field(json!({"payload": {}})), "payload.kernel");
    assert_eq!(
        field(json!({"payload": {"kernel": "/k", "firmware": "/f"}})),
        "payload.firmware"
    );
    assert_eq!(
        field(base(json!({"cpus": {"boot_vcpus": 1, "max_vcpus": 2}}))),
        "cpus.max_vcpus"
    );
    assert_eq!(
        field(base(json!({"memory": {"size": 1, "hugepages": true}}))),
        "memory.hugepages"
    );
    assert_eq!(
        field(base(json!({"disks": [{"path": "/d", "num_queues": 4}]}))),
        "disks[0].num_queues"
    );
    assert_eq!(
        field(base(json!({"disks": [{"readonly": true}]}))),
        "disks[0].path"
    );
    assert_eq!(
        field(base(json!({"disks": [{"path": "/a,b"}]}))),
        "disks[0].path"
    );
    assert_eq!(
        field(base(json!({"net": [{"tap": "t", "mtu": 9000}]}))),
        "net[0].mtu"
    );
    assert_eq!(
        field(base(json!({"rng": {"src": "/dev/random"}}))),
        "rng.src"
    );
    assert_eq!(
        field(base(json!({"serial": {"mode": "Pty"}}))),
        "serial.mode"
    );
    assert_eq!(
        field(base(json!({"console": {"mode": "Tty"}}))),
        "console.mode"
    );
    assert_eq!(
        field(base(json!({"fs": [{"tag": "t", "socket": "/s"}]}))),
        "fs"
    );
    assert_eq!(
        field(base(json!({"cpus": {"boot_vcpus": "two"}}))),
        "cpus.boot_vcpus"
    );
    assert_eq!(field(json!([1])), "");
    // Values the flags' parsers refuse come back naming the VmConfig field.
    let e = to_config(&base(json!({"memory": {"size": 4097}}))).unwrap_err();
    assert!(e.starts_with("memory.size"), "{e}");
    let e = to_config(&base(json!({"cpus": {"boot_vcpus": 0}}))).unwrap_err();
    assert!(e.contains("--cpus"), "{e}");
}
