// SPDX-License-Identifier: Apache-2.0
//! A [`Config`] as Cloud Hypervisor's `VmConfig` JSON (what `vm.info` answers in its
//! `config`): the fields Polyvisor has, under Cloud Hypervisor's names.

use serde_json::{json, Map, Value};

use crate::config::{Config, ConsoleMode, DiskConfig, NetConfig, VsockConfig};

fn path(p: &std::path::Path) -> Value {
    Value::String(p.display().to_string())
}

/// `config` under Cloud Hypervisor's `VmConfig` field names.
pub fn to_json(config: &Config) -> Value {
    let mut payload = Map::new();
    payload.insert("kernel".into(), path(&config.kernel));
    payload.insert("cmdline".into(), Value::String(config.cmdline.clone()));
    if let Some(initrd) = &config.initrd {
        payload.insert("initramfs".into(), path(initrd));
    }
    let disks: Vec<Value> = config.disks.iter().map(disk_json).collect();
    let nets: Vec<Value> = config.nets.iter().map(net_json).collect();
    let serial = match &config.console {
        ConsoleMode::Tty => json!({ "mode": "Tty" }),
        ConsoleMode::File { path: p, .. } => json!({ "mode": "File", "file": path(p) }),
        ConsoleMode::Off => json!({ "mode": "Off" }),
    };
    let mut vm = Map::new();
    vm.insert(
        "cpus".into(),
        json!({ "boot_vcpus": config.cpus, "max_vcpus": config.cpus }),
    );
    vm.insert("memory".into(), json!({ "size": config.memory_bytes }));
    vm.insert("payload".into(), Value::Object(payload));
    if !disks.is_empty() {
        vm.insert("disks".into(), Value::Array(disks));
    }
    if !nets.is_empty() {
        vm.insert("net".into(), Value::Array(nets));
    }
    if config.rng {
        vm.insert("rng".into(), json!({ "src": "/dev/urandom" }));
    }
    if let Some(v) = &config.vsock {
        vm.insert("vsock".into(), vsock_json(v));
    }
    vm.insert("serial".into(), serial);
    // Polyvisor's console is the serial port (ttyS0, ttysclp0): no virtio-console.
    vm.insert("console".into(), json!({ "mode": "Off" }));
    Value::Object(vm)
}

/// A `--disk` as Cloud Hypervisor's `DiskConfig`.
pub fn disk_json(d: &DiskConfig) -> Value {
    let mut disk = Map::new();
    disk.insert("path".into(), path(&d.path));
    disk.insert("readonly".into(), Value::Bool(d.readonly));
    disk.insert("direct".into(), Value::Bool(d.direct));
    if let Some(serial) = &d.serial {
        disk.insert("serial".into(), Value::String(serial.clone()));
    }
    if let Some(id) = &d.id {
        disk.insert("id".into(), Value::String(id.clone()));
    }
    Value::Object(disk)
}

/// A `--net` as Cloud Hypervisor's `NetConfig`.
pub fn net_json(n: &NetConfig) -> Value {
    let mut net = Map::new();
    net.insert("tap".into(), Value::String(n.tap.clone()));
    if let Some(m) = n.mac {
        net.insert("mac".into(), Value::String(crate::nets::format_mac(m)));
    }
    if let Some((ip, mask)) = n.ip {
        net.insert("ip".into(), Value::String(ip.to_string()));
        net.insert("mask".into(), Value::String(mask.to_string()));
    }
    if let Some(id) = &n.id {
        net.insert("id".into(), Value::String(id.clone()));
    }
    Value::Object(net)
}

/// A `--vsock` as Cloud Hypervisor's `VsockConfig`.
pub fn vsock_json(v: &VsockConfig) -> Value {
    let mut vsock = Map::new();
    vsock.insert("cid".into(), json!(v.cid));
    vsock.insert("socket".into(), path(&v.socket));
    if let Some(id) = &v.id {
        vsock.insert("id".into(), Value::String(id.clone()));
    }
    Value::Object(vsock)
}
