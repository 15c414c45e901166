//! The `polyvisor` binary itself: built for this test (so `cargo test --workspace` always
//! leaves a fresh `target/<profile>/polyvisor` for the guest tests in `tests/`), and its
//! version and help contract.

use std::process::Command;

#[test]
fn version_and_help_exit_0_on_stdout() {
    let bin = env!("CARGO_BIN_EXE_polyvisor");
    let v = Command::new(bin).arg("--version").output().unwrap();
    assert!(v.status.success());
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("polyvisor {}", env!("CARGO_PKG_VERSION"))
    );
    let h = Command::new(bin).args(["run", "--help"]).output().unwrap();
    assert!(h.status.success());
    assert!(String::from_utf8_lossy(&h.stdout).contains("--kernel <PATH>"));
    assert!(h.stderr.is_empty());
}
