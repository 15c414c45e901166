// SPDX-License-Identifier: Apache-2.0
//! The polyvisor(1) man page and the shell completions, rendered from `vmm::cli::Cli` and
//! the contract in `vmm::manpage`. They live here, not in the VMM binary, so the roff and
//! completion generators are not resident in every running VM.

use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use vmm::cli::Cli;
use vmm::manpage::{DISK_IMAGES, ENVIRONMENT, EXIT_STATUSES, MANAGEMENT_API, SANDBOX, SIGNALS};

/// Write the completion script for `shell` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "polyvisor", out);
}

fn section(roff: &mut Roff, title: &str, rows: &[(&str, &str)]) {
    roff.control("SH", [title]);
    for (term, text) in rows {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*text)]);
    }
}

/// Write the man page (roff): NAME, SYNOPSIS, DESCRIPTION, COMMANDS, the `run` OPTIONS,
/// DISK IMAGES, EXIT STATUS, SIGNALS, ENVIRONMENT and VERSION. It names no other page (there is none).
pub fn write(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;

    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(
        "Polyvisor boots a Linux guest kernel under KVM on x86_64 (bzImage or ELF vmlinux, \
         ACPI), aarch64 (arm64 Image, device tree) and s390x (kernel image or ELF, channel \
         I/O) and runs it until it powers off or resets. The guest's console is on stdout \
         (and reads stdin when it is a terminal or a pipe; on a terminal, Ctrl-A x stops the \
         VM); logs are on stderr.",
    )]);
    let commands: Vec<(String, String)> = cmd
        .get_subcommands()
        .map(|c| {
            (
                format!("polyvisor {}", c.get_name()),
                c.get_about().map(|a| a.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    let rows: Vec<(&str, &str)> = commands
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    section(&mut roff, "COMMANDS", &rows);
    roff.to_writer(out)?;

    if let Some(run) = cmd.find_subcommand("run") {
        clap_mangen::Man::new(run.clone()).render_options_section(out)?;
    }

    let mut roff = Roff::new();
    section(&mut roff, "DISK IMAGES", DISK_IMAGES);
    section(&mut roff, "MANAGEMENT API", MANAGEMENT_API);
    section(&mut roff, "SANDBOX", SANDBOX);
    section(&mut roff, "EXIT STATUS", EXIT_STATUSES);
    section(&mut roff, "SIGNALS", SIGNALS);
    section(&mut roff, "ENVIRONMENT", ENVIRONMENT);
    roff.to_writer(out)?;
    man.render_version_section(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_has_the_contract_and_names_no_missing_page() {
        let mut page = Vec::new();
        write(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "roff header");
        for section in [
            "DISK IMAGES",
            "MANAGEMENT API",
            "SANDBOX",
            "EXIT STATUS",
            "SIGNALS",
            "ENVIRONMENT",
            "COMMANDS",
            "OPTIONS",
        ] {
            assert!(
                page.contains(&format!(".SH \"{section}\""))
                    || page.contains(&format!(".SH {section}")),
                "{section}"
            );
        }
        assert!(!page.contains("EXTRA"));
        assert!(
            !page.contains("polyvisor\\-run(1)"),
            "no reference to a page we do not ship"
        );
        assert!(page.contains("POLYVISOR_LOG"));
        assert!(page.contains("SIGQUIT"));
        assert!(
            page.contains("polyvisor remote"),
            "the remote command is listed"
        );
        for flag in [
            "kernel",
            "initrd",
            "cmdline",
            "cpus",
            "memory",
            "disk",
            "net",
            "vsock",
            "console",
            "pit",
            "api\\-socket",
            "seccomp",
        ] {
            assert!(
                page.contains(&format!("\\-\\-{flag}")),
                "{flag} missing from man page"
            );
        }
        assert!(
            !page.contains("polyvisor manpage"),
            "the retired commands are not listed"
        );
        // The options as built: --net is described with its tap rules, nothing is refused.
        assert!(page.contains("CAP_NET_ADMIN"), "--net's tap rules");
        assert!(!page.contains("ot available yet"));
    }

    #[test]
    fn bash_completion_covers_run() {
        let mut bash = Vec::new();
        write_completions(clap_complete::Shell::Bash, &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        assert!(
            bash.contains("--kernel") && bash.contains("--pit") && bash.contains("complete -F")
        );
    }
}
