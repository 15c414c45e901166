// SPDX-License-Identifier: Apache-2.0
//! Runs one VMM process and timestamps, from the outside, what it reports: the guest's
//! marks (as lines on stderr or bytes on stdout), optionally a memory sample, and the
//! moment the process is reaped. Every peer is measured the same way, so pipe and wake-up
//! latencies cancel in the ratios.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::smaps::{self, MemSample};

/// How a peer reports the guest's marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkSource {
    /// polyvisor's boot-timer log lines on stderr.
    PolyvisorLog,
    /// The floor's `mark V` lines on stderr.
    FloorLog,
    /// QEMU's isa-debugcon: one byte per mark on stdout.
    Debugcon,
}

/// When and how to sample the process's memory.
#[derive(Clone, Copy, Debug)]
pub struct MemProbe {
    /// Sample this long after this mark arrived.
    pub after_mark: u8,
    pub delay: Duration,
    /// The guest's memory size (to tell its mapping from the rest).
    pub guest_bytes: u64,
}

/// What one run did, times relative to the spawn.
#[derive(Debug)]
pub struct RunResult {
    /// First arrival of each mark value.
    pub marks: BTreeMap<u8, Duration>,
    /// When the process was reaped.
    pub exited: Duration,
    pub status: ExitStatus,
    pub mem: Option<MemSample>,
    /// polyvisor's own boot-timer figures (ms since its start), by mark.
    pub internal_ms: BTreeMap<u8, f64>,
    pub stderr: String,
}

impl RunResult {
    /// Milliseconds from the spawn to mark `m`.
    pub fn mark_ms(&self, m: u8) -> Option<f64> {
        self.marks.get(&m).map(|d| d.as_secs_f64() * 1e3)
    }
    /// Milliseconds between two marks.
    pub fn between_ms(&self, a: u8, b: u8) -> Option<f64> {
        Some(self.mark_ms(b)? - self.mark_ms(a)?)
    }
    pub fn exit_ms(&self) -> f64 {
        self.exited.as_secs_f64() * 1e3
    }
}

enum Event {
    Mark(u8, Instant),
    Internal(u8, f64),
    Stderr(String),
    Exited(Instant, std::io::Result<ExitStatus>),
}

/// Parses one stderr line into a mark (and polyvisor's own ms figure, if it has one).
pub fn parse_line(source: MarkSource, line: &str) -> Option<(u8, Option<f64>)> {
    match source {
        MarkSource::PolyvisorLog => {
            if let Some(rest) = line.split("boot timer: guest reached init ").nth(1) {
                let ms = rest.split_whitespace().next()?.parse().ok();
                Some((crate::guests::MARK_FIRST, ms))
            } else {
                let rest = line.split("boot timer: guest milestone ").nth(1)?;
                let mut w = rest.split_whitespace();
                let v = w.next()?.parse().ok()?;
                let ms = (w.next() == Some("at"))
                    .then(|| w.next()?.parse().ok())
                    .flatten();
                Some((v, ms))
            }
        }
        MarkSource::FloorLog => Some((line.strip_prefix("mark ")?.trim().parse().ok()?, None)),
        MarkSource::Debugcon => None,
    }
}

fn send_kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// Runs `cmd` (stdin null, stdout and stderr piped) to its end, or kills it after
/// `timeout`.
pub fn run(
    mut cmd: Command,
    source: MarkSource,
    probe: Option<MemProbe>,
    timeout: Duration,
) -> Result<RunResult, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawning {:?}: {e}", cmd.get_program()))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<Event>();

    let mut out = child.stdout.take().expect("piped stdout");
    let txo = tx.clone();
    let t_out = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            let now = Instant::now();
            if source == MarkSource::Debugcon {
                for b in &buf[..n] {
                    let _ = txo.send(Event::Mark(*b, now));
                }
            }
        }
    });
    let mut err = child.stderr.take().expect("piped stderr");
    let txe = tx.clone();
    let t_err = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut pending = Vec::new();
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            let now = Instant::now();
            pending.extend_from_slice(&buf[..n]);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line).into_owned();
                if let Some((v, ms)) = parse_line(source, &line) {
                    let _ = txe.send(Event::Mark(v, now));
                    if let Some(ms) = ms {
                        let _ = txe.send(Event::Internal(v, ms));
                    }
                }
                let _ = txe.send(Event::Stderr(line));
            }
        }
        if !pending.is_empty() {
            let _ = txe.send(Event::Stderr(
                String::from_utf8_lossy(&pending).into_owned(),
            ));
        }
    });
    let txw = tx;
    let t_wait = thread::spawn(move || {
        let status = child.wait();
        let _ = txw.send(Event::Exited(Instant::now(), status));
    });

    let deadline = start + timeout;
    let mut marks = BTreeMap::new();
    let mut internal_ms = BTreeMap::new();
    let mut stderr = String::new();
    let mut mem = None;
    let mut probe_at: Option<Instant> = None;
    let mut exited = None;
    let mut timed_out = false;
    while exited.is_none() {
        let now = Instant::now();
        if now >= deadline && !timed_out {
            timed_out = true;
            send_kill(pid);
        }
        let mut wake = deadline.max(now + Duration::from_millis(10));
        if let Some(p) = probe_at {
            wake = wake.min(p);
        }
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(Event::Mark(v, t)) => {
                marks.entry(v).or_insert(t - start);
                if let Some(p) = probe {
                    if v == p.after_mark && probe_at.is_none() && mem.is_none() {
                        probe_at = Some(t + p.delay);
                    }
                }
            }
            Ok(Event::Internal(v, ms)) => {
                internal_ms.entry(v).or_insert(ms);
            }
            Ok(Event::Stderr(s)) => stderr.push_str(&s),
            Ok(Event::Exited(t, st)) => exited = Some((t, st)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let (Some(p), Some(at)) = (probe, probe_at) {
            if Instant::now() >= at {
                mem = smaps::sample(pid, p.guest_bytes);
                probe_at = None;
            }
        }
    }
    // The readers end at EOF (the process is gone); collect what they still had.
    let _ = t_out.join();
    let _ = t_err.join();
    let _ = t_wait.join();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Event::Mark(v, t) => {
                marks.entry(v).or_insert(t - start);
            }
            Event::Internal(v, ms) => {
                internal_ms.entry(v).or_insert(ms);
            }
            Event::Stderr(s) => stderr.push_str(&s),
            Event::Exited(..) => {}
        }
    }
    let (t_exit, status) = exited.ok_or("lost the process's exit status")?;
    let status = status.map_err(|e| format!("waiting for the process: {e}"))?;
    if timed_out {
        return Err(format!(
            "timed out after {timeout:?}; stderr:\n{}",
            tail(&stderr)
        ));
    }
    Ok(RunResult {
        marks,
        exited: t_exit - start,
        status,
        mem,
        internal_ms,
        stderr,
    })
}

/// The last few lines of `s`.
pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polyvisor_lines() {
        let l = "polyvisor: info: boot timer: guest reached init 12.345 ms after polyvisor started";
        assert_eq!(
            parse_line(MarkSource::PolyvisorLog, l),
            Some((123, Some(12.345)))
        );
        let l = "polyvisor: info: boot timer: guest milestone 200 at 3.500 ms";
        assert_eq!(
            parse_line(MarkSource::PolyvisorLog, l),
            Some((200, Some(3.5)))
        );
        assert_eq!(
            parse_line(MarkSource::PolyvisorLog, "polyvisor: info: guest reset"),
            None
        );
    }

    #[test]
    fn floor_lines() {
        assert_eq!(
            parse_line(MarkSource::FloorLog, "mark 7\n"),
            Some((7, None))
        );
        assert_eq!(parse_line(MarkSource::FloorLog, "other"), None);
    }

    #[test]
    fn runs_a_process_and_reaps_it() {
        // `sh` is on every Linux host the tests run on (qemu-user included).
        let mut c = Command::new("sh");
        c.args(["-c", "echo 'mark 5' >&2; exit 3"]);
        let Ok(r) = run(c, MarkSource::FloorLog, None, Duration::from_secs(20)) else {
            return; // no shell to exec (e.g. a bare sandbox): nothing to check
        };
        assert_eq!(r.status.code(), Some(3));
        assert!(r.marks.contains_key(&5));
        // No ordering check between the mark and the exit: the mark is stamped when the
        // reader thread sees it, which on a loaded machine (or under qemu-user) can come
        // after the process was reaped.
        assert!(r.mark_ms(5).unwrap() >= 0.0 && r.exit_ms() > 0.0);
    }
}
