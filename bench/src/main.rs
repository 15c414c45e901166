// SPDX-License-Identifier: Apache-2.0
//! `polyvisor-bench`: see the crate docs and `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use polyvisor_bench::args::{number, value};
use polyvisor_bench::objects;

const USAGE: &str = "\
usage: polyvisor-bench [--runs N] [--exits K] [--polyvisor PATH] [--qemu PATH | --no-qemu]
                       [--json PATH]
       polyvisor-bench floor --kernel PATH [--memory-mib M]
       polyvisor-bench guest boot|pio|mmio|spin|rng PATH [--exits K]
       polyvisor-bench objects [--runs N] [--polyvisor PATH] [--memory-mib M]
       polyvisor-bench objects-floor --objects LIST --kernel PATH [--memory-mib M]

Runs each figure N times (default 20) for polyvisor, the KVM floor and QEMU microvm, and
prints a markdown table (medians, min-max, ratios) and the path of a JSON report.
`floor` runs one guest on the minimal KVM program; `guest` writes a bench guest kernel.
These run on x86_64 hosts with /dev/kvm only.

`objects` (aarch64 and s390x hosts with /dev/kvm) times a tiny guest that powers off at
once, process start to exit, N times each (default 10), interleaved: polyvisor (when
--polyvisor is given: as run, with --seccomp false, and --version alone) and floors that
create polyvisor's objects, the irqchip only (the vGIC; s390x: user SIGP), nothing, and
(s390x) the FLIC, and this binary's --help alone; one `objects:` line per peer and a
markdown table. `objects-floor` is one such floor run (LIST: aarch64 vgic, irqfd=SPI;
s390x user-sigp, css-support, flic; or bare).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = match args.first().map(String::as_str) {
        Some("objects") => objects_main(&args[1..]),
        Some("objects-floor") => objects_floor(&args[1..]),
        _ => run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("polyvisor-bench: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn objects_main(args: &[String]) -> Result<u8, String> {
    let mut o = objects::Options {
        runs: 10,
        polyvisor: None,
        memory_mib: 128,
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--runs" => o.runs = number(value(args, &mut i, "--runs")?, "--runs")?,
            "--polyvisor" => o.polyvisor = Some(PathBuf::from(value(args, &mut i, "--polyvisor")?)),
            "--memory-mib" => {
                o.memory_mib = number(value(args, &mut i, "--memory-mib")?, "--memory-mib")?
            }
            other => return Err(format!("objects: unknown argument '{other}' (see --help)")),
        }
        i += 1;
    }
    objects::main(&o)
}

fn objects_floor(args: &[String]) -> Result<u8, String> {
    let (mut list, mut kernel, mut mib) = (None, None, 128u64);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--objects" => list = Some(value(args, &mut i, "--objects")?),
            "--kernel" => kernel = Some(value(args, &mut i, "--kernel")?),
            "--memory-mib" => mib = number(value(args, &mut i, "--memory-mib")?, "--memory-mib")?,
            other => {
                return Err(format!(
                    "objects-floor: unknown argument '{other}' (see --help)"
                ))
            }
        }
        i += 1;
    }
    let objects = objects::Objects::parse(
        list.ok_or("objects-floor needs --objects")?,
        std::env::consts::ARCH,
    )?;
    let kernel = kernel.ok_or("objects-floor needs --kernel")?;
    let guest = std::fs::read(kernel).map_err(|e| format!("{kernel}: {e}"))?;
    let memory = mib
        .checked_mul(1 << 20)
        .ok_or_else(|| format!("--memory-mib {mib}: too large"))?;
    objects::floor(&guest, memory, &objects)?;
    Ok(0)
}

#[cfg(target_arch = "x86_64")]
fn run(args: &[String]) -> Result<u8, String> {
    polyvisor_bench::bench::main(args)
}

#[cfg(not(target_arch = "x86_64"))]
fn run(_args: &[String]) -> Result<u8, String> {
    Err(format!(
        "the benchmarks run on x86_64 hosts only (KVM on x86_64, QEMU microvm); this binary \
         was built for {} (its `objects` benchmark runs here)",
        std::env::consts::ARCH
    ))
}
