//! Makes `cargo test --workspace` build the `polyvisor` binary (integration tests of a
//! package get its binaries), so the guest and CLI tests in `tests/` always run a fresh
//! `target/<profile>/polyvisor`. The CLI contract itself is tested there.

#[test]
fn polyvisor_binary_is_built() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_polyvisor"));
    let meta = std::fs::metadata(bin).expect("polyvisor binary missing");
    assert!(meta.is_file() && meta.len() > 0, "{}", bin.display());
}
