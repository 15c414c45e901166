// SPDX-License-Identifier: Apache-2.0
//! `polyvisor run --config FILE`: Cloud Hypervisor's VmConfig JSON as a file, through the
//! flags' validation; flags given as well override it; a refused field is one line naming
//! `--config`, the file and the field, exit 2.

mod cli_common;

use cli_common::{good_kernel, path_str, CONFIG};
use polyvisor_tests::{Polyvisor, TempDir};

fn run_config(dir: &TempDir, json: &str, extra: &[&str]) -> polyvisor_tests::RunOutput {
    let file = dir.write("vm.json", json.as_bytes());
    Polyvisor::new()
        .arg("run")
        .arg("--config")
        .arg(&file)
        .args(extra)
        .run()
}

#[test]
fn a_vm_config_file_boots_and_flags_override_it() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let k = good_kernel(&dir);
    let json = serde_json::json!({
        "payload": {"kernel": path_str(&k)},
        "cpus": {"boot_vcpus": 2, "max_vcpus": 2},
        "memory": {"size": 128u64 << 20},
        "serial": {"mode": "Tty"},
        "console": {"mode": "Off"}
    })
    .to_string();
    let out = run_config(&dir, &json, &[]);
    out.assert_guest_reset();
    out.assert_stdout_contains("ok");
    // The command line wins: the console off, so nothing on stdout.
    let out = run_config(&dir, &json, &["--console", "off", "--cpus", "1"]);
    out.assert_guest_reset();
    assert!(!out.stdout.contains("ok"), "{out}");
}

#[test]
fn refused_vm_config_files_name_the_field() {
    let dir = TempDir::new();
    let k = good_kernel(&dir);
    let kernel = path_str(&k).to_string();
    let with = |extra: &str| format!(r#"{{"payload":{{"kernel":"{kernel}"}}{extra}}}"#);
    run_config(
        &dir,
        &with(r#","memory":{"size":1073741824,"hugepages":true}"#),
        &[],
    )
    .assert_clean_error(CONFIG, &["--config", "vm.json", "memory.hugepages"]);
    run_config(
        &dir,
        &with(r#","cpus":{"boot_vcpus":1,"max_vcpus":4}"#),
        &[],
    )
    .assert_clean_error(CONFIG, &["--config", "cpus.max_vcpus", "hotplug"]);
    run_config(&dir, "{\"payload\":", &[]).assert_clean_error(CONFIG, &["--config", "JSON"]);
    run_config(&dir, &with(r#","memory":{"size":1000}"#), &[])
        .assert_clean_error(CONFIG, &["--memory", "1000"]);
    Polyvisor::new()
        .args(["run", "--config", "/nonexistent/vm.json"])
        .run()
        .assert_clean_error(CONFIG, &["--config", "/nonexistent/vm.json"]);
}
