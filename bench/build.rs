// SPDX-License-Identifier: Apache-2.0
//! On s390x, `polyvisor-bench` creates KVM VMs itself (the objects floor): like `polyvisor`
//! (vmm/build.rs), it is linked with `--s390-pgste`, without which KVM refuses
//! `KVM_CREATE_VM` (EINVAL) to the process.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("s390x") {
        println!("cargo:rustc-link-arg-bins=-Wl,--s390-pgste");
    }
}
