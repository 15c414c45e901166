// SPDX-License-Identifier: Apache-2.0
//! The bodies of `vm.add-disk`, `vm.add-net`, `vm.add-vsock` (Cloud Hypervisor's
//! `DiskConfig`, `NetConfig`, `VsockConfig`) and `vm.remove-device` (`VmRemoveDevice`):
//! each device object goes through `vm.create`'s reading of the same object and then the
//! `--disk` / `--net` / `--vsock` flag's parser, the one validation path of flags, files
//! and API. Errors name the field (`DiskConfig.path: required`, `DiskConfig (--disk
//! path=x,serial=...: ...)`).

use serde_json::Value;

use super::vm_create::{disk_option, net_option, vsock_option, FieldError};
use crate::config::{self, Config, Field};
use crate::run_control::DeviceConfig;

/// A device-adding call's body as the device's configuration; `current` is the VM's
/// configuration (a `NetConfig` without `tap` gets the first free `pvtapN`).
pub fn device(name: &str, body: &Value, current: Option<&Config>) -> Result<DeviceConfig, String> {
    let (schema, field) = match name {
        "vm.add-disk" => ("DiskConfig", Field::Disk),
        "vm.add-net" => ("NetConfig", Field::Net),
        _ => ("VsockConfig", Field::Vsock),
    };
    if body.is_null() {
        return Err(format!("{name} needs a {schema} body"));
    }
    let field_error = |e: FieldError| e.to_string();
    let value = match field {
        Field::Disk => disk_option(schema, body).map_err(field_error)?,
        Field::Net => net_option(schema, body, || free_tap(current)).map_err(field_error)?,
        _ => vsock_option(schema, body).map_err(field_error)?,
    };
    let parsed = match field {
        Field::Disk => config::parse_disk(&value).map(DeviceConfig::Disk),
        Field::Net => config::parse_net(&value).map(DeviceConfig::Net),
        _ => config::parse_vsock(&value).map(DeviceConfig::Vsock),
    };
    parsed.map_err(|why| format!("{schema} ({} {value}: {why})", field.flag()))
}

/// The first `pvtapN` no network of `current` uses.
fn free_tap(current: Option<&Config>) -> String {
    let taken = |t: &str| current.is_some_and(|c| c.nets.iter().any(|n| n.tap == t));
    (0..)
        .map(|n| format!("pvtap{n}"))
        .find(|t| !taken(t))
        .unwrap_or_default()
}

/// `vm.remove-device`'s body (`{"id": "..."}`): the id.
pub fn remove_id(body: &Value) -> Result<String, String> {
    let Value::Object(map) = body else {
        return Err("vm.remove-device needs a VmRemoveDevice body ({\"id\": ...})".into());
    };
    if let Some(key) = map.keys().find(|k| *k != "id") {
        return Err(format!("VmRemoveDevice.{key}: unknown field (only id)"));
    }
    match map.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        Some(_) => Err("VmRemoveDevice.id: expected a non-empty string".into()),
        None => Err("VmRemoveDevice.id: required".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_become_the_flags_configuration() {
        let d = device(
            "vm.add-disk",
            &json!({"path": "/x.img", "readonly": true, "id": "d1", "num_queues": 1}),
            None,
        )
        .unwrap();
        assert_eq!(
            d,
            DeviceConfig::Disk(config::parse_disk("path=/x.img,readonly=on,id=d1").unwrap())
        );
        let DeviceConfig::Net(n) =
            device("vm.add-net", &json!({"mac": "02:00:00:00:00:09"}), None).unwrap()
        else {
            panic!("not a net")
        };
        assert_eq!(
            (n.tap.as_str(), n.mac),
            ("pvtap0", Some([2, 0, 0, 0, 0, 9]))
        );
        let mut current = crate::api::vm_create::to_config(&json!({
            "payload": {"kernel": "/k"}, "net": [{"tap": "pvtap0"}]
        }))
        .unwrap();
        current.nets.push(config::parse_net("tap=pvtap1").unwrap());
        let DeviceConfig::Net(n) = device("vm.add-net", &json!({}), Some(&current)).unwrap() else {
            panic!("not a net")
        };
        assert_eq!(n.tap, "pvtap2");
        assert_eq!(
            device(
                "vm.add-vsock",
                &json!({"cid": 3, "socket": "/v.sock"}),
                None
            )
            .unwrap(),
            DeviceConfig::Vsock(config::parse_vsock("cid=3,socket=/v.sock").unwrap())
        );
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let refused = |name: &str, body: Value| device(name, &body, None).unwrap_err();
        assert_eq!(
            refused("vm.add-disk", Value::Null),
            "vm.add-disk needs a DiskConfig body"
        );
        assert_eq!(
            refused("vm.add-disk", json!({"readonly": true})),
            "DiskConfig.path: required"
        );
        let e = refused("vm.add-disk", json!({"path": "/x", "iommu": true}));
        assert!(
            e.starts_with("DiskConfig.iommu: true is not supported"),
            "{e}"
        );
        let e = refused("vm.add-disk", json!({"path": "/x", "serial": ""}));
        assert!(
            e.starts_with("DiskConfig (--disk path=/x,serial=: serial"),
            "{e}"
        );
        let e = refused("vm.add-net", json!({"tap": "a/b"}));
        assert!(e.starts_with("NetConfig (--net tap=a/b: tap name"), "{e}");
        let e = refused("vm.add-vsock", json!({"cid": 2, "socket": "/v"}));
        assert!(
            e.contains("--vsock cid=2,socket=/v: cid 2 is reserved"),
            "{e}"
        );
        assert_eq!(
            refused("vm.add-vsock", json!({"socket": "/v"})),
            "VsockConfig.cid: required"
        );
        assert_eq!(
            refused("vm.add-disk", json!([1])),
            "DiskConfig: expected an object"
        );
    }

    #[test]
    fn remove_bodies() {
        assert_eq!(remove_id(&json!({"id": "_disk1"})).unwrap(), "_disk1");
        assert_eq!(
            remove_id(&json!({"id": "a", "x": 1})).unwrap_err(),
            "VmRemoveDevice.x: unknown field (only id)"
        );
        assert_eq!(
            remove_id(&json!({})).unwrap_err(),
            "VmRemoveDevice.id: required"
        );
        assert!(remove_id(&json!({"id": 5})).is_err());
        assert!(remove_id(&Value::Null).is_err());
    }
}
