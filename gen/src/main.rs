// SPDX-License-Identifier: Apache-2.0
//! `polyvisor-gen OUTDIR`: writes what packages ship next to the `polyvisor` binary, from the
//! same CLI definition (`vmm::cli::Cli`) the binary parses with, so they cannot drift:
//!
//! ```text
//! OUTDIR/polyvisor.1                        man page (roff)
//! OUTDIR/completions/polyvisor.bash         bash   (/usr/share/bash-completion/completions/polyvisor)
//! OUTDIR/completions/_polyvisor             zsh    (/usr/share/zsh/vendor-completions/_polyvisor)
//! OUTDIR/completions/polyvisor.fish         fish   (/usr/share/fish/vendor_completions.d/)
//! OUTDIR/completions/polyvisor.elv          elvish
//! OUTDIR/completions/_polyvisor.ps1         PowerShell
//! ```
//!
//! It runs on the build host whatever the release target is (the text does not depend on
//! the target), which is how `cross/release` makes them for aarch64 and s390x packages.
//! The generators live only here (`manpage`), not in the `polyvisor` binary, so they are
//! not resident in every running VM; `polyvisor manpage` and `polyvisor completions` (retired)
//! say so.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap_complete::Shell;

mod manpage;

const USAGE: &str =
    "usage: polyvisor-gen OUTDIR  (writes OUTDIR/polyvisor.1 and OUTDIR/completions/*)";

fn write_file(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {path:?}"))?;
    let mut out = BufWriter::new(file);
    fill(&mut out).with_context(|| format!("writing {path:?}"))?;
    out.flush().with_context(|| format!("writing {path:?}"))?;
    Ok(())
}

fn completion_file(shell: Shell) -> &'static str {
    match shell {
        Shell::Bash => "polyvisor.bash",
        Shell::Zsh => "_polyvisor",
        Shell::Fish => "polyvisor.fish",
        Shell::Elvish => "polyvisor.elv",
        Shell::PowerShell => "_polyvisor.ps1",
        _ => "polyvisor.completion",
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        bail!("{USAGE}");
    };
    if out == "-h" || out == "--help" {
        println!("{USAGE}");
        return Ok(());
    }
    generate(&PathBuf::from(out))
}

/// Write the man page and the completion scripts under `out`.
fn generate(out: &Path) -> Result<()> {
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions).with_context(|| format!("creating {completions:?}"))?;

    write_file(&out.join("polyvisor.1"), |w| manpage::write(w))?;
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        write_file(&completions.join(completion_file(shell)), |w| {
            manpage::write_completions(shell, w);
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_man_page_and_every_completion() {
        let out = std::env::temp_dir().join(format!("polyvisor-gen-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        generate(&out).unwrap();
        let page = std::fs::read_to_string(out.join("polyvisor.1")).unwrap();
        assert!(page.contains("EXIT STATUS") && page.contains("POLYVISOR_LOG"));
        for name in [
            "polyvisor.bash",
            "_polyvisor",
            "polyvisor.fish",
            "polyvisor.elv",
            "_polyvisor.ps1",
        ] {
            let text = std::fs::read_to_string(out.join("completions").join(name)).unwrap();
            assert!(
                text.contains("kernel") && text.contains("polyvisor"),
                "{name}"
            );
        }
        std::fs::remove_dir_all(&out).unwrap();
    }
}
