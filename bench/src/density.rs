// SPDX-License-Identifier: Apache-2.0
//! Density: N VMs started at once (issue 19). Each guest marks its first instruction and
//! halts with interrupts off, so a started VM costs no CPU; once every VM has marked (or
//! the time is up) the whole batch is measured and killed. Figures per batch: VMs started
//! per second per host core (N / (last first-instruction − first spawn) / cores), p50 and
//! p99 of each VM's spawn → first instruction, the host's `MemAvailable` drop per VM and
//! the median PSS of one VMM process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::guests::MARK_FIRST;
use crate::runner::{self, MarkSource};

/// What one batch measured.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Each VM's spawn → first-instruction time (ms), for those that got there.
    pub start_ms: Vec<f64>,
    /// First spawn → last first instruction (ms).
    pub wall_ms: f64,
    /// `MemAvailable` before the batch minus with the whole batch up (KiB).
    pub host_growth_kib: i64,
    /// PSS of each VMM process with the whole batch up (KiB).
    pub pss_kib: Vec<u64>,
}

/// `MemAvailable` from `/proc/meminfo`, KiB.
fn mem_available_kib() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn watch(child: &mut Child, source: MarkSource, idx: usize, tx: mpsc::Sender<(usize, Instant)>) {
    if source == MarkSource::Debugcon {
        let mut out = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if buf[..n].contains(&MARK_FIRST) {
                    let _ = tx.send((idx, Instant::now()));
                }
            }
        });
    } else {
        let err = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if matches!(runner::parse_line(source, &line), Some((MARK_FIRST, _))) {
                    let _ = tx.send((idx, Instant::now()));
                }
            }
        });
    }
}

/// Starts `n` copies of `make()` at once, waits for their first marks (at most `timeout`),
/// measures, kills and reaps them all.
pub fn batch(
    n: usize,
    make: impl Fn() -> Command,
    source: MarkSource,
    timeout: Duration,
) -> Result<Batch, String> {
    let before = mem_available_kib().ok_or("no MemAvailable in /proc/meminfo")?;
    let (tx, rx) = mpsc::channel();
    let mut children = Vec::with_capacity(n);
    let mut spawned = Vec::with_capacity(n);
    let t0 = Instant::now();
    let mut failure = None;
    for idx in 0..n {
        let mut c = make();
        c.stdin(Stdio::null())
            .stdout(if source == MarkSource::Debugcon {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(if source == MarkSource::Debugcon {
                Stdio::null()
            } else {
                Stdio::piped()
            });
        spawned.push(Instant::now());
        match c.spawn() {
            Ok(mut child) => {
                watch(&mut child, source, idx, tx.clone());
                children.push(child);
            }
            Err(e) => {
                failure = Some(format!("spawning VM {idx} of {n}: {e}"));
                break;
            }
        }
    }
    drop(tx);
    let mut marks: HashMap<usize, Instant> = HashMap::new();
    let deadline = t0 + timeout;
    while failure.is_none() && marks.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((idx, at)) => {
                marks.entry(idx).or_insert(at);
            }
            Err(_) => {
                failure = Some(format!(
                    "{} of {n} VMs reached their first instruction within {timeout:?}",
                    marks.len()
                ));
            }
        }
    }
    // Let the last VMs' first faults settle before sampling memory.
    thread::sleep(Duration::from_millis(200));
    let after = mem_available_kib().unwrap_or(before);
    let pss_kib = children
        .iter()
        .filter_map(|c| {
            let text = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", c.id())).ok()?;
            crate::smaps::parse_rollup(&text).map(|(_, pss)| pss)
        })
        .collect();
    for c in &mut children {
        let _ = c.kill();
    }
    for c in &mut children {
        let _ = c.wait();
    }
    if let Some(f) = failure {
        return Err(f);
    }
    let mut start_ms: Vec<f64> = marks
        .iter()
        .map(|(idx, at)| at.duration_since(spawned[*idx]).as_secs_f64() * 1e3)
        .collect();
    start_ms.sort_by(f64::total_cmp);
    let last = marks.values().max().copied().unwrap_or(t0);
    Ok(Batch {
        start_ms,
        wall_ms: last.duration_since(t0).as_secs_f64() * 1e3,
        host_growth_kib: before - after,
        pss_kib,
    })
}

/// The `p`th percentile (0..=100) of sorted `v`, nearest rank.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(25.0));
        assert_eq!(percentile(&v, 99.0), Some(50.0));
        assert_eq!(percentile(&v[..10], 99.0), Some(10.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert!(mem_available_kib().is_some_and(|k| k > 0));
    }
}
