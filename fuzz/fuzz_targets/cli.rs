// SPDX-License-Identifier: Apache-2.0
//! The command line and the configuration checks: argument vectors built from the input
//! (known flags with fuzzed values, and raw words), parsed as `polyvisor` parses its own
//! (`retired_command`, clap, `RunArgs::into_config`), plus each value parser on its own.
//! Whatever the arguments, the answer is a config or an error, never a panic.
#![no_main]

use arbitrary::Arbitrary;
use clap::Parser;
use libfuzzer_sys::fuzz_target;
use vmm::cli::{retired_command, Cli, Command};
use vmm::config;

const FLAGS: &[&str] = &[
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
    "--boot-timer",
    "--pit",
    "--shutdown-timeout",
    "--on-reset",
    "--log-level",
    "--log-file",
    "--api-socket",
    "--config",
    "--help",
    "--version",
];

#[derive(Arbitrary, Debug)]
enum Arg {
    /// A known flag and its value, as two words or as `--flag=value`.
    Flag {
        flag: u8,
        value: String,
        joined: bool,
    },
    Word(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    run: bool,
    args: Vec<Arg>,
    /// One value for each parser on its own.
    value: String,
}

fuzz_target!(|input: Input| {
    let mut argv = vec!["polyvisor".to_string()];
    if input.run {
        argv.push("run".into());
    }
    for a in input.args.iter().take(32) {
        match a {
            Arg::Flag {
                flag,
                value,
                joined,
            } => {
                let flag = FLAGS[usize::from(*flag) % FLAGS.len()];
                if *joined {
                    argv.push(format!("{flag}={value}"));
                } else {
                    argv.push(flag.into());
                    argv.push(value.clone());
                }
            }
            Arg::Word(w) => argv.push(w.clone()),
        }
    }
    let _ = retired_command(&argv[1..]);
    if let Ok(cli) = Cli::try_parse_from(&argv) {
        if let Some(Command::Run(args)) = cli.command {
            let _ = args.into_config();
        }
    }
    let v = input.value.as_str();
    let _ = config::parse_size(v);
    let _ = config::parse_byte_count(v);
    let _ = config::parse_cpus(v);
    let _ = config::parse_disk(v);
    let _ = config::parse_vsock(v);
    let _ = config::parse_mac(v);
    let _ = config::parse_net(v);
    let _ = config::parse_shutdown_timeout(v);
    let _ = config::parse_console(v);
    let _ = boot::check_cmdline(v);
});
