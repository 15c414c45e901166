//! The `polyvisor` binary itself: built for this test (so `cargo test --workspace` always
//! leaves a fresh `target/<profile>/polyvisor` for the guest tests in `tests/`), and its
//! version and help contract.

use std::process::Command;

/// Under qemu-user (foreign-target test runs) the kernel cannot exec the foreign binary
/// from inside the emulated test process (no binfmt_misc handler); say so and skip there.
fn can_exec(bin: &str) -> bool {
    match Command::new(bin).arg("--version").output() {
        Ok(_) => true,
        Err(e) if e.raw_os_error() == Some(8) => {
            eprintln!("cannot exec {bin} here (ENOEXEC: foreign binary without binfmt_misc); skipped");
            false
        }
        Err(e) => panic!("running {bin}: {e}"),
    }
}

#[test]
fn version_and_help_exit_0_on_stdout() {
    let bin = env!("CARGO_BIN_EXE_polyvisor");
    if !can_exec(bin) {
        return;
    }
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
