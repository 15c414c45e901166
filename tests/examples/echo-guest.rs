// SPDX-License-Identifier: Apache-2.0
//! `cargo run -p polyvisor-tests --example echo-guest -- PATH`: writes a tiny x86_64 PVH
//! guest to PATH that prints `echo guest: type, q resets` on COM1, then echoes every byte
//! it receives on COM1 until it receives `q`, and resets through the i8042. For trying the
//! console at a terminal: `polyvisor run --kernel PATH`, type, Ctrl-A x or `q` to leave.

use polyvisor_tests::guest::{print, pvh_asm, pvh_kernel, reset_i8042, COM1};
use polyvisor_tests::Cond;

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: echo-guest PATH");
        std::process::exit(2);
    };
    let mut a = pvh_asm();
    print(&mut a, "echo guest: type, q resets\n");
    let poll = a.here_label();
    a.mov_dx(COM1 + 5); // line status register
    a.in_al_dx();
    a.test_al(1); // data ready?
    a.j(Cond::E, poll);
    a.mov_dx(COM1);
    a.in_al_dx(); // the byte
    a.out_dx_al(); // echoed
    a.cmp_al(b'q');
    a.j(Cond::Ne, poll);
    print(&mut a, "\nbye\n");
    reset_i8042(&mut a);
    if let Err(e) = std::fs::write(&path, pvh_kernel(a.finish())) {
        eprintln!("echo-guest: writing {}: {e}", path.to_string_lossy());
        std::process::exit(1);
    }
}
