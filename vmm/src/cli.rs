// SPDX-License-Identifier: Apache-2.0
//! The `polyvisor` command line. `--help`, the README and the man page describe these
//! flags; keep them in step.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    parse_console, parse_cpus, parse_disk, parse_net, parse_shutdown_timeout, parse_size,
    parse_vsock, Config, ConsoleMode, DiskConfig, NetConfig, VsockConfig,
};

/// Default guest memory when `--memory` is not given.
pub const DEFAULT_MEMORY: &str = "512M";

#[derive(Debug, Parser)]
#[command(
    name = "polyvisor",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("POLYVISOR_COMMIT"), ")"),
    about = "Polyvisor: a virtual machine monitor for Linux guests on x86_64, aarch64 and s390x KVM hosts",
    after_help = crate::manpage::after_help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Without a command: run the VMM with no VM and serve the management API on the Unix
    /// socket PATH (mode 0600): `vm.create` with Cloud Hypervisor's VmConfig JSON, then
    /// `vm.boot`, start one (docs/api.md). Ends on `vmm.shutdown` or a stop signal.
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace (overrides POLYVISOR_LOG; default info).
    #[arg(long, global = true, value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<log::LevelFilter>,

    /// Append the log to PATH instead of writing it to stderr.
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

fn parse_log_level(s: &str) -> Result<log::LevelFilter, String> {
    crate::logger::parse_level(s)
        .ok_or_else(|| "expected off, error, warn, info, debug or trace".to_string())
}

/// What a guest reset does (`--on-reset`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnReset {
    /// End the run: exit 0 with `guest reset` (scripts rely on it).
    #[default]
    Exit,
    /// Start the guest again from its kernel, as a fresh machine (QEMU's and Cloud
    /// Hypervisor's default).
    Restart,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest kernel and run it until it powers off or resets.
    Run(Box<RunArgs>),
    /// Call the management API of a running polyvisor (its `--api-socket PATH`), as Cloud
    /// Hypervisor's ch-remote does, and print its JSON answer.
    Remote(RemoteArgs),
}

/// `polyvisor remote`.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The VMM's API socket (its `--api-socket`).
    #[arg(long, value_name = "PATH")]
    pub api_socket: PathBuf,

    /// ping (vmm.ping), info (vm.info), counters (vm.counters), create FILE (vm.create
    /// with the VmConfig JSON in FILE), boot, pause, resume, power-button, shutdown,
    /// reboot, delete (vm.*), shutdown-vmm (vmm.shutdown), add-disk DISK, add-net NET,
    /// add-vsock VSOCK (vm.add-*: plug a device into the running VM; the options in
    /// --disk, --net, --vsock syntax, e.g. `add-disk path=data.img,readonly=on`),
    /// remove-device ID (vm.remove-device: a device added so).
    #[arg(value_name = "COMMAND", value_parser = clap::builder::PossibleValuesParser::new(
        crate::remote::COMMANDS.iter().map(|(c, _, _)| *c)))]
    pub command: String,

    /// `create`'s VmConfig JSON file; `add-disk`, `add-net`, `add-vsock`'s options;
    /// `remove-device`'s device id.
    #[arg(value_name = "ARG")]
    pub argument: Option<String>,
}

/// Commands that left the binary: the man page and completion generators live in
/// `polyvisor-gen` (so they are not resident in every VM). `main` answers them with one line
/// before clap parses, so `--help`, the man page and the completions never list them.
pub const RETIRED_COMMANDS: &[&str] = &["manpage", "completions"];

/// The retired command `args` (without the program name) asks for, if any: the first
/// argument that is neither a flag nor the value of `--log-level`/`--log-file`.
pub fn retired_command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Option<&'static str> {
    let mut it = args.iter().map(|a| a.as_ref().to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--log-level" || a == "--log-file" {
            it.next();
        } else if !a.starts_with('-') {
            return RETIRED_COMMANDS.iter().copied().find(|c| *c == a);
        }
    }
    None
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Guest kernel: an x86 bzImage or an ELF vmlinux (PVH entry when the ELF has one).
    #[arg(long, value_name = "PATH", required_unless_present = "config")]
    pub kernel: Option<PathBuf>,

    /// Take the VM's configuration from FILE, Cloud Hypervisor's VmConfig JSON (what
    /// `vm.create` takes: payload, cpus, memory, disks, net, rng, vsock, serial, console;
    /// docs/api.md); flags given as well override it (--disk and --net add devices). A
    /// field Polyvisor cannot honour is refused unless at its default, naming the field.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Initial ramdisk loaded for the kernel.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// Kernel command line (the default names this architecture's console: ttyS0 on
    /// x86_64 and aarch64, ttysclp0 on s390x).
    #[arg(long, value_name = "STR", default_value = crate::host::DEFAULT_CMDLINE)]
    pub cmdline: String,

    /// Number of vCPUs, from 1 up to the host's KVM limit.
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_cpus)]
    pub cpus: u32,

    /// Guest memory: bytes, or with a K, M, G or T suffix (e.g. 512M, 2G).
    #[arg(long, value_name = "SIZE", default_value = DEFAULT_MEMORY)]
    pub memory: String,

    /// Virtio block device (virtio-blk; virtio-mmio on x86_64/aarch64, virtio-ccw on s390x)
    /// backed by the raw image P, a regular file or a host block device whose size is a
    /// whole number of 512-byte sectors (repeatable; the guest sees them in this order,
    /// /dev/vda first). The image is locked while in use: shared with `readonly=on`
    /// (writes get an I/O error, the file is untouched), exclusive otherwise. `direct=on`
    /// bypasses the host's page cache (O_DIRECT) and keeps up to 64 requests in flight
    /// with io_uring where the host has it; `serial=S` (1 to 20 bytes) is what the
    /// guest reads as the disk's serial; `id=ID` names it in messages. `on`/`off` and
    /// `true`/`false` are accepted.
    #[arg(long, value_name = "path=P[,readonly=on][,direct=on][,serial=S][,id=ID]", value_parser = parse_disk)]
    pub disk: Vec<DiskConfig>,

    /// Virtio network device (virtio-net; virtio-mmio on x86_64/aarch64, virtio-ccw on
    /// s390x) on the host tap interface NAME (repeatable; the guest sees them in this order,
    /// eth0 first). An existing tap (e.g. from `ip tuntap add`) is attached; one that does
    /// not exist is created when polyvisor may (CAP_NET_ADMIN) and goes away when it ends.
    /// `mac=M` is the guest's address (default: a locally administered one derived from
    /// NAME, the same every run); `ip=A,mask=M` give the host side an IPv4 address and bring
    /// the tap up (CAP_NET_ADMIN); `id=ID` names it in messages.
    #[arg(long, value_name = "tap=NAME[,mac=M][,ip=A,mask=M][,id=ID]", value_parser = parse_net)]
    pub net: Vec<NetConfig>,

    /// Virtio entropy device (virtio-rng; virtio-mmio on x86_64/aarch64, virtio-ccw on
    /// s390x) fed from the host's /dev/urandom.
    #[arg(long)]
    pub rng: bool,

    /// Virtio socket device (virtio-vsock) for guest CID N (3 to 4294967294), its host side
    /// on the Unix socket PATH, as Firecracker and Cloud Hypervisor do it: a host process
    /// connects to PATH and writes `CONNECT <port>\n` to reach guest port <port> (answered
    /// `OK <local port>\n`); a guest connecting to host port P (CID 2) reaches the Unix
    /// socket PATH_P. PATH is created (a stale socket nobody listens on is replaced) and
    /// removed at exit; its directory must exist. `id=ID` names it in messages.
    #[arg(long, value_name = "cid=N,socket=PATH[,id=ID]", value_parser = parse_vsock)]
    pub vsock: Option<VsockConfig>,

    /// Serial console: `tty` (stdout; stdin when it is a terminal or pipe), `off`, or
    /// `file=PATH` (created or truncated; `,max-size=SIZE` keeps only the first SIZE bytes).
    /// Output the sink cannot take at once is dropped and counted, never waited for.
    #[arg(long, value_name = "tty|off|file=PATH[,max-size=SIZE]", default_value = "tty", value_parser = parse_console)]
    pub console: ConsoleMode,

    /// Map the boot timer (MMIO 0xc000_0000 on x86_64, 0x0902_0000 on aarch64): the guest's
    /// first write of 123 there is logged with the time since polyvisor started (for
    /// benchmarks).
    #[arg(long)]
    pub boot_timer: bool,

    /// Give the guest an i8254 PIT (x86_64 only; KVM's in-kernel PIT). Off by default:
    /// Linux takes the TSC frequency from kvmclock and runs the LAPIC timer, and the PIT
    /// makes every VM's start and teardown slower. For guests that need a PIT (legacy
    /// kernels booted with `clocksource=pit`, or `nolapic`).
    #[arg(long)]
    pub pit: bool,

    /// On SIGTERM, press the guest's power button (x86_64: ACPI, arm64: GPIO key, s390x: SCLP
    /// signal quiesce) and wait up to SECONDS for it to power off before stopping it; 0 stops
    /// it at once.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_shutdown_timeout)]
    pub shutdown_timeout: std::time::Duration,

    /// What a guest reset does: `exit` ends the run (exit 0, `guest reset`); `restart`
    /// boots the guest again as a fresh machine.
    #[arg(long, value_name = "exit|restart", default_value = "exit")]
    pub on_reset: OnReset,

    /// Serve the management API (Cloud Hypervisor's REST API: HTTP/1.1 and JSON) on the
    /// Unix socket PATH while the guest runs: `polyvisor remote`, ch-remote or curl
    /// `--unix-socket` can ping, inspect, pause, resume, press the power button, shut down,
    /// reboot or delete the VM, and plug disks, taps and a vsock in and out where the
    /// backend can hotplug (s390x; docs/api.md). PATH is created with mode 0600 (a stale
    /// socket is replaced, anything else there is refused) and removed at exit. A guest
    /// that powers off still ends the run; after `vm.shutdown` or `vm.delete` polyvisor
    /// serves on until `vmm.shutdown` or a stop signal.
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,
    /// Seccomp filters, one per thread kind (main with console input, vCPU, each virtio
    /// device's worker, console output, the management API), installed before the guest runs: `true` kills polyvisor
    /// on a system call its thread has no business making (SIGSYS, logged by the kernel),
    /// `log` lets the call through and has the kernel log it (audit/kmsg), `false` installs
    /// none. `no_new_privs` is set in every case. See SECURITY.md.
    #[arg(long, value_name = "true|log|false", default_value = "true", value_parser = parse_seccomp)]
    pub seccomp: crate::seccomp::Mode,
}

fn parse_seccomp(s: &str) -> Result<crate::seccomp::Mode, String> {
    s.parse()
}

pub use crate::host::DEFAULT_CMDLINE;

/// When `args` (without the program name) run `polyvisor run ... --config FILE`: the
/// same arguments with FILE's `VmConfig` in place of `--config FILE`, as flags right after
/// `run`, so that flags given on the command line override it (parse the result with
/// [`Cli`]'s command and `args_override_self`). `Ok(None)` without `--config`; the error is
/// one line naming `--config` and the file.
pub fn expand_config_file(
    args: &[std::ffi::OsString],
) -> Result<Option<Vec<std::ffi::OsString>>, String> {
    let Some(run) = args.iter().position(|a| a == "run") else {
        return Ok(None);
    };
    let mut rest = Vec::new();
    let mut file = None;
    let mut it = args[run + 1..].iter();
    while let Some(a) = it.next() {
        let text = a.to_string_lossy();
        if text == "--config" {
            file = it.next().map(PathBuf::from);
            if file.is_none() {
                return Ok(None); // clap says what is missing
            }
        } else if let Some(path) = text.strip_prefix("--config=") {
            file = Some(PathBuf::from(path));
        } else {
            rest.push(a.clone());
        }
    }
    let Some(file) = file else {
        return Ok(None);
    };
    let fail = |why: String| format!("--config {file:?}: {why}");
    let text = std::fs::read_to_string(&file).map_err(|e| fail(e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("not valid JSON: {e}")))?;
    let from_file = crate::api::vm_create::to_args(&json).map_err(|e| fail(e.to_string()))?;
    let mut out: Vec<std::ffi::OsString> = args[..=run].to_vec();
    out.extend(from_file.into_iter().map(Into::into));
    out.extend(rest);
    Ok(Some(out))
}

impl RunArgs {
    /// Turn the parsed flags into a [`Config`], checking what clap could not
    /// (`--api-socket` is not part of it).
    pub fn into_config(self) -> Result<Config, crate::ConfigError> {
        let memory_bytes = parse_size(&self.memory).map_err(|reason| {
            crate::ConfigError::new(crate::config::Field::Memory, &self.memory, reason)
        })?;
        let cmdline = boot::check_cmdline(&self.cmdline).map_err(|e| {
            crate::ConfigError::new(crate::config::Field::Cmdline, "", e.to_string())
        })?;
        let config = Config {
            kernel: self.kernel.ok_or_else(|| {
                crate::ConfigError::new(crate::config::Field::Kernel, "", "a kernel is required")
            })?,
            initrd: self.initrd,
            cmdline,
            cpus: self.cpus,
            memory_bytes,
            disks: self.disk,
            nets: self.net,
            rng: self.rng,
            vsock: self.vsock,
            console: self.console,
            shutdown_timeout: self.shutdown_timeout,
            boot_timer: self.boot_timer,
            pit: self.pit,
            on_reset: self.on_reset,
            seccomp: self.seccomp,
        };
        config.check_host_memory(&self.memory)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("polyvisor").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let Some(Command::Run(a)) = parse(&["run", "--kernel", "/k"]).unwrap().command else {
            panic!("not a run command")
        };
        let c = a.into_config().unwrap();
        assert_eq!(c.cpus, 1);
        assert_eq!(c.memory_bytes, 512 << 20);
        assert_eq!(c.seccomp, crate::seccomp::Mode::Kill);
        assert_eq!(c.cmdline, DEFAULT_CMDLINE);
        assert_eq!(c.console, ConsoleMode::Tty);
        assert!(c.disks.is_empty() && c.nets.is_empty() && !c.rng && c.vsock.is_none());
        assert_eq!(c.shutdown_timeout, std::time::Duration::from_secs(10));
        assert!(!c.boot_timer);
        assert!(!c.pit);
        assert_eq!(c.on_reset, OnReset::Exit);
    }

    #[test]
    fn every_flag() {
        let Some(Command::Run(a)) = parse(&[
            "run",
            "--kernel",
            "/k",
            "--initrd",
            "/i",
            "--cmdline",
            "console=ttyS0 quiet",
            "--cpus",
            "2",
            "--memory",
            "1G",
            "--disk",
            "path=/d,readonly=on",
            "--disk",
            "path=/e",
            "--net",
            "tap=tap0",
            "--rng",
            "--vsock",
            "cid=3,socket=/tmp/v.sock",
            "--console",
            "off",
            "--shutdown-timeout",
            "30",
            "--boot-timer",
            "--pit",
            "--on-reset",
            "restart",
            "--seccomp",
            "log",
        ])
        .unwrap()
        .command
        else {
            panic!("not a run command")
        };
        let c = a.into_config().unwrap();
        assert_eq!(c.initrd, Some("/i".into()));
        assert_eq!(c.cmdline, "console=ttyS0 quiet");
        assert_eq!(c.cpus, 2);
        assert_eq!(c.memory_bytes, 1 << 30);
        assert_eq!(c.disks.len(), 2);
        assert!(c.disks[0].readonly);
        assert_eq!(c.nets[0].tap, "tap0");
        assert!(c.rng);
        assert_eq!(c.seccomp, crate::seccomp::Mode::Log);
        assert_eq!(c.vsock.as_ref().map(|v| v.cid), Some(3));
        assert_eq!(c.console, ConsoleMode::Off);
        assert_eq!(c.shutdown_timeout, std::time::Duration::from_secs(30));
        assert!(c.boot_timer);
        assert!(c.pit);
        assert_eq!(c.on_reset, OnReset::Restart);
    }

    #[test]
    fn errors_name_the_flag() {
        let e = parse(&["run", "--kernel", "/k", "--cpus", "0"]).unwrap_err();
        assert!(e.to_string().contains("--cpus"), "{e}");
        let e = parse(&["run", "--kernel", "/k", "--bogus"]).unwrap_err();
        assert!(e.to_string().contains("--bogus"), "{e}");
        assert!(parse(&["run"])
            .unwrap_err()
            .to_string()
            .contains("--kernel"));

        let Some(Command::Run(a)) = parse(&["run", "--kernel", "/k", "--memory", "banana"])
            .unwrap()
            .command
        else {
            panic!("not a run command")
        };
        let e = a.into_config().unwrap_err();
        assert_eq!(e.field, crate::config::Field::Memory);
        assert_eq!(e.value, "banana");
        let Some(Command::Run(a)) = parse(&["run", "--kernel", "/k", "--memory", "100000G"])
            .unwrap()
            .command
        else {
            panic!("not a run command")
        };
        assert!(a.into_config().unwrap_err().reason.contains("host"));
    }

    #[test]
    fn retired_commands_are_found_before_clap_and_unknown_to_it() {
        assert_eq!(retired_command(&["manpage"]), Some("manpage"));
        assert_eq!(
            retired_command(&["--log-level", "debug", "completions", "bash"]),
            Some("completions")
        );
        assert_eq!(retired_command(&["--log-file", "manpage", "run"]), None);
        assert_eq!(retired_command(&["run", "--kernel", "manpage"]), None);
        assert_eq!(retired_command::<&str>(&[]), None);
        assert!(parse(&["manpage"]).is_err());
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("manpage") && !help.contains("completions"));
    }

    #[test]
    fn help_mentions_every_flag() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        for flag in [
            "--kernel",
            "--initrd",
            "--cmdline",
            "--cpus",
            "--memory",
            "--disk",
            "--net",
            "--rng",
            "--vsock",
            "--console",
            "--shutdown-timeout",
            "--boot-timer",
            "--pit",
            "--on-reset",
            "--api-socket",
            "--config",
        ] {
            assert!(help.contains(flag), "{flag} missing from help");
        }
        Cli::command().debug_assert();
    }
}
