// SPDX-License-Identifier: Apache-2.0
//! The configuration fields an error can be about, by the names a user knows them by: the
//! `polyvisor run` flag, and the field of Cloud Hypervisor's `VmConfig` JSON the management
//! API will accept (where it has one).

/// One field of the VM configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Kernel,
    Initrd,
    Cmdline,
    Cpus,
    Memory,
    Disk,
    Net,
    Rng,
    Vsock,
    Console,
    ShutdownTimeout,
    BootTimer,
    Pit,
    OnReset,
    ApiSocket,
    ConfigFile,
    Seccomp,
}

impl Field {
    /// Every field, in `--help` order.
    pub const ALL: [Field; 17] = [
        Field::Kernel,
        Field::Initrd,
        Field::Cmdline,
        Field::Cpus,
        Field::Memory,
        Field::Disk,
        Field::Net,
        Field::Rng,
        Field::Vsock,
        Field::Console,
        Field::ShutdownTimeout,
        Field::BootTimer,
        Field::Pit,
        Field::OnReset,
        Field::ApiSocket,
        Field::ConfigFile,
        Field::Seccomp,
    ];

    /// The `polyvisor run` flag, e.g. `--memory`.
    pub fn flag(self) -> &'static str {
        match self {
            Field::Kernel => "--kernel",
            Field::Initrd => "--initrd",
            Field::Cmdline => "--cmdline",
            Field::Cpus => "--cpus",
            Field::Memory => "--memory",
            Field::Disk => "--disk",
            Field::Net => "--net",
            Field::Rng => "--rng",
            Field::Vsock => "--vsock",
            Field::Console => "--console",
            Field::ShutdownTimeout => "--shutdown-timeout",
            Field::BootTimer => "--boot-timer",
            Field::Pit => "--pit",
            Field::OnReset => "--on-reset",
            Field::ApiSocket => "--api-socket",
            Field::ConfigFile => "--config",
            Field::Seccomp => "--seccomp",
        }
    }

    /// The field of Cloud Hypervisor's `VmConfig` JSON (its REST API's `vm.create` body)
    /// that carries the same setting, e.g. `memory.size`; `None` for what only Polyvisor
    /// has.
    pub fn api_field(self) -> Option<&'static str> {
        match self {
            Field::Kernel => Some("payload.kernel"),
            Field::Initrd => Some("payload.initramfs"),
            Field::Cmdline => Some("payload.cmdline"),
            Field::Cpus => Some("cpus.boot_vcpus"),
            Field::Memory => Some("memory.size"),
            Field::Disk => Some("disks"),
            Field::Net => Some("net"),
            Field::Rng => Some("rng"),
            Field::Vsock => Some("vsock"),
            Field::Console => Some("serial"),
            // A process setting in Cloud Hypervisor too (its --seccomp), not in VmConfig.
            Field::ShutdownTimeout
            | Field::BootTimer
            | Field::Pit
            | Field::OnReset
            | Field::ApiSocket
            | Field::ConfigFile
            | Field::Seccomp => None,
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.flag())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_field_is_a_run_flag_and_every_run_flag_a_field() {
        let cli = crate::cli::Cli::command();
        let run = cli.find_subcommand("run").unwrap();
        let mut flags: Vec<String> = run
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| *l != "help")
            .map(|l| format!("--{l}"))
            .collect();
        flags.sort();
        let mut fields: Vec<String> = Field::ALL.iter().map(|f| f.flag().to_string()).collect();
        fields.sort();
        assert_eq!(flags, fields);
        let mut api: Vec<&str> = Field::ALL.iter().filter_map(|f| f.api_field()).collect();
        let named = api.len();
        api.sort();
        api.dedup();
        assert_eq!(api.len(), named, "two fields share an API name: {api:?}");
    }
}
