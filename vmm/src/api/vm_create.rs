// SPDX-License-Identifier: Apache-2.0
//! Cloud Hypervisor's `VmConfig` JSON (the `vm.create` body, `run --config FILE`) taken in
//! as `polyvisor run` flags: each field Polyvisor honours becomes its flag, so the JSON goes
//! through the one validation path flags take (clap's parsers, `RunArgs::into_config`). A
//! field Polyvisor cannot honour is accepted only at its Cloud Hypervisor default (absent,
//! `null`, or the default value); anything else is refused naming the field.

use serde_json::{Map, Value};

/// A `VmConfig` field Polyvisor refuses, by its JSON path (`disks[0].iommu`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The fields of one object: takes the ones Polyvisor honours, checks the rest.
struct Fields<'a> {
    at: String,
    map: &'a Map<String, Value>,
    taken: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(at: &str, value: &'a Value) -> Result<Self, FieldError> {
        match value {
            Value::Object(map) => Ok(Self {
                at: at.to_string(),
                map,
                taken: Vec::new(),
            }),
            _ => Err(refuse(at, "expected an object")),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    /// A field Polyvisor honours, when present and not null.
    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.taken.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn string(&mut self, key: &'static str) -> Result<Option<String>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.contains(',') => Err(refuse(
                self.path(key),
                "a comma cannot be passed on to Polyvisor's option syntax",
            )),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(refuse(self.path(key), "expected a string")),
        }
    }

    fn bool(&mut self, key: &'static str) -> Result<bool, FieldError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(refuse(self.path(key), "expected true or false")),
        }
    }

    fn number(&mut self, key: &'static str) -> Result<Option<u64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| refuse(self.path(key), "expected a whole number")),
        }
    }

    /// Every other field must be at its Cloud Hypervisor default: absent, null, or one of
    /// `defaults` (key, value); false, an empty list and an empty object count as unset.
    fn rest_at_default(self, defaults: &[(&str, Value)]) -> Result<(), FieldError> {
        for (key, value) in self.map {
            if self.taken.contains(&key.as_str()) {
                continue;
            }
            let unset = match value {
                Value::Null | Value::Bool(false) => true,
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                _ => false,
            };
            let default = defaults.iter().any(|(k, d)| k == key && d == value);
            if !unset && !default {
                return Err(refuse(
                    self.path(key),
                    format!("{value} is not supported by Polyvisor (only its default)"),
                ));
            }
        }
        Ok(())
    }
}

fn list<'a>(at: &str, value: Option<&'a Value>) -> Result<&'a [Value], FieldError> {
    match value {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(refuse(at, "expected a list")),
    }
}

fn push(args: &mut Vec<String>, flag: &str, value: String) {
    args.push(flag.to_string());
    args.push(value);
}

/// `config` (a `VmConfig`) as `polyvisor run` arguments.
pub fn to_args(config: &Value) -> Result<Vec<String>, FieldError> {
    use serde_json::json;
    let mut args: Vec<String> = Vec::new();
    let mut vm = Fields::new("", config)?;

    let payload = vm
        .get("payload")
        .ok_or_else(|| refuse("payload", "required (payload.kernel names the kernel)"))?;
    let mut p = Fields::new("payload", payload)?;
    let kernel = p
        .string("kernel")?
        .ok_or_else(|| refuse("payload.kernel", "required"))?;
    push(&mut args, "--kernel", kernel);
    if let Some(cmdline) = p.get("cmdline") {
        let cmdline = cmdline
            .as_str()
            .ok_or_else(|| refuse("payload.cmdline", "expected a string"))?;
        push(&mut args, "--cmdline", cmdline.to_string());
    }
    if let Some(initrd) = p.string("initramfs")? {
        push(&mut args, "--initrd", initrd);
    }
    p.rest_at_default(&[])?;

    if let Some(cpus) = vm.get("cpus") {
        let mut c = Fields::new("cpus", cpus)?;
        let boot = c.number("boot_vcpus")?.unwrap_or(1);
        if let Some(max) = c.number("max_vcpus")? {
            if max != boot {
                return Err(refuse(
                    "cpus.max_vcpus",
                    "must equal cpus.boot_vcpus: Polyvisor has no CPU hotplug",
                ));
            }
        }
        push(&mut args, "--cpus", boot.to_string());
        c.rest_at_default(&[("max_phys_bits", json!(46)), ("nested", json!(true))])?;
    }
    if let Some(memory) = vm.get("memory") {
        let mut m = Fields::new("memory", memory)?;
        if let Some(size) = m.number("size")? {
            push(&mut args, "--memory", size.to_string());
        }
        m.rest_at_default(&[("hotplug_method", json!("Acpi")), ("thp", json!(true))])?;
    }

    for (i, disk) in list("disks", vm.get("disks"))?.iter().enumerate() {
        push(
            &mut args,
            "--disk",
            disk_option(&format!("disks[{i}]"), disk)?,
        );
    }
    for (i, net) in list("net", vm.get("net"))?.iter().enumerate() {
        // Without a tap, Cloud Hypervisor creates one; Polyvisor names it pvtapN.
        let value = net_option(&format!("net[{i}]"), net, || format!("pvtap{i}"))?;
        push(&mut args, "--net", value);
    }

    if let Some(rng) = vm.get("rng") {
        let mut r = Fields::new("rng", rng)?;
        match r.string("src")? {
            None => {}
            Some(src) if src == "/dev/urandom" => {}
            Some(src) => {
                return Err(refuse(
                    "rng.src",
                    format!("{src:?}: Polyvisor's virtio-rng reads /dev/urandom only"),
                ))
            }
        }
        r.rest_at_default(&[("pci_segment", json!(0))])?;
        args.push("--rng".into());
    }

    if let Some(vsock) = vm.get("vsock") {
        push(&mut args, "--vsock", vsock_option("vsock", vsock)?);
    }

    if let Some(serial) = vm.get("serial") {
        let mut s = Fields::new("serial", serial)?;
        let file = s.string("file")?;
        let mode = s.string("mode")?;
        let console = match (mode.as_deref(), file) {
            (Some("Tty") | None, None) => "tty".to_string(),
            (Some("Off" | "Null"), None) => "off".to_string(),
            (Some("File") | None, Some(f)) => format!("file={f}"),
            (Some(m), _) => {
                return Err(refuse(
                    "serial.mode",
                    format!("{m:?}: Polyvisor's serial console is Tty, File, Off or Null"),
                ))
            }
        };
        s.rest_at_default(&[])?;
        push(&mut args, "--console", console);
    }
    if let Some(console) = vm.get("console") {
        let mut c = Fields::new("console", console)?;
        match c.string("mode")?.as_deref() {
            None | Some("Off" | "Null") => {}
            Some(m) => {
                return Err(refuse(
                    "console.mode",
                    format!(
                        "{m:?}: Polyvisor has no virtio-console; its console is the serial \
                         port (serial.mode)"
                    ),
                ))
            }
        }
        c.rest_at_default(&[])?;
    }
    vm.rest_at_default(&[])?;
    Ok(args)
}

/// A `DiskConfig` object (at `at` in its document) as a `--disk` value.
pub fn disk_option(at: &str, disk: &Value) -> Result<String, FieldError> {
    use serde_json::json;
    let mut d = Fields::new(at, disk)?;
    let path = d
        .string("path")?
        .ok_or_else(|| refuse(format!("{at}.path"), "required"))?;
    let mut value = format!("path={path}");
    for key in ["readonly", "direct"] {
        if d.bool(key)? {
            value.push_str(&format!(",{key}=on"));
        }
    }
    for key in ["serial", "id"] {
        if let Some(v) = d.string(key)? {
            value.push_str(&format!(",{key}={v}"));
        }
    }
    d.rest_at_default(&[
        ("num_queues", json!(1)),
        ("queue_size", json!(128)),
        ("pci_segment", json!(0)),
        ("sparse", json!(true)),
        ("image_type", json!("Raw")),
    ])?;
    Ok(value)
}

/// A `NetConfig` object (at `at`) as a `--net` value; `default_tap` names the tap when
/// the object has none.
pub fn net_option(
    at: &str,
    net: &Value,
    default_tap: impl FnOnce() -> String,
) -> Result<String, FieldError> {
    use serde_json::json;
    let mut n = Fields::new(at, net)?;
    let tap = n.string("tap")?.unwrap_or_else(default_tap);
    let mut value = format!("tap={tap}");
    if let Some(mac) = n.string("mac")? {
        value.push_str(&format!(",mac={mac}"));
    }
    let mask = n.string("mask")?;
    if let Some(ip) = n.string("ip")? {
        let mask = mask.unwrap_or_else(|| "255.255.255.0".into());
        value.push_str(&format!(",ip={ip},mask={mask}"));
    } else if mask.is_some() {
        return Err(refuse(format!("{at}.mask"), "given without ip"));
    }
    if let Some(id) = n.string("id")? {
        value.push_str(&format!(",id={id}"));
    }
    n.rest_at_default(&[
        ("num_queues", json!(2)),
        ("queue_size", json!(256)),
        ("pci_segment", json!(0)),
        ("vhost_mode", json!("Client")),
        ("offload_tso", json!(true)),
        ("offload_ufo", json!(true)),
        ("offload_csum", json!(true)),
    ])?;
    Ok(value)
}

/// A `VsockConfig` object (at `at`) as a `--vsock` value.
pub fn vsock_option(at: &str, vsock: &Value) -> Result<String, FieldError> {
    use serde_json::json;
    let mut v = Fields::new(at, vsock)?;
    let cid = v
        .number("cid")?
        .ok_or_else(|| refuse(format!("{at}.cid"), "required"))?;
    let socket = v
        .string("socket")?
        .ok_or_else(|| refuse(format!("{at}.socket"), "required"))?;
    let mut value = format!("cid={cid},socket={socket}");
    if let Some(id) = v.string("id")? {
        value.push_str(&format!(",id={id}"));
    }
    v.rest_at_default(&[("pci_segment", json!(0))])?;
    Ok(value)
}

/// Why a `VmConfig` was refused: one line naming the field (its `VmConfig` path, or the
/// `polyvisor run` flag it became).
pub fn to_config(config: &Value) -> Result<crate::Config, String> {
    use clap::Parser;
    let args = to_args(config).map_err(|e| e.to_string())?;
    let argv = ["polyvisor", "run"]
        .into_iter()
        .map(String::from)
        .chain(args);
    let cli = crate::cli::Cli::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        let line = text.lines().next().unwrap_or("").trim();
        line.strip_prefix("error: ").unwrap_or(line).to_string()
    })?;
    let Some(crate::cli::Command::Run(run)) = cli.command else {
        return Err("not a run configuration".into());
    };
    run.into_config().map_err(|e| match e.field.api_field() {
        Some(field) => format!("{field} ({e})"),
        None => e.to_string(),
    })
}

#[cfg(test)]
mod tests;
