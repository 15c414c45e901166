// SPDX-License-Identifier: Apache-2.0
//! The console's host side: where guest output goes. (Host input reaches the guest through
//! the main thread's event loop: [`crate::console_input`].)
//!
//! Output: the guest's console device writes into a bounded buffer and never waits; a
//! writer thread moves the buffer to stdout or the file. When the sink is slow, full or
//! broken, what does not fit is dropped and counted (a guest cannot block a vCPU, or grow
//! the VMM's memory, by writing faster than the sink takes it).

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::ConsoleMode;

/// Guest output held for the writer thread at most; more is dropped and counted.
pub const OUTPUT_BUFFER: usize = 256 << 10;
/// How long the end of a run waits for buffered output to reach the sink.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct OutputState {
    pending: Vec<u8>,
    /// The writer is writing a batch (taken out of `pending`).
    busy: bool,
    closed: bool,
    /// The sink failed: everything from then on is dropped.
    broken: bool,
    /// Bytes dropped because the buffer was full or the sink broken or at its cap.
    dropped: u64,
}

struct OutputShared {
    state: Mutex<OutputState>,
    changed: Condvar,
}

impl OutputShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutputState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writing end the guest's console device gets: never blocks, never fails.
#[derive(Clone)]
pub struct OutputSink(Arc<OutputShared>);

impl Write for OutputSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.0.lock();
        if s.broken || s.closed {
            s.dropped += buf.len() as u64;
            return Ok(buf.len());
        }
        let room = OUTPUT_BUFFER.saturating_sub(s.pending.len());
        let take = room.min(buf.len());
        s.pending.extend_from_slice(&buf[..take]);
        s.dropped += (buf.len() - take) as u64;
        drop(s);
        self.0.changed.notify_all();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where guest output really goes, with an optional size cap (`--console file=`).
struct Destination {
    out: Box<dyn Write + Send>,
    what: String,
    cap: Option<u64>,
    written: u64,
    capped: bool,
}

impl Destination {
    /// Write `batch`, respecting the cap; returns the bytes the cap made it drop.
    fn write(&mut self, batch: &[u8]) -> io::Result<u64> {
        let allowed = match self.cap {
            Some(cap) => cap.saturating_sub(self.written).min(batch.len() as u64) as usize,
            None => batch.len(),
        };
        if allowed < batch.len() && !self.capped {
            self.capped = true;
            log::warn!(
                "console: {} reached its size limit of {} bytes; further guest output is dropped",
                self.what,
                self.cap.unwrap_or(0)
            );
        }
        if allowed > 0 {
            self.out.write_all(&batch[..allowed])?;
            self.out.flush()?;
            self.written += allowed as u64;
        }
        Ok((batch.len() - allowed) as u64)
    }
}

/// The guest console's output: the sink devices write to and the writer thread behind it.
pub struct ConsoleOutput {
    shared: Arc<OutputShared>,
    writer: Option<JoinHandle<()>>,
}

impl ConsoleOutput {
    /// Open the output `mode` names and start its writer thread. A file that cannot be
    /// created is an error naming it.
    pub fn start(mode: &ConsoleMode) -> io::Result<Self> {
        let dest = match mode {
            ConsoleMode::Tty => Destination {
                out: Box::new(io::stdout()),
                what: "stdout".into(),
                cap: None,
                written: 0,
                capped: false,
            },
            ConsoleMode::Off => Destination {
                out: Box::new(io::sink()),
                what: "nothing".into(),
                cap: None,
                written: 0,
                capped: false,
            },
            ConsoleMode::File { path, max_size } => Destination {
                out: Box::new(File::create(path)?),
                what: format!("{:?}", path),
                cap: *max_size,
                written: 0,
                capped: false,
            },
        };
        let shared = Arc::new(OutputShared {
            state: Mutex::new(OutputState::default()),
            changed: Condvar::new(),
        });
        let writer = {
            let shared = shared.clone();
            crate::seccomp::spawn(
                "console-out".into(),
                crate::seccomp::ThreadKind::ConsoleOut,
                move || write_out(&shared, dest),
            )?
        };
        Ok(Self {
            shared,
            writer: Some(writer),
        })
    }

    /// A writing end for a console device.
    pub fn sink(&self) -> OutputSink {
        OutputSink(self.shared.clone())
    }

    /// Let the writer empty the buffer (bounded by a deadline: a sink nobody reads must not
    /// hold up the exit), then stop it; logs how much guest output was dropped, if any.
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        let start = Instant::now();
        {
            let mut s = self.shared.lock();
            s.closed = true;
            self.shared.changed.notify_all();
            while (s.busy || !s.pending.is_empty()) && !s.broken {
                let left = DRAIN_DEADLINE.saturating_sub(start.elapsed());
                if left.is_zero() {
                    break;
                }
                s = self
                    .shared
                    .changed
                    .wait_timeout(s, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let unwritten = s.pending.len() as u64;
            s.dropped += unwritten;
            s.pending.clear();
            if s.dropped > 0 {
                log::warn!(
                    "console: {} bytes of guest output were dropped (the output was slower than \
                     the guest, broken, or at its size limit)",
                    s.dropped
                );
            }
        }
        if writer.is_finished() {
            let _ = writer.join();
        }
        // Otherwise it is blocked writing to a sink nobody reads: leave it behind.
    }

    /// Bytes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }
}

impl Drop for ConsoleOutput {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_out(shared: &OutputShared, mut dest: Destination) {
    loop {
        let batch = {
            let mut s = shared.lock();
            s.busy = false;
            shared.changed.notify_all();
            while s.pending.is_empty() && !s.closed {
                s = shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.pending.is_empty() {
                return;
            }
            s.busy = true;
            std::mem::take(&mut s.pending)
        };
        match dest.write(&batch) {
            Ok(0) => {}
            Ok(capped) => shared.lock().dropped += capped,
            Err(e) => {
                log::warn!(
                    "console: writing guest output to {} failed: {e}; dropping the rest",
                    dest.what
                );
                let mut s = shared.lock();
                s.broken = true;
                s.busy = false;
                s.dropped += batch.len() as u64 + s.pending.len() as u64;
                s.pending = Vec::new();
                shared.changed.notify_all();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn output_to(out: Box<dyn Write + Send>, cap: Option<u64>) -> ConsoleOutput {
        let shared = Arc::new(OutputShared {
            state: Mutex::new(OutputState::default()),
            changed: Condvar::new(),
        });
        let dest = Destination {
            out,
            what: "test".into(),
            cap,
            written: 0,
            capped: false,
        };
        let s2 = shared.clone();
        let writer = std::thread::spawn(move || write_out(&s2, dest));
        ConsoleOutput {
            shared,
            writer: Some(writer),
        }
    }

    #[test]
    fn output_reaches_the_sink_in_order() {
        let buf = Shared::default();
        let out = output_to(Box::new(buf.clone()), None);
        let mut sink = out.sink();
        for i in 0..100u8 {
            sink.write_all(&[i]).unwrap();
        }
        out.finish();
        assert_eq!(*buf.0.lock().unwrap(), (0..100u8).collect::<Vec<_>>());
    }

    /// A sink that blocks until the test lets it go (a pipe nobody reads).
    struct Stuck(Arc<(Mutex<bool>, Condvar)>);
    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let (m, c) = &*self.0;
            let mut go = m.lock().unwrap();
            while !*go {
                go = c.wait(go).unwrap();
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_sink_never_blocks_the_writer_and_bounds_memory() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let out = output_to(Box::new(Stuck(gate.clone())), None);
        let mut sink = out.sink();
        let t0 = Instant::now();
        let chunk = vec![b'x'; 4096];
        for _ in 0..1024 {
            sink.write_all(&chunk).unwrap(); // 4 MiB into a sink that takes nothing
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(out.shared.lock().pending.len() <= OUTPUT_BUFFER);
        assert!(out.dropped() >= (4 << 20) - 2 * OUTPUT_BUFFER as u64);
        let t0 = Instant::now();
        out.finish(); // gives up after its deadline
        assert!(t0.elapsed() < DRAIN_DEADLINE + Duration::from_secs(2));
        let (m, c) = &*gate;
        *m.lock().unwrap() = true;
        c.notify_all();
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_sink_drops_and_counts() {
        let out = output_to(Box::new(Broken), None);
        let mut sink = out.sink();
        sink.write_all(b"hello").unwrap();
        let t0 = Instant::now();
        while !out.shared.lock().broken {
            assert!(t0.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(1));
        }
        sink.write_all(b"world").unwrap();
        assert_eq!(out.dropped(), 10);
        out.finish();
    }

    #[test]
    fn a_capped_file_keeps_the_first_bytes() {
        let buf = Shared::default();
        let out = output_to(Box::new(buf.clone()), Some(10));
        let mut sink = out.sink();
        sink.write_all(b"0123456").unwrap();
        sink.write_all(b"789abcdef").unwrap();
        out.finish();
        assert_eq!(&*buf.0.lock().unwrap(), b"0123456789");
    }
}
