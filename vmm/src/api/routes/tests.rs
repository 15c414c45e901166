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
            log.lock().unwrap().push(c);
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
        status("PUT", "/api/v1/vm.add-disk", "{\"path\":\"/d\"}"),
        501
    );
    let r = handle(&request("GET", "vm.pause", ""), &ctx);
    assert_eq!(r.allow, Some("PUT"));
    assert!(seen.lock().unwrap().is_empty());
    // No configuration: vm.info is 404 without asking.
    *ctx.config.lock().unwrap() = None;
    assert_eq!(status("GET", "/api/v1/vm.info", ""), 404);
    assert!(seen.lock().unwrap().is_empty());
}
