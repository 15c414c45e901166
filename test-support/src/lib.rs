// SPDX-License-Identifier: Apache-2.0
//! Helpers for unit tests that need the host: make a FIFO, run a host tool (ACPICA's `iasl`,
//! `dtc`) as an independent check.
//!
//! The foreign-target unit tests run under qemu-user, where a multi-threaded test process
//! that forks can hang before the child execs (seen once in CI: a test binary waited 40
//! minutes for `iasl`). So a FIFO is made with mknod(2) instead of a `mkfifo` child, and a
//! tool runs on a helper thread with a deadline: a run that has not finished is killed (when
//! it got as far as having a pid) and tried again, and after the last try the test gets a
//! `TimedOut` error to fail with, instead of holding up the whole suite.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one try of a host tool may take (they take well under a second natively and a
/// few seconds under qemu-user on a loaded machine).
pub const TOOL_DEADLINE: Duration = Duration::from_secs(60);
/// Tries before giving up.
pub const TOOL_TRIES: u32 = 3;

/// Make a FIFO at `path` (mode 0600) without starting a process.
pub fn mkfifo(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; mkfifo only
    // reads it.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Run the command `make` builds (stdin from /dev/null, stdout and stderr captured), with
/// [`TOOL_DEADLINE`] per try and [`TOOL_TRIES`] tries. A tool that is not installed is
/// `NotFound` at once natively; under qemu-user the spawn succeeds and the child exits 127.
pub fn run_tool(make: impl Fn() -> Command) -> io::Result<Output> {
    run_tool_with(make, TOOL_DEADLINE, TOOL_TRIES)
}

enum Event {
    Started(u32),
    Done(io::Result<Output>),
}

/// [`run_tool`] with its limits given.
pub fn run_tool_with(
    make: impl Fn() -> Command,
    deadline: Duration,
    tries: u32,
) -> io::Result<Output> {
    for _ in 0..tries {
        let mut cmd = make();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (tx, rx) = mpsc::channel();
        // Detached: a spawn that never returns leaves this thread behind, which is the
        // price of not waiting for it.
        std::thread::spawn(move || {
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Event::Done(Err(e)));
                    return;
                }
            };
            let _ = tx.send(Event::Started(child.id()));
            let _ = tx.send(Event::Done(child.wait_with_output()));
        });
        let start = Instant::now();
        let mut pid = None;
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            match rx.recv_timeout(left) {
                Ok(Event::Started(p)) => pid = Some(p),
                Ok(Event::Done(result)) => return result,
                Err(_) => break,
            }
        }
        if let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) with a pid this process started and has not reaped (the
            // waiting thread reaps it once it dies); no memory is involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "no answer in {tries} tries of {} s each",
            deadline.as_secs()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_s_output_and_status_come_back() {
        let out = run_tool(|| {
            let mut c = Command::new("sh");
            c.args(["-c", "echo out; echo err >&2; exit 3"]);
            c
        })
        .unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn a_missing_tool_is_not_found_or_exits_127() {
        match run_tool(|| Command::new("/nonexistent/pv-no-such-tool")) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            // qemu-user runs posix_spawn's CLONE_VFORK as a plain fork, so the parent never
            // hears of the failed exec: the child exits 127 instead.
            Ok(out) => assert_eq!(out.status.code(), Some(127), "{out:?}"),
        }
    }

    #[test]
    fn a_hanging_tool_is_killed_and_tried_again_then_times_out() {
        let dir = std::env::temp_dir().join(format!("pv-test-support-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let count = dir.join("tries");
        let c2 = count.clone();
        let t0 = Instant::now();
        let e = run_tool_with(
            move || {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("echo x >> '{}'; exec sleep 30", c2.display()));
                c
            },
            Duration::from_millis(1500),
            2,
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
        let tries = std::fs::read_to_string(&count).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(tries.lines().count(), 2, "{tries}");
    }

    #[test]
    fn a_fifo_is_a_fifo() {
        use std::os::unix::fs::FileTypeExt;
        let dir = std::env::temp_dir().join(format!("pv-test-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        mkfifo(&f).unwrap();
        assert!(std::fs::metadata(&f).unwrap().file_type().is_fifo());
        assert_eq!(mkfifo(&f).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
