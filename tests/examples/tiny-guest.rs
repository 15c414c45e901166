//! `cargo run -p polyvisor-tests --example tiny-guest -- PATH [TEXT]`: writes a tiny x86_64
//! PVH guest to PATH that prints TEXT (default `polyvisor tiny guest: ok`) and a newline on
//! COM1, then resets through the i8042 (so `polyvisor run --kernel PATH` prints it and exits
//! 0 with `guest reset`). For checks outside the test suite, e.g. cross/test's packaging
//! level runs it with the polyvisor installed from the .deb.

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: tiny-guest PATH [TEXT]");
        std::process::exit(2);
    };
    let text = args
        .next()
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_else(|| "polyvisor tiny guest: ok".into());
    let image = polyvisor_tests::guest::pvh_print_and_reset(&format!("{text}\n"));
    if let Err(e) = std::fs::write(&path, image) {
        eprintln!("tiny-guest: writing {}: {e}", path.to_string_lossy());
        std::process::exit(1);
    }
}
