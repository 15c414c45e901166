// SPDX-License-Identifier: Apache-2.0
//! Building a VM from a [`Config`] ([`Machine::build`]) and running it to the end
//! ([`Machine::run`]).

use std::sync::Arc;

use arch::{BootRequest, Hypervisor, Vm, VmConfig};
use devices::{PowerButton, VmControl, VmExitReason};

use crate::backends::HostBackends;
use crate::config::{format_size, Config, ConfigError, Field};
use crate::console;
use crate::device_manager::{self, Devices};
use crate::host::Host;
use crate::hotplug::Hotplug;
use crate::run_control::{Answer, CommandError, RunControl, StopKind, VmCommand, VmState};
use crate::vcpu_thread::{self, Buses};

/// How a run ended, when it ended the way a guest ends.
#[derive(Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Poweroff,
    Reset,
    /// The guest said its kernel panicked.
    GuestPanic,
    /// The management API ended the VM ([`VmCommand::Stop`]; a reboot never ends a run).
    ApiStop(StopKind),
}

/// Why a run failed. Configuration errors name the flag and value; the rest say which
/// part of the VMM failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--kernel {0}")]
    Kernel(boot::Error),
    #[error("--initrd {0}")]
    Initrd(boot::Error),
    #[error("{}: {what} is not available in this version of Polyvisor yet", field.flag())]
    NotYet { field: Field, what: &'static str },
    #[error("{0}")]
    Backend(arch::Error),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("device setup: {0}")]
    Bus(#[from] devices::BusError),
    /// A file or value the user gave is unusable; the message names it.
    #[error("{} {message}", field.flag())]
    Input { field: Field, message: String },
    #[error("{0}")]
    Guest(String),
    #[error("stopped by {}; {}", crate::signals::name(*.signal), stop_detail(*.waited))]
    Stopped {
        signal: i32,
        /// How long the guest had after its power button was pressed, if it was.
        waited: Option<std::time::Duration>,
    },
}

impl Error {
    /// The configuration field the error is about, when it is the user's (what the API
    /// reports next to the message).
    pub fn field(&self) -> Option<Field> {
        match self {
            Error::Config(e) => Some(e.field),
            Error::Kernel(_) => Some(Field::Kernel),
            Error::Initrd(_) => Some(Field::Initrd),
            Error::NotYet { field, .. } | Error::Input { field, .. } => Some(*field),
            _ => None,
        }
    }

    /// The process exit status for this error: 2 for what the user asked for, 1 for the
    /// VMM failing.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_)
            | Error::Kernel(_)
            | Error::Initrd(_)
            | Error::NotYet { .. }
            | Error::Input { .. } => 2,
            // The shell convention for "killed by signal N".
            Error::Stopped { signal, .. } => 128 + signal,
            Error::Backend(
                arch::Error::Kernel(_)
                | arch::Error::Initrd(_)
                | arch::Error::Cmdline(_)
                | arch::Error::Memory(_)
                | arch::Error::Vcpus(_)
                | arch::Error::Config(_),
            ) => 2,
            _ => 1,
        }
    }
}

fn stop_detail(waited: Option<std::time::Duration>) -> String {
    match waited {
        Some(w) => format!(
            "the guest did not power off within {:.1} s of its power button press and was \
             shut down without its cooperation",
            w.as_secs_f64()
        ),
        None => "the guest was shut down without its cooperation".into(),
    }
}

/// Name the flag a backend error is about, where there is one.
fn backend_error(e: arch::Error, config: &Config) -> Error {
    let flagged = |field: Field, value: String, reason: String| {
        Error::Config(ConfigError::new(field, value, reason))
    };
    match e {
        arch::Error::Kernel(message) => Error::Input {
            field: Field::Kernel,
            message,
        },
        arch::Error::Initrd(message) => Error::Input {
            field: Field::Initrd,
            message,
        },
        arch::Error::Cmdline(m) => flagged(Field::Cmdline, String::new(), m),
        arch::Error::GuestMemory { reason, .. } => flagged(
            Field::Memory,
            format_size(config.memory_bytes),
            format!("cannot map guest memory: {reason}"),
        ),
        arch::Error::Memory(m) => flagged(Field::Memory, format_size(config.memory_bytes), m),
        arch::Error::Vcpus(m) => flagged(Field::Cpus, config.cpus.to_string(), m),
        arch::Error::Pit(m) => flagged(Field::Pit, String::new(), m),
        other => Error::Backend(other),
    }
}

pub(crate) fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// Boot the guest `config` describes on this host's hypervisor and run it until it powers
/// off or resets.
pub fn run(config: &Config) -> Result<RunOutcome, Error> {
    run_with(config, None)
}

/// [`run`], steered from another thread through `steering` (pause, resume) while the guest
/// runs. Call it on the thread that owns the process's stop signals (see
/// [`crate::signals::install`]).
pub fn run_with(config: &Config, steering: Option<&RunControl>) -> Result<RunOutcome, Error> {
    // First, before any thread exists: every thread inherits no_new_privs, and each
    // installs its seccomp filter (`--seccomp`) as it starts.
    crate::seccomp::configure(config.seccomp)
        .map_err(|e| io_err("setting up the sandbox")(std::io::Error::other(e)))?;
    // Before anything can put the terminal in raw mode: a stop signal from here on is
    // noted and ends the run through the path that restores the terminal.
    crate::signals::install().map_err(io_err("installing the stop-signal handlers"))?;
    vcpu_thread::install_kick_handler().map_err(io_err("installing the vCPU signal handler"))?;
    // Opened once: every boot of the guest uses the same images, taps and socket. The
    // management API adds devices to (and removes them from) both, for every later boot.
    let mut config = config.clone();
    let mut backends = HostBackends::open(&config)?;
    // One console output for every boot of the guest (a restart appends to the same file).
    let console_out = console_output(&config)?;
    // Requests still queued when the VM ends are left to the caller (the management API
    // serves on, or refuses them as it ends).
    let result = run_boots(&mut config, &console_out, &mut backends, steering);
    console_out.finish();
    result
}

fn run_boots(
    config: &mut Config,
    console_out: &console::ConsoleOutput,
    backends: &mut HostBackends,
    steering: Option<&RunControl>,
) -> Result<RunOutcome, Error> {
    loop {
        let outcome = run_on::<Host>(config, console_out, backends, steering)?;
        if outcome == RunOutcome::Reset && config.on_reset == crate::cli::OnReset::Restart {
            // A fresh machine from the same configuration, as a cold reset gives one.
            log::info!("guest reset; restarting it (--on-reset restart)");
            continue;
        }
        if outcome == RunOutcome::ApiStop(StopKind::Reboot) {
            log::info!("management API: rebooting the guest");
            continue;
        }
        return Ok(outcome);
    }
}

/// Open the console output `--console` names; a file that cannot be created is the
/// user's error, naming the file.
fn console_output(config: &Config) -> Result<console::ConsoleOutput, Error> {
    console::ConsoleOutput::start(&config.console).map_err(|e| match &config.console {
        crate::config::ConsoleMode::File { path, .. } => Error::Input {
            field: Field::Console,
            message: format!("file={path:?}: {e}"),
        },
        _ => Error::Io {
            what: "--console",
            source: e,
        },
    })
}

/// One boot of the guest on a given backend, its console output going to `console_out`,
/// its devices' host side `backends` (from [`HostBackends::open`] of `config`):
/// [`Machine::build`], then [`Machine::run`]. The stop-signal and kick handlers must be
/// installed ([`run`] does). Devices `steering` plugs in (or takes out) join (or leave)
/// `config` and `backends`, for the boots that follow.
pub fn run_on<H: Hypervisor>(
    config: &mut Config,
    console_out: &console::ConsoleOutput,
    backends: &mut HostBackends,
    steering: Option<&RunControl>,
) -> Result<RunOutcome, Error> {
    let machine = Machine::build::<H>(config, console_out, backends)?;
    machine.run(steering, Hotplug::new(config, backends, steering))
}

/// A machine built from a [`Config`] and not running yet: the VM with its memory and
/// loaded guest, its devices on their buses, its vCPUs.
pub struct Machine<V: Vm> {
    /// Kept for as long as the machine exists (its memory, its interrupt controller).
    vm: V,
    vcpus: Vec<V::Vcpu>,
    buses: Arc<Buses>,
    control: Arc<VmControl>,
    power_button: Option<Box<dyn PowerButton>>,
    input: Option<crate::console_input::StdinInput>,
    shutdown_timeout: std::time::Duration,
}

impl<V: Vm> Machine<V> {
    /// Build the machine `config` describes on hypervisor `H`: open the kernel and initrd,
    /// create the VM, attach the virtio devices, load the guest, place the devices (the
    /// console's output going to `console_out`) and create the vCPUs. Nothing runs yet
    /// (a terminal on stdin is in raw mode from here: its input is read once `run` starts).
    pub fn build<H: Hypervisor<Vm = V>>(
        config: &Config,
        console_out: &console::ConsoleOutput,
        backends: &HostBackends,
    ) -> Result<Self, Error> {
        let open_kernel = if H::RAW_KERNEL_IMAGES {
            boot::open_kernel_or_raw
        } else {
            boot::open_kernel
        };
        let kernel = open_kernel(&config.kernel).map_err(Error::Kernel)?;
        let initrd = config
            .initrd
            .as_deref()
            .map(boot::open_initrd)
            .transpose()
            .map_err(Error::Initrd)?;

        let hv = H::open().map_err(Error::Backend)?;
        if config.cpus > hv.max_vcpus() {
            return Err(ConfigError::new(
                Field::Cpus,
                config.cpus.to_string(),
                format!(
                    "this host's {} allows at most {} vCPUs",
                    hv.name(),
                    hv.max_vcpus()
                ),
            )
            .into());
        }
        let mut vm = hv
            .create_vm(&VmConfig {
                memory_bytes: config.memory_bytes,
                vcpus: config.cpus,
                pit: config.pit,
            })
            .map_err(|e| backend_error(e, config))?;
        crate::seccomp::exclude_from_core_dumps(vm.memory()).map_err(io_err(
            "keeping guest memory out of core dumps (MADV_DONTDUMP)",
        ))?;
        let virtio = backends.attach(&mut vm, config)?;
        let mut request = BootRequest {
            kernel,
            initrd,
            cmdline: config.cmdline.clone(),
        };
        vm.load(&mut request)
            .map_err(|e| backend_error(e, config))?;
        log::debug!(
            "{}: {} vCPUs, {} of RAM, kernel {}",
            hv.name(),
            config.cpus,
            format_size(config.memory_bytes),
            config.kernel.display()
        );

        let control = Arc::new(VmControl::new());
        let Devices {
            buses,
            power_button,
            input,
        } = device_manager::attach(&mut vm, config, &control, console_out, virtio)?;
        let vcpus = vm.create_vcpus().map_err(Error::Backend)?;
        // Backends that serve their power button themselves (s390x SCLP) have it only now.
        let power_button = power_button.or_else(|| vm.power_button());
        Ok(Self {
            vm,
            vcpus,
            buses: Arc::new(buses),
            control,
            power_button,
            input,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// Run the machine until the guest powers off, resets or panics, a stop signal arrives
    /// or a vCPU fails; `steering` pauses and resumes it meanwhile, and plugs devices in
    /// and out through `hotplug`.
    pub fn run(
        self,
        steering: Option<&RunControl>,
        mut hotplug: Hotplug,
    ) -> Result<RunOutcome, Error> {
        let Self {
            vm,
            vcpus,
            buses,
            control,
            power_button,
            mut input,
            shutdown_timeout,
        } = self;
        hotplug.adopt_boot_devices(&vm);
        // The main thread's filter, before the guest runs (once per process: a restarted
        // guest is built under it).
        crate::seccomp::enter_main().map_err(|e| {
            io_err("installing the main thread's seccomp filter")(std::io::Error::other(e))
        })?;
        let mut threads = Vec::with_capacity(vcpus.len());
        let peers = vcpu_thread::Peers::new(vcpus.len());
        for (index, vcpu) in vcpus.into_iter().enumerate() {
            match vcpu_thread::spawn(index as u32, vcpu, buses.clone(), control.clone(), &peers) {
                Ok(t) => threads.push(t),
                Err(e) => {
                    control.request_exit(VmExitReason::Error(e.to_string()));
                    vcpu_thread::stop_all(threads, vcpu_thread::STOP_DEADLINE);
                    return Err(io_err("starting a vCPU thread")(e));
                }
            }
        }

        let mut paused = false;
        let mut api_stop = None;
        let mut handle = |command: VmCommand| -> Result<Answer, CommandError> {
            match (command, paused) {
                // Paused or not, as Cloud Hypervisor: a paused guest finds the device
                // announced when it resumes.
                (VmCommand::AddDevice(device), _) => hotplug.add(&vm, device),
                (VmCommand::RemoveDevice(id), _) => hotplug.remove(&vm, &id),
                (VmCommand::State, _) => Ok(Answer::State(if paused {
                    VmState::Paused
                } else {
                    VmState::Running
                })),
                (VmCommand::Counters, _) => {
                    let mut counters = buses.counters();
                    counters.extend(vcpu_thread::counters(&threads));
                    Ok(Answer::Counters(counters))
                }
                (VmCommand::Boot, _) => Err(CommandError::AlreadyIn("running")),
                // Served by the event loop, which times the release.
                (VmCommand::PowerButton, _) => Err(CommandError::NoPowerButton),
                (VmCommand::Stop(kind), _) => {
                    api_stop.get_or_insert(kind);
                    control.request_exit(match kind {
                        StopKind::Reboot => VmExitReason::Reset,
                        _ => VmExitReason::Poweroff,
                    });
                    Ok(Answer::Done)
                }
                (VmCommand::Pause, true) => Err(CommandError::AlreadyIn("paused")),
                (VmCommand::Resume, false) => Err(CommandError::AlreadyIn("running")),
                (VmCommand::Pause, false) => {
                    let result = vcpu_thread::pause_all(&threads, vcpu_thread::STOP_DEADLINE)
                        .map_err(|names| CommandError::DidNotPause(names.join(", ")));
                    paused = true; // even when late, they pause as soon as they can
                    if result.is_ok() {
                        log::info!("VM paused");
                    }
                    result.map(|()| Answer::Done)
                }
                (VmCommand::Resume, true) => {
                    let result = vcpu_thread::resume_all(&threads, vcpu_thread::STOP_DEADLINE)
                        .map_err(|names| CommandError::DidNotResume(names.join(", ")));
                    paused = false; // even when late, they run as soon as they can
                    if result.is_ok() {
                        log::info!("VM resumed");
                    }
                    result.map(|()| Answer::Done)
                }
            }
        };
        let ending = crate::signals::wait_for_exit(
            &control,
            &crate::signals::GracefulStop {
                button: power_button.as_deref(),
                timeout: shutdown_timeout,
            },
            crate::signals::Sources {
                steering: steering.map(|requests| crate::signals::Steering {
                    requests,
                    handle: &mut handle,
                }),
                console: input.as_mut(),
            },
        );
        let stuck = vcpu_thread::stop_all(threads, vcpu_thread::STOP_DEADLINE);
        if !stuck.is_empty() {
            log::error!(
                "{} did not stop within {} s of the stop request (blocked outside the guest); \
                 exiting without {}",
                stuck.join(", "),
                vcpu_thread::STOP_DEADLINE.as_secs(),
                if stuck.len() == 1 { "it" } else { "them" }
            );
        }
        drop(input);
        log::debug!(
            "{} guest accesses to unclaimed ports, {} to unclaimed MMIO",
            buses.pio.unclaimed_accesses(),
            buses.mmio.unclaimed_accesses()
        );
        drop(vm);
        if let Some(kind) = api_stop {
            return Ok(RunOutcome::ApiStop(kind));
        }
        match ending.reason {
            VmExitReason::Poweroff => Ok(RunOutcome::Poweroff),
            VmExitReason::Reset => Ok(RunOutcome::Reset),
            VmExitReason::GuestPanic => Ok(RunOutcome::GuestPanic),
            VmExitReason::Signal(signal) => Err(Error::Stopped {
                signal,
                waited: ending.waited,
            }),
            VmExitReason::Error(m) => Err(Error::Guest(m)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// The [`Vm`] methods the unit tests' fake backends never reach (no memory, no
    /// guest, no vCPUs): inside an `impl Vm for ...`.
    macro_rules! unreached_vm_methods {
        () => {
            type Vcpu = arch::unsupported::Never;
            fn memory(&self) -> &arch::GuestMemory {
                unimplemented!()
            }
            fn layout(&self) -> &arch::MemoryLayout {
                unimplemented!()
            }
            fn platform(&self) -> &arch::Platform {
                unimplemented!()
            }
            fn interrupt_line(
                &self,
                _irq: u32,
            ) -> arch::Result<std::sync::Arc<dyn devices::InterruptLine>> {
                unimplemented!()
            }
            fn load(&mut self, _request: &mut arch::BootRequest) -> arch::Result<()> {
                unimplemented!()
            }
            fn create_vcpus(&mut self) -> arch::Result<Vec<Self::Vcpu>> {
                unimplemented!()
            }
        };
    }
    pub(crate) use unreached_vm_methods;

    /// A backend without a virtio transport (s390x until virtio-ccw), nor hotplug: the
    /// trait's defaults.
    pub(crate) struct NoVirtio;

    impl Vm for NoVirtio {
        unreached_vm_methods!();
    }

    fn config(args: &[&str]) -> Config {
        let argv = ["polyvisor", "run", "--kernel", "/k"].iter().chain(args);
        let Some(Command::Run(run)) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not a run command")
        };
        run.into_config().unwrap()
    }

    #[test]
    fn rng_on_a_backend_without_virtio_is_refused_by_flag() {
        let Err(e) = HostBackends::default().attach(&mut NoVirtio, &config(&["--rng"])) else {
            panic!("--rng accepted without a transport")
        };
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.field(), Some(Field::Rng));
        let line = e.to_string();
        assert!(line.starts_with("--rng: virtio-rng"), "{line}");
        assert!(line.contains("not available"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn no_virtio_flags_add_nothing() {
        assert!(HostBackends::default()
            .attach(&mut NoVirtio, &config(&[]))
            .unwrap()
            .is_empty());
    }
}
