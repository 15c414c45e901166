// SPDX-License-Identifier: Apache-2.0
//! The `polyvisor` command line. `--help`, the README and the man page describe these
//! flags; keep them in step.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    parse_console, parse_cpus, parse_disk, parse_net, parse_shutdown_timeout, parse_size, Config,
    ConsoleMode, DiskConfig, NetConfig,
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
    pub command: Command,

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
    /// Print a shell completion script (for packagers: bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the polyvisor(1) man page in roff (for packagers).
    Manpage,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Guest kernel: an x86 bzImage or an ELF vmlinux (PVH entry when the ELF has one).
    #[arg(long, value_name = "PATH")]
    pub kernel: PathBuf,

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
    /// bypasses the host's page cache (O_DIRECT); `serial=S` (1 to 20 bytes) is what the
    /// guest reads as the disk's serial; `id=ID` names it in messages. `on`/`off` and
    /// `true`/`false` are accepted.
    #[arg(long, value_name = "path=P[,readonly=on][,direct=on][,serial=S][,id=ID]", value_parser = parse_disk)]
    pub disk: Vec<DiskConfig>,

    /// Virtio network device on tap interface NAME (repeatable). Not available yet: refused with a clear error.
    #[arg(long, value_name = "tap=NAME[,mac=M]", value_parser = parse_net)]
    pub net: Vec<NetConfig>,

    /// Virtio entropy device (virtio-rng; virtio-mmio on x86_64/aarch64, virtio-ccw on
    /// s390x) fed from the host's /dev/urandom.
    #[arg(long)]
    pub rng: bool,

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

    /// On SIGTERM, press the guest's power button (x86_64: ACPI, arm64: GPIO key, s390x: SCLP
    /// signal quiesce) and wait up to SECONDS for it to power off before stopping it; 0 stops
    /// it at once.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_shutdown_timeout)]
    pub shutdown_timeout: std::time::Duration,

    /// What a guest reset does: `exit` ends the run (exit 0, `guest reset`); `restart`
    /// boots the guest again as a fresh machine.
    #[arg(long, value_name = "exit|restart", default_value = "exit")]
    pub on_reset: OnReset,
}

/// Write the completion script for `shell` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "polyvisor", out);
}

pub use crate::host::DEFAULT_CMDLINE;

impl RunArgs {
    /// Turn the parsed flags into a [`Config`], checking what clap could not.
    pub fn into_config(self) -> Result<Config, crate::ConfigError> {
        let memory_bytes = parse_size(&self.memory)
            .map_err(|reason| crate::ConfigError::new("--memory", &self.memory, reason))?;
        let cmdline = boot::check_cmdline(&self.cmdline)
            .map_err(|e| crate::ConfigError::new("--cmdline", "", e.to_string()))?;
        let config = Config {
            kernel: self.kernel,
            initrd: self.initrd,
            cmdline,
            cpus: self.cpus,
            memory_bytes,
            disks: self.disk,
            nets: self.net,
            rng: self.rng,
            console: self.console,
            shutdown_timeout: self.shutdown_timeout,
            boot_timer: self.boot_timer,
            on_reset: self.on_reset,
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
        let Command::Run(a) = parse(&["run", "--kernel", "/k"]).unwrap().command else {
            panic!("not a run command")
        };
        let c = a.into_config().unwrap();
        assert_eq!(c.cpus, 1);
        assert_eq!(c.memory_bytes, 512 << 20);
        assert_eq!(c.cmdline, DEFAULT_CMDLINE);
        assert_eq!(c.console, ConsoleMode::Tty);
        assert!(c.disks.is_empty() && c.nets.is_empty() && !c.rng);
        assert_eq!(c.shutdown_timeout, std::time::Duration::from_secs(10));
        assert!(!c.boot_timer);
        assert_eq!(c.on_reset, OnReset::Exit);
    }

    #[test]
    fn every_flag() {
        let Command::Run(a) = parse(&[
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
            "--console",
            "off",
            "--shutdown-timeout",
            "30",
            "--boot-timer",
            "--on-reset",
            "restart",
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
        assert_eq!(c.console, ConsoleMode::Off);
        assert_eq!(c.shutdown_timeout, std::time::Duration::from_secs(30));
        assert!(c.boot_timer);
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

        let Command::Run(a) = parse(&["run", "--kernel", "/k", "--memory", "banana"])
            .unwrap()
            .command
        else {
            panic!("not a run command")
        };
        let e = a.into_config().unwrap_err();
        assert_eq!(e.flag, "--memory");
        assert_eq!(e.value, "banana");
        let Command::Run(a) = parse(&["run", "--kernel", "/k", "--memory", "100000G"])
            .unwrap()
            .command
        else {
            panic!("not a run command")
        };
        assert!(a.into_config().unwrap_err().reason.contains("host"));
    }

    #[test]
    fn manpage_and_completions_cover_run() {
        let mut man = Vec::new();
        crate::manpage::write(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(man.starts_with(".ie \\n(.g .ds Aq"), "roff header");
        for flag in [
            "kernel", "initrd", "cmdline", "cpus", "memory", "disk", "console",
        ] {
            assert!(
                man.contains(&format!("\\-\\-{flag}")),
                "{flag} missing from man page"
            );
        }
        let mut bash = Vec::new();
        write_completions(clap_complete::Shell::Bash, &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("--kernel") && bash.contains("complete -F"));
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
            "--console",
            "--shutdown-timeout",
            "--boot-timer",
            "--on-reset",
        ] {
            assert!(help.contains(flag), "{flag} missing from help");
        }
        Cli::command().debug_assert();
    }
}
