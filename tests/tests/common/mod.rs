// SPDX-License-Identifier: Apache-2.0
//! Shared by the test files that keep polyvisor running and stop it from outside
//! (`hostile.rs`, `pty.rs`): spawn it with chosen stdio, wait for a line of guest output,
//! send a signal, and wait for the exit with a deadline (a hang is a failure: the process
//! is killed and the test panics with what it printed).
#![allow(dead_code)] // each test file uses a different part

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use polyvisor_tests::runner::polyvisor_bin;

/// How long polyvisor may take to exit after a stop request: the contract's 5 s, plus 1 s
/// for a loaded 2-core build machine.
pub const STOP_DEADLINE: Duration = Duration::from_secs(6);
/// How much of a stream [`Running`] keeps (it counts the rest).
const KEEP: usize = 256 << 10;

/// What polyvisor's stdout is connected to.
pub enum Stdout {
    /// A pipe a thread reads to the end.
    Read,
    /// A pipe (of one page) whose read end the test holds open and never reads once the
    /// guest's first line is in (so it fills up and stays full).
    Unread,
}

/// A captured stream: the first [`KEEP`] bytes and the total count.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    total: usize,
}

fn capture<R: Read + Send + 'static>(mut r: R, into: Arc<Mutex<Captured>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut c = into.lock().unwrap_or_else(|e| e.into_inner());
                    c.total += n;
                    let room = KEEP.saturating_sub(c.bytes.len()).min(n);
                    c.bytes.extend_from_slice(&buf[..room]);
                }
            }
        }
    })
}

/// A polyvisor process under test.
pub struct Running {
    pub command: String,
    child: Child,
    stdout: Arc<Mutex<Captured>>,
    stderr: Arc<Mutex<Captured>>,
    /// The unread pipe of [`Stdout::Unread`], held open until the end.
    unread: Option<ChildStdout>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

/// How a run ended.
pub struct Ended {
    pub status: ExitStatus,
    /// From the stop request (or from the start when there was none) to the exit.
    pub after: Duration,
    pub stdout: String,
    pub stderr: String,
    /// All bytes written to stderr (more than `stderr` holds if it was flooded).
    pub stderr_total: usize,
}

impl Ended {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "--- status: {} after {:?}", self.status, self.after)?;
        writeln!(
            f,
            "--- stdout (first {} bytes):",
            self.stdout.len().min(2000)
        )?;
        writeln!(f, "{}", head(&self.stdout, 2000))?;
        writeln!(
            f,
            "--- stderr ({} bytes in all, first 4000 shown):",
            self.stderr_total
        )?;
        writeln!(f, "{}", head(&self.stderr, 4000))?;
        write!(f, "---")
    }
}

fn head(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Running {
    /// Starts `polyvisor <args>` with stdin `stdin`, stdout as `stdout` says, stderr read
    /// by a thread, default logging.
    pub fn spawn(args: &[&std::ffi::OsStr], stdin: Stdio, stdout: Stdout) -> Running {
        Self::spawn_with(Command::new(polyvisor_bin()).args(args), stdin, stdout)
    }

    /// As [`Running::spawn`] for a prepared command (extra `pre_exec`, environment).
    pub fn spawn_with(cmd: &mut Command, stdin: Stdio, stdout: Stdout) -> Running {
        let command = format!("{cmd:?}");
        let mut child = cmd
            .env_remove("POLYVISOR_LOG")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command}: {e}"));
        let out = Arc::new(Mutex::new(Captured::default()));
        let err = Arc::new(Mutex::new(Captured::default()));
        let mut readers = vec![capture(child.stderr.take().unwrap(), err.clone())];
        let mut unread = None;
        let pipe = child.stdout.take().unwrap();
        match stdout {
            Stdout::Read => readers.push(capture(pipe, out.clone())),
            Stdout::Unread => {
                // The smallest pipe (one page), so a guest fills it within milliseconds
                // on this host's slow port exits (a 64 KiB pipe takes it seconds).
                // SAFETY: fcntl on a pipe fd we own; no memory is passed.
                let rc = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
                assert!(rc >= 0, "F_SETPIPE_SZ: {}", std::io::Error::last_os_error());
                unread = Some(pipe);
            }
        }
        Running {
            command,
            child,
            stdout: out,
            stderr: err,
            unread,
            readers,
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether polyvisor has exited (its status is kept for [`Running::wait_exit`]).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// The guest output so far.
    pub fn stdout_now(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap().bytes).into_owned()
    }

    /// The log output so far.
    pub fn stderr_now(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap().bytes).into_owned()
    }

    /// For [`Stdout::Unread`]: reads stdout byte by byte until `text` has been seen, then
    /// stops reading it for good. For [`Stdout::Read`]: waits until the reader saw `text`.
    /// Panics (after killing polyvisor) if it does not show up within `timeout`.
    pub fn wait_for_stdout(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        if let Some(pipe) = self.unread.as_mut() {
            let mut seen = Vec::new();
            let mut byte = [0u8; 1];
            let found = loop {
                if String::from_utf8_lossy(&seen).contains(text) {
                    break true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let mut pfd = libc::pollfd {
                    fd: pipe.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, for the duration of the call.
                let ready = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
                if ready <= 0 || pipe.read(&mut byte).unwrap_or(0) == 0 {
                    break false;
                }
                seen.push(byte[0]);
            };
            if !found {
                let seen = String::from_utf8_lossy(&seen).into_owned();
                self.fail(&format!("{text:?} never appeared on stdout (got {seen:?})"));
            }
            return;
        }
        while !self.stdout_now().contains(text) {
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                self.fail(&format!("{text:?} never appeared on stdout"));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// For [`Stdout::Unread`]: closes the read end, so polyvisor's writes fail (EPIPE).
    pub fn close_stdout(&mut self) {
        drop(self.unread.take().expect("stdout is Stdout::Unread"));
    }

    /// Sends signal `sig` to polyvisor (kill(2) on its pid).
    pub fn signal(&mut self, sig: i32) {
        // SAFETY: kill(2) has no memory effects; the pid is our own child, not yet reaped
        // (it is reaped only by `wait_exit`), so it cannot name another process.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
        self.started = Instant::now();
    }

    /// Waits up to `deadline` (from the last [`Running::signal`], else from the start)
    /// for polyvisor to exit by itself. On timeout kills it and panics: a hang is a bug.
    pub fn wait_exit(mut self, deadline: Duration, what: &str) -> Ended {
        let limit = self.started + deadline;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > limit {
                self.fail(&format!(
                    "polyvisor did not exit within {deadline:?} of {what} (killed it)"
                ));
            }
            thread::sleep(Duration::from_millis(5));
        };
        let after = self.started.elapsed();
        drop(self.unread.take());
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let out = self.stdout.lock().unwrap();
        let err = self.stderr.lock().unwrap();
        Ended {
            status,
            after,
            stdout: String::from_utf8_lossy(&out.bytes).into_owned(),
            stderr: String::from_utf8_lossy(&err.bytes).into_owned(),
            stderr_total: err.total,
        }
    }

    /// Kills polyvisor and panics with `why` and what it printed.
    pub fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        drop(self.unread.take());
        let (err_total, err) = {
            let c = self.stderr.lock().unwrap();
            (c.total, String::from_utf8_lossy(&c.bytes).into_owned())
        };
        panic!(
            "{why}\n--- command: {}\n--- status after the kill: {status:?}\n--- stdout:\n{}\n\
             --- stderr ({err_total} bytes in all):\n{}\n---",
            self.command,
            head(&self.stdout_now(), 2000),
            head(&err, 4000),
        );
    }
}
