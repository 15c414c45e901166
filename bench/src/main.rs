// SPDX-License-Identifier: Apache-2.0
//! `polyvisor-bench`: see the crate docs and `--help`.

use std::process::ExitCode;

const USAGE: &str = "\
usage: polyvisor-bench [--runs N] [--exits K] [--polyvisor PATH] [--qemu PATH | --no-qemu]
                       [--json PATH]
       polyvisor-bench floor --kernel PATH [--memory-mib M]
       polyvisor-bench guest boot|pio|mmio|spin|rng PATH [--exits K]

Runs each figure N times (default 20) for polyvisor, the KVM floor and QEMU microvm, and
prints a markdown table (medians, min-max, ratios) and the path of a JSON report.
`floor` runs one guest on the minimal KVM program; `guest` writes a bench guest kernel.
x86_64 hosts with /dev/kvm only.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    run(&args)
}

#[cfg(target_arch = "x86_64")]
fn run(args: &[String]) -> ExitCode {
    match polyvisor_bench::bench::main(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("polyvisor-bench: error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn run(_args: &[String]) -> ExitCode {
    eprintln!(
        "polyvisor-bench: error: the benchmarks run on x86_64 hosts only (KVM on x86_64, \
         QEMU microvm); this binary was built for {}",
        std::env::consts::ARCH
    );
    ExitCode::from(2)
}
