// SPDX-License-Identifier: Apache-2.0
//! `polyvisor`: the command-line entry point. The only place `anyhow`-style handling and
//! process exit codes live.

use std::process::ExitCode;

use clap::Parser;
use log::LevelFilter;
use vmm::cli::{Cli, Command};
use vmm::{logger, RunOutcome};

fn main() -> ExitCode {
    vmm::process_start();
    vmm::install_panic_policy();
    let level = std::env::var("POLYVISOR_LOG")
        .ok()
        .and_then(|s| logger::parse_level(&s))
        .unwrap_or(LevelFilter::Info);
    logger::init(level);

    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(cmd) = vmm::cli::retired_command(&argv) {
        log::error!(
            "`polyvisor {cmd}` is retired: the man page and shell completions are no longer \
             built into polyvisor; packages install them (man polyvisor), and \
             `polyvisor-gen OUTDIR` (the gen/ crate) writes OUTDIR/polyvisor.1 and \
             OUTDIR/completions/"
        );
        return ExitCode::from(2);
    }
    let parsed = match vmm::cli::expand_config_file(&argv) {
        Ok(None) => Cli::try_parse(),
        // `run --config FILE`: the file's settings as flags, the command line's after them
        // (the last of a flag wins).
        Ok(Some(expanded)) => {
            use clap::{CommandFactory, FromArgMatches};
            Cli::command()
                .args_override_self(true)
                .mut_subcommand("run", |run| run.args_override_self(true))
                .try_get_matches_from(std::iter::once("polyvisor".into()).chain(expanded))
                .and_then(|m| Cli::from_arg_matches(&m))
        }
        Err(line) => {
            log::error!("{line}");
            return ExitCode::from(2);
        }
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    if let Some(level) = cli.log_level {
        log::set_max_level(level);
    }
    if let Some(path) = &cli.log_file {
        if let Err(e) = logger::to_file(path) {
            log::error!("--log-file {path:?}: {e}");
            return ExitCode::from(2);
        }
    }
    let mut args = match cli.command {
        Some(Command::Run(args)) => args,
        None => {
            let Some(path) = &cli.api_socket else {
                log::error!(
                    "no command given: use `polyvisor run --kernel PATH ...` or \
                     `polyvisor --api-socket PATH` (see `polyvisor --help`)"
                );
                return ExitCode::from(2);
            };
            let outcome = vmm::api::run(None, path);
            logger::report_suppressed();
            vmm::terminal::restore();
            return exit_status(outcome);
        }
        Some(Command::Remote(remote)) => {
            let body = match vmm::remote::body(&remote.command, remote.argument.as_deref()) {
                Ok(body) => body,
                Err(e) => {
                    log::error!("remote {}: {e}", remote.command);
                    return ExitCode::from(2);
                }
            };
            return match vmm::remote::call(&remote.api_socket, &remote.command, body.as_deref()) {
                Ok(body) => {
                    if !body.is_empty() {
                        println!("{body}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    log::error!("remote {}: {e}", remote.command);
                    ExitCode::from(1)
                }
            };
        }
    };
    let api_socket = args.api_socket.take().or(cli.api_socket);
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match &api_socket {
        Some(path) => vmm::api::run(Some(config), path),
        None => vmm::run(&config),
    };
    logger::report_suppressed();
    // Whatever happened, the terminal is as it was (the console's guard restored it; this
    // covers a run that failed before the guard existed).
    vmm::terminal::restore();
    exit_status(outcome)
}

/// The exit status of a run (or of the VMM's life with `--api-socket`), logged.
fn exit_status(outcome: Result<RunOutcome, vmm::Error>) -> ExitCode {
    match outcome {
        Ok(RunOutcome::Poweroff) => {
            log::info!("guest powered off");
            ExitCode::SUCCESS
        }
        Ok(RunOutcome::Reset) => {
            log::info!("guest reset");
            ExitCode::SUCCESS
        }
        Ok(RunOutcome::ApiStop(how)) => {
            log::info!("the management API ended the VMM ({how:?})");
            ExitCode::SUCCESS
        }
        Ok(RunOutcome::GuestPanic) => {
            log::error!("guest panicked");
            ExitCode::from(vmm::EXIT_GUEST_PANIC)
        }
        Err(e) => {
            let code = e.exit_code();
            log::error!("{}", anyhow::Error::new(e));
            ExitCode::from(code as u8)
        }
    }
}

/// Help and version go to stdout with status 0; any other parse error is one line on
/// stderr naming the flag, status 2.
fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::InvalidUtf8 => {
            log::error!("{}", invalid_utf8_argument(std::env::args_os()));
            ExitCode::from(2)
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            log::error!(
                "no command given: use `polyvisor run --kernel PATH ...` or \
                 `polyvisor --api-socket PATH` (see `polyvisor --help`)"
            );
            ExitCode::from(2)
        }
        _ => {
            log::error!("{}", one_line(&e.to_string()));
            ExitCode::from(2)
        }
    }
}

/// Clap's message without its usage and tip paragraphs, folded onto one line.
fn one_line(rendered: &str) -> String {
    let text: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let joined = text.join(" ");
    let msg = joined.strip_prefix("error: ").unwrap_or(&joined);
    if msg.is_empty() {
        "invalid command line (see `polyvisor --help`)".to_string()
    } else {
        msg.to_string()
    }
}

/// Name the flag whose value is not UTF-8 (clap's own message does not say which).
fn invalid_utf8_argument(args: impl Iterator<Item = std::ffi::OsString>) -> String {
    let mut previous: Option<String> = None;
    for arg in args.skip(1) {
        match arg.into_string() {
            Ok(s) => previous = Some(s),
            Err(raw) => {
                let lossy = raw.to_string_lossy().into_owned();
                return match (&previous, lossy.split_once('=')) {
                    (_, Some((flag, _))) if flag.starts_with("--") => {
                        format!("{flag}: the value is not valid UTF-8: {lossy:?}")
                    }
                    (Some(flag), _) if flag.starts_with('-') => {
                        format!("{flag}: the value is not valid UTF-8: {lossy:?}")
                    }
                    _ => format!("argument {lossy:?} is not valid UTF-8"),
                };
            }
        }
    }
    "an argument is not valid UTF-8".to_string()
}
