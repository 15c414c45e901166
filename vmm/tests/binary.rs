// SPDX-License-Identifier: Apache-2.0
//! Makes `cargo test --workspace` build the `polyvisor` binary (integration tests of a
//! package get its binaries), so the guest and CLI tests in `tests/` always run a fresh
//! `target/<profile>/polyvisor`. The CLI contract itself is tested there.

#[test]
fn polyvisor_binary_is_built() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_polyvisor"));
    let meta = std::fs::metadata(bin).expect("polyvisor binary missing");
    assert!(meta.is_file() && meta.len() > 0, "{}", bin.display());
}

/// KVM on s390x creates a VM only for a process with page-status tables: the binary must
/// carry the `PT_S390_PGSTE` program header whatever `RUSTFLAGS` said (`vmm/build.rs`).
/// Only an s390x binary has one to check.
#[test]
fn polyvisor_binary_has_the_pgste_program_header() {
    if std::env::consts::ARCH != "s390x" {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_polyvisor");
    let mut f = std::fs::File::open(bin).expect("polyvisor binary missing");
    assert!(
        arch_s390x::pgste::has_pgste_header(&mut f).expect("an ELF64 file"),
        "{bin} has no PT_S390_PGSTE program header"
    );
}
