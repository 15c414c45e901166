// SPDX-License-Identifier: Apache-2.0
//! What the CLI contract tests (`cli.rs`, `cli_devices.rs`) share: exit-code sets, a good
//! kernel and a run with it.
#![allow(dead_code)] // each test crate uses its own part

use std::path::PathBuf;

use polyvisor_tests::guest::pvh_print_and_reset;
use polyvisor_tests::{Polyvisor, RunOutput, TempDir};

/// Bad command line or configuration.
pub const CONFIG: &[i32] = &[2];
/// Either (a bad file may be found while validating or while loading).
pub const CONFIG_OR_RUNTIME: &[i32] = &[1, 2];

/// A valid kernel that prints `ok` and resets.
pub fn good_kernel(dir: &TempDir) -> PathBuf {
    dir.write("good.elf", &pvh_print_and_reset("ok\n"))
}

/// `polyvisor run --kernel <good kernel> <args...>`.
pub fn run_with_good_kernel(args: &[&str]) -> RunOutput {
    let dir = TempDir::new();
    let k = good_kernel(&dir);
    Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&k)
        .args(args)
        .run()
}

pub fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}
