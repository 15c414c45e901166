// SPDX-License-Identifier: Apache-2.0
//! Build settings every way of building `polyvisor` must get, whatever `RUSTFLAGS` or
//! `.cargo/config.toml` say (distributions set `RUSTFLAGS` in the environment, which makes
//! cargo ignore a config file's target `rustflags`):
//! - on s390x, the binary is linked with `--s390-pgste`: KVM refuses `KVM_CREATE_VM`
//!   (EINVAL) to a process without page-status tables;
//! - `--version` names the commit it was built from (`POLYVISOR_COMMIT` overrides, for
//!   builds from a tarball; "unknown" when neither is there).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("s390x") {
        println!("cargo:rustc-link-arg-bins=-Wl,--s390-pgste");
    }

    println!("cargo:rerun-if-env-changed=POLYVISOR_COMMIT");
    let commit = std::env::var("POLYVISOR_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=POLYVISOR_COMMIT={commit}");
    // Rebuild when the checkout moves to another commit (only files that exist: a missing
    // path would make cargo rerun this script on every build).
    let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(&["rev-parse", "--git-path", &branch]));
        watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watch.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
