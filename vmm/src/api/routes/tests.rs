// SPDX-License-Identifier: Apache-2.0
use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn config() -> Config {
    let argv = ["polyvisor", "run", "--kernel", "/k", "--memory", "64M"];
    let Some(Command::Run(run)) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not a run command")
    };
    run.into_config().unwrap()
}

fn request(method: &str, name: &str, body: &str) -> Request {
    Request {
        method: method.into(),
        path: format!("{ROOT}{name}"),
        body: body.as_bytes().to_vec(),
        close: true,
    }
}

/// A context whose "main thread" answers with `answer` and records what it was asked.
fn context(
    answer: fn(VmCommand) -> Result<Answer, CommandError>,
) -> (Context, Arc<Mutex<Vec<VmCommand>>>) {
    let ctx = Context {
        requests: Arc::new(RunControl::new().unwrap()),
        config: Arc::new(Mutex::new(Some(config()))),
        boot_error: Arc::default(),
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (rc, log) = (ctx.requests.clone(), seen.clone());
    std::thread::spawn(move || loop {
        rc.serve(&mut |c| {
            log.lock().unwrap().push(c.clone());
            answer(c)
        });
        std::thread::sleep(Duration::from_millis(1));
        if Arc::strong_count(&rc) == 1 {
            return;
        }
    });
    (ctx, seen)
}

fn body(r: &Response) -> serde_json::Value {
    serde_json::from_str(r.body.as_deref().unwrap()).unwrap()
}

#[test]
fn commands_go_to_the_main_thread_and_answer_as_cloud_hypervisor() {
    let (ctx, seen) = context(|c| match c {
        VmCommand::State => Ok(Answer::State(crate::VmState::Paused)),
        VmCommand::Resume => Err(CommandError::AlreadyIn("running")),
        VmCommand::Counters => Ok(Answer::Counters(
            [(
                "pio".to_string(),
                [("unclaimed_accesses".to_string(), 7)].into(),
            )]
            .into(),
        )),
        _ => Ok(Answer::Done),
    });
    let r = handle(&request("PUT", "vm.pause", ""), &ctx);
    assert_eq!((r.status, r.body.as_deref()), (204, None));
    let r = handle(&request("PUT", "vm.resume", ""), &ctx);
    assert_eq!(r.status, 405);
    assert_eq!(body(&r), serde_json::json!(["the VM is already running"]));
    let r = handle(&request("GET", "vm.info", ""), &ctx);
    assert_eq!(r.status, 200);
    let info = body(&r);
    assert_eq!(info["state"], "Paused");
    assert_eq!(info["memory_actual_size"], 64 << 20);
    assert_eq!(info["config"]["cpus"]["boot_vcpus"], 1);
    assert_eq!(info["config"]["payload"]["kernel"], "/k");
    let r = handle(&request("GET", "vm.counters", ""), &ctx);
    assert_eq!(body(&r)["pio"]["unclaimed_accesses"], 7);
    let ping = body(&handle(&request("GET", "vmm.ping", ""), &ctx));
    assert_eq!(ping["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(ping["pid"], std::process::id());
    for name in [
        "vm.power-button",
        "vm.shutdown",
        "vm.reboot",
        "vm.delete",
        "vmm.shutdown",
    ] {
        assert_eq!(
            handle(&request("PUT", name, ""), &ctx).status,
            204,
            "{name}"
        );
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [
            VmCommand::Pause,
            VmCommand::Resume,
            VmCommand::State,
            VmCommand::Counters,
            VmCommand::PowerButton,
            VmCommand::Stop(StopKind::Shutdown),
            VmCommand::Stop(StopKind::Reboot),
            VmCommand::Stop(StopKind::Delete),
            VmCommand::Stop(StopKind::VmmShutdown),
        ]
    );
}

#[test]
fn bad_requests_never_reach_the_main_thread() {
    let (ctx, seen) = context(|_| Ok(Answer::Done));
    let status = |m: &str, path: &str, body: &str| {
        let mut r = request(m, "", body);
        r.path = path.into();
        handle(&r, &ctx).status
    };
    assert_eq!(status("GET", "/api/v1/vm.nonsense", ""), 404);
    assert_eq!(status("GET", "/vm.info", ""), 404);
    assert_eq!(status("GET", "/api/v1/vm.pause", ""), 405);
    assert_eq!(status("DELETE", "/api/v1/vm.info", ""), 405);
    assert_eq!(status("PUT", "/api/v1/vm.pause", "{not json"), 400);
    assert_eq!(status("PUT", "/api/v1/vm.create", "{}"), 400);
    assert_eq!(
        status("PUT", "/api/v1/vm.create", r#"{"payload":{"kernel":"/k"}}"#),
        405
    );
    assert_eq!(
        status("PUT", "/api/v1/vm.add-pmem", "{\"file\":\"/d\"}"),
        501
    );
    // Device bodies are checked before the main thread is asked.
    assert_eq!(status("PUT", "/api/v1/vm.add-disk", "{\"path\":"), 400);
    assert_eq!(status("PUT", "/api/v1/vm.add-disk", ""), 400);
    assert_eq!(
        status("PUT", "/api/v1/vm.add-disk", "{\"readonly\":true}"),
        400
    );
    assert_eq!(
        status("PUT", "/api/v1/vm.add-net", "{\"tap\":\"t\",\"bogus\":1}"),
        400
    );
    assert_eq!(status("PUT", "/api/v1/vm.add-vsock", "{\"cid\":3}"), 400);
    assert_eq!(status("PUT", "/api/v1/vm.remove-device", "{}"), 400);
    let r = handle(&request("GET", "vm.pause", ""), &ctx);
    assert_eq!(r.allow, Some("PUT"));
    assert!(seen.lock().unwrap().is_empty());
    // No configuration: vm.info is 404 without asking.
    *ctx.config.lock().unwrap() = None;
    assert_eq!(status("GET", "/api/v1/vm.info", ""), 404);
    assert!(seen.lock().unwrap().is_empty());
}

/// The API thread and a main thread that plugs devices into a backend that hotplugs (the
/// fake of `hotplug::tests`), as `Machine::run` does.
#[test]
fn devices_are_plugged_in_and_out_through_the_api() {
    use crate::backends::HostBackends;
    use crate::hotplug::tests::{image, FakeVm};
    use crate::hotplug::Hotplug;

    let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/pv-api-hotplug").unwrap();
    let boot = image(dir.as_path(), "boot.img");
    let data = image(dir.as_path(), "data.img");
    let mut boot_config = config();
    boot_config
        .disks
        .push(crate::config::parse_disk(&format!("path={}", boot.display())).unwrap());
    let shared: SharedConfig = Arc::new(Mutex::new(Some(boot_config.clone())));
    let ctx = Context {
        requests: Arc::new(RunControl::new().unwrap().publishing_to(shared.clone())),
        config: shared,
        boot_error: Arc::default(),
    };
    let rc = ctx.requests.clone();
    let main = std::thread::spawn(move || {
        let mut run_config = boot_config;
        let mut backends = HostBackends::open(&run_config).unwrap();
        let vm = FakeVm::new(8);
        let mut hotplug = Hotplug::new(&mut run_config, &mut backends, Some(&*rc));
        while Arc::strong_count(&rc) > 1 {
            rc.serve(&mut |c| match c {
                VmCommand::AddDevice(d) => hotplug.add(&vm, d),
                VmCommand::RemoveDevice(id) => hotplug.remove(&vm, &id),
                VmCommand::State => Ok(Answer::State(VmState::Running)),
                _ => Ok(Answer::Done),
            });
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(hotplug);
        run_config
    });
    let put = |name: &str, body: serde_json::Value| {
        handle(&request("PUT", name, &body.to_string()), &ctx)
    };
    let disk = serde_json::json!({"path": data, "readonly": false});
    let r = put("vm.add-disk", disk.clone());
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        body(&r),
        serde_json::json!({"id": "_disk1", "bdf": "0.0.0000"})
    );
    // The image is locked by the device: the same file again is refused, naming it.
    let r = put(
        "vm.add-disk",
        serde_json::json!({"path": data, "id": "again"}),
    );
    assert_eq!(r.status, 400);
    let why = body(&r)[0].as_str().unwrap().to_string();
    assert!(
        why.starts_with("--disk ") && why.contains("data.img"),
        "{why}"
    );
    // Ids are unique among the VM's devices.
    let r = put(
        "vm.add-disk",
        serde_json::json!({"path": boot, "readonly": true, "id": "_disk1"}),
    );
    assert_eq!(
        (r.status, body(&r)[0].as_str()),
        (
            400,
            Some("--disk id=_disk1: another device of the VM has this id")
        )
    );
    let sock = dir.as_path().join("v.sock");
    let r = put(
        "vm.add-vsock",
        serde_json::json!({"cid": 3, "socket": sock, "id": "vs"}),
    );
    assert_eq!(body(&r), serde_json::json!({"id": "vs", "bdf": "0.0.0001"}));
    // vm.info's configuration holds both, under Cloud Hypervisor's names.
    let r = handle(&request("GET", "vm.info", ""), &ctx);
    assert_eq!(r.status, 200);
    let info = body(&r)["config"].clone();
    assert_eq!(
        info["disks"][0]["id"], "_disk0",
        "boot-time devices are named too"
    );
    assert_eq!(info["disks"][1]["path"], data.display().to_string());
    assert_eq!(info["disks"][1]["id"], "_disk1");
    assert_eq!(info["vsock"]["id"], "vs");
    // Removing: unknown ids are 404, boot-time devices 501, plugged ones go.
    let remove = |id: &str| put("vm.remove-device", serde_json::json!({ "id": id }));
    assert_eq!(remove("nope").status, 404);
    let r = remove("_disk0");
    assert_eq!(r.status, 501);
    assert!(body(&r)[0].as_str().unwrap().contains("attached at boot"));
    assert_eq!(remove("_disk1").status, 204);
    assert_eq!(remove("vs").status, 204);
    assert_eq!(remove("vs").status, 404);
    assert!(!sock.exists());
    let api_config = ctx.config().unwrap();
    drop(ctx);
    let run_config = main.join().unwrap();
    assert_eq!(api_config, run_config, "both threads' configurations agree");
    assert_eq!(run_config.disks.len(), 1);
    assert!(run_config.vsock.is_none());
}
