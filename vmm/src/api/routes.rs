// SPDX-License-Identifier: Apache-2.0
//! The endpoints: Cloud Hypervisor's paths, verbs, bodies and status codes for what
//! Polyvisor supports; its other endpoints answer 501 naming the call, unknown paths 404,
//! a wrong verb 405.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::http::{Request, Response};
use crate::config::Config;
use crate::run_control::{
    Answer, CommandError, RunControl, SharedConfig, StopKind, VmCommand, VmState,
};

/// Where every endpoint lives.
pub const ROOT: &str = "/api/v1/";

/// How long the API thread waits for the main thread's answer (a pause waits up to
/// [`crate::vcpu_thread`]'s stop deadline for the vCPUs; a boot is queued until the
/// previous VM is torn down).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the API thread shares with the VMM.
#[derive(Clone)]
pub struct Context {
    pub requests: Arc<RunControl>,
    /// The VM's configuration; `None` before `vm.create` or after `vm.delete`. The main
    /// thread publishes to it through `requests` (hotplug).
    pub config: SharedConfig,
    /// Why the last `vm.boot` failed, if it did.
    pub boot_error: Arc<Mutex<Option<String>>>,
}

impl Context {
    /// Change the created VM's configuration with `edit` (`NotCreated` when there is
    /// none); what `edit` refuses leaves it as it was.
    pub fn edit_config(
        &self,
        edit: impl FnOnce(&mut Config) -> Result<Answer, CommandError>,
    ) -> Result<Answer, CommandError> {
        let mut guard = self.config.lock().unwrap_or_else(|e| e.into_inner());
        let config = guard.as_mut().ok_or(CommandError::NotCreated)?;
        let mut edited = config.clone();
        let answer = edit(&mut edited)?;
        *config = edited;
        Ok(answer)
    }

    /// The VM's configuration, if one is created.
    pub fn config(&self) -> Option<Config> {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What an endpoint does.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Ping,
    Info,
    Create,
    /// `vm.add-disk`, `vm.add-net`, `vm.add-vsock` (by the endpoint's name).
    AddDevice,
    RemoveDevice,
    Command(VmCommand),
}

/// Polyvisor's endpoints: name, verb, action.
const SUPPORTED: &[(&str, &str, Action)] = &[
    ("vmm.ping", "GET", Action::Ping),
    (
        "vmm.shutdown",
        "PUT",
        Action::Command(VmCommand::Stop(StopKind::VmmShutdown)),
    ),
    ("vm.info", "GET", Action::Info),
    ("vm.create", "PUT", Action::Create),
    ("vm.counters", "GET", Action::Command(VmCommand::Counters)),
    ("vm.boot", "PUT", Action::Command(VmCommand::Boot)),
    ("vm.pause", "PUT", Action::Command(VmCommand::Pause)),
    ("vm.resume", "PUT", Action::Command(VmCommand::Resume)),
    (
        "vm.power-button",
        "PUT",
        Action::Command(VmCommand::PowerButton),
    ),
    (
        "vm.shutdown",
        "PUT",
        Action::Command(VmCommand::Stop(StopKind::Shutdown)),
    ),
    (
        "vm.reboot",
        "PUT",
        Action::Command(VmCommand::Stop(StopKind::Reboot)),
    ),
    (
        "vm.delete",
        "PUT",
        Action::Command(VmCommand::Stop(StopKind::Delete)),
    ),
    ("vm.add-disk", "PUT", Action::AddDevice),
    ("vm.add-net", "PUT", Action::AddDevice),
    ("vm.add-vsock", "PUT", Action::AddDevice),
    ("vm.remove-device", "PUT", Action::RemoveDevice),
];

/// Cloud Hypervisor's other endpoints (its `vmm/src/api/http/mod.rs` routes), with their
/// verb: answered 501 Not Implemented, naming the call.
pub const NOT_YET: &[(&str, &str)] = &[
    ("vm.add-device", "PUT"),
    ("vm.add-user-device", "PUT"),
    ("vm.add-fs", "PUT"),
    ("vm.add-generic-vhost-user", "PUT"),
    ("vm.add-pmem", "PUT"),
    ("vm.add-vdpa", "PUT"),
    ("vm.resize", "PUT"),
    ("vm.resize-disk", "PUT"),
    ("vm.resize-zone", "PUT"),
    ("vm.snapshot", "PUT"),
    ("vm.restore", "PUT"),
    ("vm.coredump", "PUT"),
    ("vm.send-migration", "PUT"),
    ("vm.receive-migration", "PUT"),
    ("vm.nmi", "PUT"),
];

/// The supported endpoints' names.
pub fn supported() -> impl Iterator<Item = &'static str> {
    SUPPORTED.iter().map(|(name, _, _)| *name)
}

/// The status a refused command is answered with: 404 when there is no VM (or no such
/// device), 405 when the VM is not in a state for it (Cloud Hypervisor's OpenAPI file),
/// 400 for a device that cannot be added as asked, 501 for what the backend (or
/// Polyvisor) cannot do yet, 500 when the VMM failed.
fn status(e: &CommandError) -> u16 {
    match e {
        CommandError::NotCreated | CommandError::NoSuchDevice(_) => 404,
        CommandError::NotRunning | CommandError::AlreadyIn(_) => 405,
        CommandError::BadDevice(_) => 400,
        CommandError::Unsupported(_) | CommandError::NotHotplugged(_) => 501,
        CommandError::NoPowerButton
        | CommandError::DidNotPause(_)
        | CommandError::DidNotResume(_)
        | CommandError::NoAnswer(_)
        | CommandError::Failed(_) => 500,
    }
}

fn refused(e: &CommandError) -> Response {
    Response::error(status(e), &e.to_string())
}

/// `vmm.ping`'s answer (Cloud Hypervisor's `VmmPingResponse`).
#[derive(Serialize)]
struct Ping {
    build_version: &'static str,
    version: &'static str,
    pid: i64,
    features: Vec<&'static str>,
}

/// `vm.info`'s answer (Cloud Hypervisor's `VmInfo`, without `device_tree`).
#[derive(Serialize)]
struct Info {
    config: serde_json::Value,
    state: &'static str,
    memory_actual_size: u64,
}

fn json(value: &impl Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => Response::json(200, body),
        Err(e) => Response::error(500, &format!("cannot encode the answer: {e}")),
    }
}

/// `vm.create`: a `VmConfig` becomes the VM's configuration (not booted yet).
fn create(body: &serde_json::Value, ctx: &Context) -> Response {
    if body.is_null() {
        return Response::error(400, "vm.create needs a VmConfig body");
    }
    let config = match super::vm_create::to_config(body) {
        Ok(c) => c,
        Err(message) => return Response::error(400, &format!("invalid VmConfig: {message}")),
    };
    let mut current = ctx.config.lock().unwrap_or_else(|e| e.into_inner());
    if current.is_some() {
        return Response::error(405, "a VM is already created (vm.delete it first)");
    }
    *current = Some(config);
    Response::no_content()
}

/// Cloud Hypervisor's `PciDeviceInfo`: a device-adding call's answer. `bdf` is where the
/// backend put the device as the guest names it (s390x: the CCW bus id, not a PCI
/// address).
#[derive(Serialize)]
struct PciDeviceInfo {
    id: String,
    bdf: String,
}

/// `vm.add-disk`, `vm.add-net`, `vm.add-vsock`: the main thread plugs the device in; the
/// VM's configuration (what `vm.info` shows, what `vm.boot` boots again) then holds it.
fn add_device(name: &str, body: &serde_json::Value, ctx: &Context) -> Response {
    let current = ctx.config();
    let device = match super::devices::device(name, body, current.as_ref()) {
        Ok(d) => d,
        Err(message) => return Response::error(400, &message),
    };
    match ctx
        .requests
        .request(VmCommand::AddDevice(device), ANSWER_TIMEOUT)
    {
        // The main thread published the configuration with the device before answering.
        Ok(Answer::Added(added)) => json(&PciDeviceInfo {
            id: added.id,
            bdf: added.bdf,
        }),
        // A VM created and not booted: the device joined its configuration only (as in
        // Cloud Hypervisor, which answers 204 then).
        Ok(Answer::Done) => Response::no_content(),
        Ok(other) => Response::error(500, &format!("unexpected answer {other:?}")),
        Err(e) => refused(&e),
    }
}

/// `vm.remove-device`: the main thread unplugs it; the configuration no longer holds it.
fn remove_device(body: &serde_json::Value, ctx: &Context) -> Response {
    let id = match super::devices::remove_id(body) {
        Ok(id) => id,
        Err(message) => return Response::error(400, &message),
    };
    match ctx
        .requests
        .request(VmCommand::RemoveDevice(id), ANSWER_TIMEOUT)
    {
        // The main thread published the configuration without it before answering.
        Ok(Answer::Done) => Response::no_content(),
        Ok(other) => Response::error(500, &format!("unexpected answer {other:?}")),
        Err(e) => refused(&e),
    }
}

/// `vm.boot`: asked of the main thread, then its state, which it answers only once the
/// VM runs or its boot failed (requests are served in order).
fn boot(ctx: &Context) -> Response {
    if let Err(e) = ctx.requests.request(VmCommand::Boot, ANSWER_TIMEOUT) {
        return refused(&e);
    }
    match ctx.requests.request(VmCommand::State, ANSWER_TIMEOUT) {
        Ok(Answer::State(VmState::Running | VmState::Paused)) => Response::no_content(),
        Ok(_) => {
            let why = ctx
                .boot_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| "the VM ended at once".into());
            Response::error(500, &format!("the VM did not boot: {why}"))
        }
        Err(e) => refused(&e),
    }
}

/// Answer one request.
pub fn handle(request: &Request, ctx: &Context) -> Response {
    let path = request.path.split('?').next().unwrap_or("");
    let Some(name) = path.strip_prefix(ROOT) else {
        return Response::error(
            404,
            &format!("no such endpoint {path:?} (the API is under {ROOT})"),
        );
    };
    let found = SUPPORTED.iter().find(|(n, _, _)| *n == name);
    let verb = found
        .map(|(_, v, _)| *v)
        .or_else(|| NOT_YET.iter().find(|(n, _)| *n == name).map(|(_, v)| *v));
    let Some(verb) = verb else {
        return Response::error(404, &format!("no such endpoint {name:?}"));
    };
    if request.method != verb {
        let mut r = Response::error(
            405,
            &format!("{name} takes {verb}, not {:?}", request.method),
        );
        r.allow = Some(verb);
        return r;
    }
    // Only vm.create and the device calls take a body; one that is given to another call must still be JSON.
    let body = if request.body.is_empty() {
        serde_json::Value::Null
    } else {
        match serde_json::from_slice::<serde_json::Value>(&request.body) {
            Ok(v) => v,
            Err(e) => {
                return Response::error(400, &format!("the request body is not valid JSON: {e}"))
            }
        }
    };
    let Some((_, _, action)) = found else {
        return Response::error(
            501,
            &format!("{name} is not supported by Polyvisor yet (see docs/api.md)"),
        );
    };
    match action {
        Action::Ping => json(&Ping {
            build_version: concat!(env!("CARGO_PKG_VERSION"), "-", env!("POLYVISOR_COMMIT")),
            version: env!("CARGO_PKG_VERSION"),
            pid: i64::from(std::process::id()),
            features: vec!["kvm"],
        }),
        Action::Create => create(&body, ctx),
        Action::Info => {
            let Some(config) = ctx.config() else {
                return refused(&CommandError::NotCreated);
            };
            match ctx.requests.request(VmCommand::State, ANSWER_TIMEOUT) {
                Ok(Answer::State(state)) => json(&Info {
                    // With every device's id, as Cloud Hypervisor shows them.
                    config: super::vm_config::to_json(&crate::hotplug::with_ids(&config)),
                    state: state.name(),
                    memory_actual_size: config.memory_bytes,
                }),
                Ok(other) => Response::error(500, &format!("unexpected answer {other:?}")),
                Err(e) => refused(&e),
            }
        }
        Action::AddDevice => add_device(name, &body, ctx),
        Action::RemoveDevice => remove_device(&body, ctx),
        Action::Command(VmCommand::Boot) => boot(ctx),
        Action::Command(command) => match ctx.requests.request(command.clone(), ANSWER_TIMEOUT) {
            Ok(Answer::Done) => Response::no_content(),
            Ok(Answer::Counters(counters)) => json(&counters),
            Ok(other) => Response::error(500, &format!("unexpected answer {other:?}")),
            Err(e) => refused(&e),
        },
    }
}

#[cfg(test)]
mod tests;
