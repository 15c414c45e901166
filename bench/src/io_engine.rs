// SPDX-License-Identifier: Apache-2.0
//! `polyvisor-bench io-engine`: the measurement behind virtio-blk's I/O engine choice
//! (issue 14: "measure a synchronous worker against io_uring").
//!
//! The disk worker serves a guest's requests one after another with `preadv`/`pwritev` on
//! the device's own thread. Here the same 4 KiB random reads over one image file are done
//! by that synchronous loop (queue depth 1), by a pool of synchronous threads (what QEMU's
//! `aio=threads` does), and by io_uring at queue depths 1, 8 and 32 (what a guest with
//! several requests in flight could get from an io_uring worker), each for a fixed time,
//! the cases interleaved over several rounds; the report is the median IOPS and each case's
//! ratio to the synchronous worker. Buffered (page cache), buffered on a cold cache (the
//! file's pages dropped with `posix_fadvise(DONTNEED)` before every case, so the reads go
//! to the host's disk through the page cache) and O_DIRECT (the host's disk) are separate
//! tables.
//!
//! io_uring comes from the `io-uring` crate, which has no s390x bindings (it needs bindgen
//! there), so this measurement is x86_64-only like the rest of the driver.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BLOCK: usize = 4096;

/// One aligned buffer of `len` bytes (O_DIRECT needs 4 KiB alignment).
struct Aligned {
    raw: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let raw = vec![0u8; len + BLOCK];
        let off = raw.as_ptr().align_offset(BLOCK);
        Aligned { raw, off, len }
    }
    fn slice(&mut self, i: usize) -> &mut [u8] {
        let at = self.off + i * BLOCK;
        &mut self.raw[at..at + BLOCK]
    }
    fn total(&self) -> usize {
        self.len
    }
}

/// A small xorshift: the offsets must be random, not secure.
struct Offsets(u64, u64);

impl Offsets {
    fn new(seed: u64, blocks: u64) -> Self {
        Offsets(seed | 1, blocks)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % self.1) * BLOCK as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    /// The disk worker as it is: one request at a time on one thread.
    SyncWorker,
    /// `threads` synchronous workers (QEMU's aio=threads).
    SyncPool(usize),
    /// io_uring with `depth` reads kept in flight by one thread.
    Uring(u32),
}

impl Case {
    fn name(self) -> String {
        match self {
            Case::SyncWorker => "sync worker (qd 1)".into(),
            Case::SyncPool(n) => format!("{n} sync threads"),
            Case::Uring(d) => format!("io_uring qd {d}"),
        }
    }
}

const CASES: [Case; 5] = [
    Case::SyncWorker,
    Case::SyncPool(4),
    Case::Uring(1),
    Case::Uring(8),
    Case::Uring(32),
];

fn open(path: &Path, direct: bool) -> Result<File, String> {
    let mut o = OpenOptions::new();
    o.read(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

fn sync_reads(file: &File, blocks: u64, seed: u64, time: Duration) -> Result<u64, String> {
    let mut buf = Aligned::new(BLOCK);
    let mut offs = Offsets::new(seed, blocks);
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < time {
        for _ in 0..64 {
            file.read_exact_at(buf.slice(0), offs.next())
                .map_err(|e| format!("pread: {e}"))?;
            n += 1;
        }
    }
    Ok(n)
}

fn uring_reads(file: &File, blocks: u64, depth: u32, time: Duration) -> Result<u64, String> {
    use io_uring::{opcode, types, IoUring};
    let mut ring = IoUring::new(depth.max(1)).map_err(|e| format!("io_uring_setup: {e}"))?;
    let mut bufs = Aligned::new(BLOCK * depth as usize);
    let mut offs = Offsets::new(0x9e37_79b9, blocks);
    let fd = types::Fd(file.as_raw_fd());
    let submit_one = |ring: &mut IoUring, bufs: &mut Aligned, slot: u32, off: u64| {
        let buf = bufs.slice(slot as usize);
        let sqe = opcode::Read::new(fd, buf.as_mut_ptr(), BLOCK as u32)
            .offset(off)
            .build()
            .user_data(u64::from(slot));
        // SAFETY: the buffer lives in `bufs` for the whole run and each slot has at most
        // one read in flight (a slot is resubmitted only after its completion); the fd
        // outlives the ring.
        unsafe { ring.submission().push(&sqe) }.map_err(|_| "submission queue full".to_string())
    };
    for slot in 0..depth {
        submit_one(&mut ring, &mut bufs, slot, offs.next())?;
    }
    let (start, mut n) = (Instant::now(), 0u64);
    let mut done = Vec::with_capacity(depth as usize);
    while start.elapsed() < time {
        ring.submit_and_wait(1)
            .map_err(|e| format!("io_uring_enter: {e}"))?;
        done.clear();
        for cqe in ring.completion() {
            if cqe.result() != BLOCK as i32 {
                return Err(format!("io_uring read returned {}", cqe.result()));
            }
            done.push(cqe.user_data() as u32);
        }
        for &slot in &done {
            n += 1;
            submit_one(&mut ring, &mut bufs, slot, offs.next())?;
        }
    }
    // Drain what is still in flight before the buffers go away.
    let mut left = depth as usize;
    while left > 0 {
        ring.submit_and_wait(1)
            .map_err(|e| format!("io_uring_enter: {e}"))?;
        left -= ring.completion().count().min(left);
    }
    debug_assert!(bufs.total() >= BLOCK);
    Ok(n)
}

/// Drop `path`'s clean pages from the page cache (this file's only).
fn drop_cached(path: &Path) -> Result<(), String> {
    let f = open(path, false)?;
    // SAFETY: posix_fadvise takes no pointers; `f` is an open descriptor for the call.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        return Err(format!("posix_fadvise: error {r}"));
    }
    Ok(())
}

/// How the file is read.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Buffered,
    Cold,
    Direct,
}

fn run_case(
    case: Case,
    path: &Path,
    mode: Mode,
    blocks: u64,
    time: Duration,
) -> Result<f64, String> {
    let direct = mode == Mode::Direct;
    if mode == Mode::Cold {
        drop_cached(path)?;
    }
    let ops = match case {
        Case::SyncWorker => sync_reads(&open(path, direct)?, blocks, 0x2545_f491, time)?,
        Case::SyncPool(threads) => {
            let files = (0..threads)
                .map(|_| open(path, direct))
                .collect::<Result<Vec<_>, _>>()?;
            std::thread::scope(|s| {
                let handles: Vec<_> = files
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        s.spawn(move || sync_reads(f, blocks, 0x1234_5678 + i as u64, time))
                    })
                    .collect();
                let mut total = 0;
                for h in handles {
                    total += h.join().map_err(|_| "a reader thread panicked")??;
                }
                Ok::<u64, String>(total)
            })?
        }
        Case::Uring(depth) => uring_reads(&open(path, direct)?, blocks, depth, time)?,
    };
    Ok(ops as f64 / time.as_secs_f64())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `io-engine --file PATH [--size-mib N] [--seconds S] [--rounds R]`: makes PATH (N MiB,
/// default 256) if it is missing or smaller, then prints the two tables.
pub fn main(args: &[String]) -> Result<u8, String> {
    let (mut file, mut mib, mut secs, mut rounds) = (None::<PathBuf>, 256u64, 1.0f64, 3usize);
    let mut i = 0;
    while i < args.len() {
        let v = args
            .get(i + 1)
            .ok_or(format!("{} needs a value", args[i]))?;
        match args[i].as_str() {
            "--file" => file = Some(v.into()),
            "--size-mib" => mib = v.parse().map_err(|_| format!("--size-mib: '{v}'"))?,
            "--seconds" => secs = v.parse().map_err(|_| format!("--seconds: '{v}'"))?,
            "--rounds" => rounds = v.parse().map_err(|_| format!("--rounds: '{v}'"))?,
            a => return Err(format!("io-engine: unknown argument '{a}'")),
        }
        i += 2;
    }
    let path = file.ok_or("io-engine: --file PATH is required")?;
    if mib == 0 || rounds == 0 || secs <= 0.0 {
        return Err("io-engine: --size-mib, --seconds and --rounds must be positive".into());
    }
    let bytes = mib << 20;
    if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < bytes {
        let f = File::create(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let chunk = vec![0xa5u8; 1 << 20];
        for m in 0..mib {
            f.write_all_at(&chunk, m << 20)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        f.sync_all().map_err(|e| format!("fsync: {e}"))?;
    }
    let blocks = bytes / BLOCK as u64;
    let time = Duration::from_secs_f64(secs);
    for mode in [Mode::Buffered, Mode::Cold, Mode::Direct] {
        let mut samples = vec![Vec::new(); CASES.len()];
        for _ in 0..rounds {
            for (k, case) in CASES.iter().enumerate() {
                samples[k].push(run_case(*case, &path, mode, blocks, time)?);
            }
        }
        let base = median(&mut samples[0].clone());
        println!(
            "\n| 4 KiB random reads, {} MiB file, {} | IOPS (median of {rounds}) | / sync worker |",
            mib,
            match mode {
                Mode::Direct => "O_DIRECT (the host's disk)",
                Mode::Cold => "buffered, cold cache (DONTNEED before each case)",
                Mode::Buffered => "buffered (page cache)",
            }
        );
        println!("|---|---|---|");
        for (k, case) in CASES.iter().enumerate() {
            let m = median(&mut samples[k]);
            println!("| {} | {:.0} | {:.2}x |", case.name(), m, m / base);
        }
    }
    Ok(0)
}
