// SPDX-License-Identifier: Apache-2.0
//! What each KVM object costs on aarch64 and s390x hosts (issue 19's "same scrutiny for the
//! aarch64 vGIC setup and s390x"): `polyvisor-bench objects` runs, interleaved, a tiny guest
//! that powers off at once under polyvisor and under floors — minimal KVM programs in this
//! crate that create the VM, its memory slot, one vCPU and a chosen list of objects, run the
//! same guest bytes and exit — and prints each peer's process start → exit time and its
//! ratio to the floors. The x86_64 figures are `cross/bench`'s main table ([`crate::bench`]);
//! these run where those hosts are: in the nested aarch64 L1 and under Hercules
//! (`cross/nested --objects-bench`, `cross/nested-s390x --objects-bench`).
//!
//! The guests:
//! - aarch64: an arm64 `Image` whose code calls PSCI `SYSTEM_OFF` through `hvc` (KVM exits
//!   with a shutdown system event; polyvisor exits 0);
//! - s390x: a raw image entered at 0x10000 that loads Linux's quiesce wait PSW (a disabled
//!   wait at 0xfff; KVM hands it to userspace; polyvisor exits 0).
//!
//! Timing is the spawn → reap of each process, as [`crate::runner`] takes it for x86_64.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "s390x")]
mod s390x;
mod spec;

pub use spec::{peers, Item, Kind, Objects, Peer};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::stats::{summarize, Summary};

/// Bytes of the tiny guest for `arch` ("aarch64" or "s390x").
pub fn guest_bytes(arch: &str) -> Result<Vec<u8>, String> {
    match arch {
        "aarch64" => Ok(aarch64_image()),
        "s390x" => Ok(s390x_image()),
        other => Err(format!("no objects guest for {other}")),
    }
}

/// An arm64 `Image` (64-byte header, magic `ARM\x64`, `text_offset` 0, `image_size` 4 KiB)
/// whose first instruction branches past the header to `SYSTEM_OFF`.
fn aarch64_image() -> Vec<u8> {
    let mut img = vec![0u8; 4096];
    let words: [(usize, u32); 5] = [
        (0, 0x1400_0010),  // b      #64 (past the header)
        (64, 0xd280_0100), // movz   x0, #0x0008
        (68, 0xf2b0_8000), // movk   x0, #0x8400, lsl #16   (PSCI SYSTEM_OFF, 0x84000008)
        (72, 0xd400_0002), // hvc    #0
        (76, 0x1400_0000), // b      . (not reached)
    ];
    for (at, w) in words {
        img[at..at + 4].copy_from_slice(&w.to_le_bytes());
    }
    img[8..16].copy_from_slice(&0u64.to_le_bytes()); // text_offset
    img[16..24].copy_from_slice(&4096u64.to_le_bytes()); // image_size
    img[24..32].copy_from_slice(&0b1010u64.to_le_bytes()); // LE, 4K pages, anywhere in RAM
    img[56..60].copy_from_slice(&0x644d_5241u32.to_le_bytes()); // "ARM\x64"
    img
}

/// Where the s390x guest's wait PSW lies.
const S390X_WAIT_PSW: usize = 0x10100;

/// A raw s390x image (loaded at 0, entered at 0x10000 in 64-bit mode) that loads Linux's
/// quiesce PSW: a disabled wait at 0xfff.
fn s390x_image() -> Vec<u8> {
    let mut img = vec![0u8; 0x11000];
    let code: [u8; 10] = [
        0xc0, 0x51, 0x00, 0x01, 0x01, 0x00, // lgfi  %r5,0x10100
        0xb2, 0xb2, 0x50, 0x00, // lpswe 0(%r5)
    ];
    img[0x10000..0x10000 + code.len()].copy_from_slice(&code);
    img[S390X_WAIT_PSW..S390X_WAIT_PSW + 8]
        .copy_from_slice(&0x0002_0001_8000_0000u64.to_be_bytes());
    img[S390X_WAIT_PSW + 8..S390X_WAIT_PSW + 16].copy_from_slice(&0xfffu64.to_be_bytes());
    img
}

/// Runs the tiny guest on the floor with `objects`, in this process (`objects-floor`).
#[cfg(any(target_arch = "aarch64", target_arch = "s390x"))]
pub fn floor(guest: &[u8], memory: u64, objects: &Objects) -> Result<(), String> {
    #[cfg(target_arch = "aarch64")]
    return aarch64::run(guest, memory, objects);
    #[cfg(target_arch = "s390x")]
    return s390x::run(guest, memory, objects);
}

#[cfg(not(any(target_arch = "aarch64", target_arch = "s390x")))]
pub fn floor(_guest: &[u8], _memory: u64, _objects: &Objects) -> Result<(), String> {
    Err(format!(
        "the objects floor runs on aarch64 and s390x hosts (x86_64 has `floor`); this binary \
         was built for {}",
        std::env::consts::ARCH
    ))
}

/// Options of `polyvisor-bench objects`.
#[derive(Debug)]
pub struct Options {
    pub runs: usize,
    pub polyvisor: Option<PathBuf>,
    pub memory_mib: u64,
}

fn time_one(mut cmd: Command) -> Result<f64, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let out = cmd.output().map_err(|e| format!("spawn: {e}"))?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{:?} ended with {}: {}",
            cmd.get_program(),
            out.status,
            err.lines().last().unwrap_or("")
        ));
    }
    Ok(ms)
}

/// The command line of one peer's run.
fn command(peer: &Peer, me: &Path, guest: &Path, o: &Options) -> Option<Command> {
    let mem = o.memory_mib.to_string();
    match peer.kind {
        Kind::Floor(list) => {
            let mut c = Command::new(me);
            c.args([
                "objects-floor",
                "--objects",
                list,
                "--memory-mib",
                &mem,
                "--kernel",
            ])
            .arg(guest);
            Some(c)
        }
        Kind::Polyvisor(extra) => {
            let mut c = Command::new(o.polyvisor.as_ref()?);
            c.args(["run", "--memory", &format!("{mem}M"), "--cpus", "1"])
                .args(extra)
                .arg("--kernel")
                .arg(guest);
            Some(c)
        }
        Kind::PolyvisorExec => {
            let mut c = Command::new(o.polyvisor.as_ref()?);
            c.arg("--version");
            Some(c)
        }
        Kind::FloorExec => {
            let mut c = Command::new(me);
            c.arg("--help");
            Some(c)
        }
    }
}

/// `polyvisor-bench objects`: every peer of this host's architecture, `runs` times,
/// interleaved; prints one `objects:` line per peer and a markdown table.
pub fn main(o: &Options) -> Result<u8, String> {
    let arch = std::env::consts::ARCH;
    let list = peers(arch).ok_or_else(|| {
        format!("the objects benchmark runs on aarch64 and s390x hosts, not {arch}")
    })?;
    let dir = std::env::temp_dir().join(format!("pv-objects-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let guest = dir.join("guest.img");
    std::fs::write(&guest, guest_bytes(arch)?).map_err(|e| format!("{}: {e}", guest.display()))?;
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); list.len()];
    // One unmeasured round first: page cache, KVM module state.
    for round in 0..=o.runs {
        for (i, peer) in list.iter().enumerate() {
            let Some(cmd) = command(peer, &me, &guest, o) else {
                continue;
            };
            let ms = time_one(cmd).map_err(|e| format!("{}: {e}", peer.name))?;
            if round > 0 {
                samples[i].push(ms);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let stats: Vec<Option<Summary>> = samples.iter().map(|s| summarize(s)).collect();
    let median_of = |key: &str| {
        list.iter()
            .position(|p| p.key == key)
            .and_then(|i| stats[i].as_ref())
            .map(|s| s.median)
    };
    let (bare, chip) = (median_of("bare"), median_of("irqchip"));
    for (peer, s) in list.iter().zip(&stats) {
        if let Some(s) = s {
            println!(
                "objects: arch={arch} peer={} median_ms={:.3} min_ms={:.3} max_ms={:.3} runs={}",
                peer.key, s.median, s.min, s.max, s.n
            );
        }
    }
    // ASCII and short lines: the s390x table crosses Hercules' console.
    println!();
    println!(
        "| {arch}, start -> exit, {} MiB, 1 vCPU | ms: median (min-max) | /bare | /irqchip |",
        o.memory_mib
    );
    println!("|---|---|---|---|");
    for (peer, s) in list.iter().zip(&stats) {
        let Some(s) = s else { continue };
        let ratio = |d: Option<f64>| d.map_or("-".into(), |d| format!("{:.2}x", s.median / d));
        println!(
            "| {} | {:.1} ({:.1}-{:.1}) | {} | {} |",
            peer.name,
            s.median,
            s.min,
            s.max,
            ratio(bare),
            ratio(chip)
        );
    }
    for peer in &list {
        if let Kind::Floor(objects) = peer.kind {
            println!("floor {}: {}", peer.key, objects);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests;
