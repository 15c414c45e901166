// SPDX-License-Identifier: Apache-2.0
//! The management API's bytes: HTTP/1.1 request framing (`vmm::api::http::parse`, what the
//! API thread runs on every client's buffer), each request it frames routed and answered
//! (`vmm::api::routes::handle`: paths, verbs, bodies; the main thread's side is a stand-in
//! that keeps a created VM's configuration as the real one does before `vm.boot`), and a
//! body alone as each reader takes it: `vm.create`'s `VmConfig` (`vm_create::to_config`,
//! one validation path with the command line) and the hotplug bodies (`vm.add-disk`,
//! `vm.add-net`, `vm.add-vsock`, `vm.remove-device`: `vmm::api::devices`). Whatever a
//! client sends, the answer is a request, "more bytes", a refusal, an HTTP error or a
//! configuration error, never a panic.
#![no_main]

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use vmm::api::{devices, http, routes, vm_create, Context};
use vmm::config::Config;
use vmm::run_control::{Answer, CommandError, VmCommand, VmState};
use vmm::{hotplug, RunControl};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

/// The VM every input starts with (created, not booted), and one routed requests edit.
fn created() -> Config {
    let v = serde_json::json!({
        "payload": {"kernel": "/k"},
        "memory": {"size": 67108864},
        "disks": [{"path": "/d.img", "id": "disk0"}],
        "rng": {"src": "/dev/urandom"}
    });
    vm_create::to_config(&v).expect("the fuzz target's VmConfig")
}

/// The main thread's stand-in: what `wait_idle` does for a created VM (devices join or
/// leave its configuration; nothing is opened or started).
fn answer(ctx: &Context, command: VmCommand) -> Result<Answer, CommandError> {
    match command {
        VmCommand::State => Ok(Answer::State(VmState::Created)),
        VmCommand::Counters => Ok(Answer::Counters(Default::default())),
        VmCommand::AddDevice(d) => ctx.edit_config(|c| hotplug::add_to_created(c, d)),
        VmCommand::RemoveDevice(id) => ctx.edit_config(|c| hotplug::remove_from_created(c, &id)),
        VmCommand::Pause | VmCommand::Resume | VmCommand::PowerButton => {
            Err(CommandError::NotRunning)
        }
        VmCommand::Stop(_) | VmCommand::Boot => Ok(Answer::Done),
    }
}

/// One context for the whole run, served by a thread that sleeps on the request queue's
/// eventfd (a request is answered as soon as it is asked).
fn context() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        let ctx = Context {
            requests: Arc::new(RunControl::new().expect("eventfd")),
            config: Arc::new(Mutex::new(None)),
            boot_error: Arc::default(),
        };
        let served = ctx.clone();
        std::thread::spawn(move || {
            let epoll = Epoll::new().expect("epoll");
            epoll
                .ctl(
                    ControlOperation::Add,
                    served.requests.event().as_raw_fd(),
                    EpollEvent::new(EventSet::IN, 0),
                )
                .expect("epoll add");
            let mut events = [EpollEvent::default(); 1];
            loop {
                let _ = epoll.wait(-1, &mut events);
                served.requests.serve(&mut |c| answer(&served, c));
            }
        });
        ctx
    })
}

/// The hotplug bodies' readers on `v`, with and without a VM to check against.
fn device_bodies(v: &serde_json::Value, current: &Config) {
    for name in ["vm.add-disk", "vm.add-net", "vm.add-vsock"] {
        let _ = devices::device(name, v, None);
        let _ = devices::device(name, v, Some(current));
    }
    let _ = devices::remove_id(v);
}

fuzz_target!(|data: &[u8]| {
    let ctx = context();
    let vm = created();
    // Every input starts from the same VM: created (an even length) or none.
    *ctx.config.lock().unwrap_or_else(|e| e.into_inner()) =
        (data.len() % 2 == 0).then(|| vm.clone());
    // Framing: every prefix a slow client could have sent so far, then the whole buffer;
    // each request framed is routed and answered.
    let mut at = 0;
    while at < data.len() {
        match http::parse(&data[at..]) {
            Ok(Some((request, used))) => {
                assert!(used > 0 && used <= data.len() - at);
                let response = routes::handle(&request, ctx);
                assert!((200..600).contains(&response.status), "{}", response.status);
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&request.body) {
                    let _ = vm_create::to_config(&v);
                    device_bodies(&v, &vm);
                }
                at += used;
            }
            Ok(None) | Err(_) => break,
        }
    }
    // The body alone, as `polyvisor run --config FILE` and the hotplug calls read it.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = vm_create::to_args(&v);
        let _ = vm_create::to_config(&v);
        device_bodies(&v, &vm);
    }
});
