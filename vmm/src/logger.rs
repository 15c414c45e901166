// SPDX-License-Identifier: Apache-2.0
//! A small stderr logger: `polyvisor: <level>: <message>`, one line per record.
//!
//! Every call site is rate-limited: much of what is logged can be triggered by the guest
//! (a device's complaint about a bad register write, an intercept the backend does not
//! know, virtio-queue's own errors), and a guest doing it in a loop must not flood the
//! host's logs or disk. A site gets [`BURST`] lines per [`WINDOW`]; what it says beyond
//! that is counted, and the count is told with its next line and at exit.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Lines one call site may log per [`WINDOW`].
pub const BURST: u32 = 10;
/// The rate limit's window.
pub const WINDOW: Duration = Duration::from_secs(1);

/// A call site's share of the rate limit.
struct Site {
    window_start: Instant,
    in_window: u32,
    suppressed: u64,
}

/// Call sites by (file, line); a program has a fixed number of them, so this stays small.
static SITES: Mutex<Option<HashMap<(&'static str, u32), Site>>> = Mutex::new(None);

/// Whether a line from `site` may be printed now, and how many of its lines were
/// suppressed since the last one that was.
fn admit(site: (&'static str, u32), now: Instant) -> Option<u64> {
    let mut sites = SITES.lock().unwrap_or_else(|e| e.into_inner());
    let s = sites
        .get_or_insert_with(HashMap::new)
        .entry(site)
        .or_insert(Site {
            window_start: now,
            in_window: 0,
            suppressed: 0,
        });
    if now.duration_since(s.window_start) >= WINDOW {
        s.window_start = now;
        s.in_window = 0;
    }
    if s.in_window >= BURST {
        s.suppressed += 1;
        return None;
    }
    s.in_window += 1;
    Some(std::mem::take(&mut s.suppressed))
}

/// Log how many lines each site had suppressed and not yet reported (call at exit).
pub fn report_suppressed() {
    let counts: Vec<((&'static str, u32), u64)> = {
        let mut sites = SITES.lock().unwrap_or_else(|e| e.into_inner());
        sites
            .get_or_insert_with(HashMap::new)
            .iter_mut()
            .filter(|(_, s)| s.suppressed > 0)
            .map(|(k, s)| (*k, std::mem::take(&mut s.suppressed)))
            .collect()
    };
    for ((file, line), n) in counts {
        let text = format!(
            "polyvisor: warning: {n} more messages from {file}:{line} were suppressed (rate limit)\n"
        );
        emit(&text);
    }
}

/// Where log lines go: stderr, or the file `--log-file` named.
static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Append the log to `path` from now on (created if missing).
pub fn to_file(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    *FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
    Ok(())
}

/// Write one whole line to the log's destination.
fn emit(line: &str) {
    let mut file = FILE.lock().unwrap_or_else(|e| e.into_inner());
    match file.as_mut() {
        Some(f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let site = (
            record
                .file_static()
                .or(record.module_path_static())
                .unwrap_or("polyvisor"),
            record.line().unwrap_or(0),
        );
        let Some(suppressed) = admit(site, Instant::now()) else {
            return;
        };
        let note = if suppressed > 0 {
            format!(" ({suppressed} similar messages suppressed)")
        } else {
            String::new()
        };
        // One write per line so lines from vCPU threads do not interleave.
        let line = format!("polyvisor: {level}: {}{note}\n", record.args());
        emit(&line);
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Parse a level name as `POLYVISOR_LOG` gives it.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

/// Install the logger at `level`. Calling it twice keeps the first logger.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_site_is_limited_and_counted() {
        let t0 = Instant::now();
        let site = ("flood.rs", 1);
        let admitted = (0..1000).filter(|_| admit(site, t0).is_some()).count();
        assert_eq!(admitted, BURST as usize);
        // The next window admits again and says how many were dropped.
        assert_eq!(admit(site, t0 + WINDOW), Some(1000 - u64::from(BURST)));
        assert_eq!(admit(site, t0 + WINDOW), Some(0));
        // Other sites are not affected.
        assert_eq!(admit(("other.rs", 2), t0), Some(0));
    }

    #[test]
    fn level_names() {
        assert_eq!(parse_level("DEBUG"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("warning"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("loud"), None);
    }
}
