// SPDX-License-Identifier: Apache-2.0
//! The management API: Cloud Hypervisor's REST API (HTTP/1.1 over a Unix socket, JSON
//! bodies) for `polyvisor run --api-socket PATH`.
//!
//! Threads: the API thread ([`server`]) owns the socket and its clients and turns each
//! request into a [`VmCommand`] on the [`RunControl`] queue; the main thread carries them
//! out in its event loop ([`crate::signals::wait_for_exit`] while a VM runs,
//! [`crate::signals::wait_idle`] while none does) and answers.

pub mod devices;
pub mod http;
pub mod routes;
pub mod server;
pub(crate) mod vm_config;
pub mod vm_create;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::config::{Config, Field};
use crate::machine::{io_err, Error, RunOutcome};
use crate::run_control::{Answer, CommandError, RunControl, StopKind, VmCommand, VmState};

pub use routes::Context;

/// The running API thread; [`ApiServer::stop`] ends it and removes the socket.
pub struct ApiServer {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: EventFd,
    path: PathBuf,
}

impl ApiServer {
    /// Bind `path` (mode 0600; a stale socket is replaced, anything else there refused,
    /// naming `--api-socket`) and serve it on a new thread named `api`.
    pub fn start(path: &Path, ctx: Context) -> Result<Self, Error> {
        let input = |message: String| Error::Input {
            field: Field::ApiSocket,
            message: format!("{path:?}: {message}"),
        };
        let listener = crate::unix_socket::bind(path, "--api-socket").map_err(input)?;
        // From here on, dropping `server` removes the socket.
        let mut server = Self {
            thread: None,
            stop: EventFd::new(EFD_NONBLOCK).map_err(io_err("creating an eventfd"))?,
            path: path.to_path_buf(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| input(e.to_string()))?;
        let stop = server
            .stop
            .try_clone()
            .map_err(io_err("creating an eventfd"))?;
        // In its sandbox from its first instruction (`--seccomp`; the API's own list).
        let thread =
            crate::seccomp::spawn("api".into(), crate::seccomp::ThreadKind::Api, move || {
                server::serve(listener, stop, ctx)
            })
            .map_err(io_err("starting the API thread"))?;
        server.thread = Some(thread);
        Ok(server)
    }

    /// End the API thread (it finishes the request it is answering) and remove the socket.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shut();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `polyvisor run --api-socket PATH`: boot the VM `config` describes at once and serve
/// the API beside it; `polyvisor --api-socket PATH` (no `config`): serve it with no VM
/// until `vm.create` and `vm.boot`. A guest that powers off, resets (without `--on-reset
/// restart`) or panics ends the process as without the API (so does Cloud Hypervisor);
/// `vm.shutdown` and `vm.delete` leave the VMM serving, `vmm.shutdown` ends it.
pub fn run(config: Option<Config>, socket: &Path) -> Result<RunOutcome, Error> {
    // Before the API thread starts, so it inherits the blocked stop signals.
    crate::signals::install().map_err(io_err("installing the stop-signal handlers"))?;
    // Decided before the API thread starts: a vm.create that arrives at once is booted
    // only by vm.boot.
    let boot_now = config.is_some();
    // no_new_privs and the sandbox's mode before the API thread starts (it installs its
    // filter as its first act): `run --seccomp`, or the default for a VMM started without
    // a VM (a VmConfig has no such field; Cloud Hypervisor's --seccomp is a process flag).
    let mode = config.as_ref().map(|c| c.seccomp).unwrap_or_default();
    crate::seccomp::configure(mode)
        .map_err(|e| io_err("setting up the sandbox")(std::io::Error::other(e)))?;
    let shared: crate::run_control::SharedConfig = Arc::new(Mutex::new(config));
    let requests = RunControl::new()
        .map_err(io_err("creating an eventfd"))?
        .publishing_to(shared.clone());
    let ctx = Context {
        requests: Arc::new(requests),
        config: shared,
        boot_error: Arc::default(),
    };
    let server = ApiServer::start(socket, ctx.clone())?;
    log::info!("management API on {socket:?}");
    let result = serve_vmm(&ctx, boot_now);
    ctx.requests.refuse_all();
    server.stop();
    result
}

/// The main thread's part: run the VM while there is one to run, wait for requests while
/// there is not.
fn serve_vmm(ctx: &Context, boot_now: bool) -> Result<RunOutcome, Error> {
    let mut boot = boot_now;
    // The first boot is `polyvisor run`'s: its failure ends the process as without the API.
    let mut by_api = false;
    loop {
        if std::mem::take(&mut boot) {
            let Some(config) = ctx.config() else { continue };
            match crate::machine::run_with(&config, Some(&ctx.requests)) {
                Ok(RunOutcome::ApiStop(StopKind::Shutdown)) => {
                    log::info!("management API: the VM is shut down");
                }
                Ok(RunOutcome::ApiStop(StopKind::Delete)) => {
                    log::info!("management API: the VM is deleted");
                    *ctx.config.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                Err(e) if by_api => {
                    // vm.boot's answer (see routes) reports it; the VMM serves on.
                    log::error!("management API: vm.boot: {e}");
                    *ctx.boot_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                }
                other => return other,
            }
        }
        let mut quit = false;
        let mut handle = |command: VmCommand| -> Result<Answer, CommandError> {
            // Looked at for each request: vm.create sets it from the API thread.
            let created = ctx.config().is_some();
            match command {
                VmCommand::Stop(StopKind::VmmShutdown) => {
                    quit = true;
                    Ok(Answer::Done)
                }
                VmCommand::Stop(StopKind::Delete) => {
                    *ctx.config.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    Ok(Answer::Done)
                }
                _ if !created => Err(CommandError::NotCreated),
                VmCommand::State => Ok(Answer::State(VmState::Created)),
                VmCommand::Boot => {
                    boot = true;
                    by_api = true;
                    *ctx.boot_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    Ok(Answer::Done)
                }
                // A VM created and not booted: as in Cloud Hypervisor, devices join or
                // leave its configuration only (their host side is opened at vm.boot).
                VmCommand::AddDevice(device) => {
                    ctx.edit_config(|c| crate::hotplug::add_to_created(c, device))
                }
                VmCommand::RemoveDevice(id) => {
                    ctx.edit_config(|c| crate::hotplug::remove_from_created(c, &id))
                }
                VmCommand::Pause
                | VmCommand::Resume
                | VmCommand::PowerButton
                | VmCommand::Counters
                | VmCommand::Stop(StopKind::Shutdown | StopKind::Reboot) => {
                    Err(CommandError::NotRunning)
                }
            }
        };
        if let Some(signal) = crate::signals::wait_idle(&ctx.requests, &mut handle) {
            return Err(Error::Stopped {
                signal,
                waited: None,
            });
        }
        if quit {
            return Ok(RunOutcome::ApiStop(StopKind::VmmShutdown));
        }
    }
}
