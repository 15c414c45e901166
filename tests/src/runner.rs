// SPDX-License-Identifier: Apache-2.0
//! Runs the real `polyvisor` binary with a timeout and captures what it did.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A run that takes longer than this is killed and the test fails: a hang is a bug.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variable naming the binary to test (overrides the search next to the tests).
pub const BIN_ENV: &str = "POLYVISOR_BIN";

/// Path of the polyvisor binary: `$POLYVISOR_BIN`, else `polyvisor` in the cargo profile
/// directory this test binary was built into (`target/<profile>/deps/<test>` →
/// `target/<profile>/polyvisor`). Panics with instructions if it is not there.
pub fn polyvisor_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(BIN_ENV) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{BIN_ENV}={} does not name a file",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test binary has a directory")
        .to_path_buf();
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    let bin = dir.join("polyvisor");
    assert!(
        bin.is_file(),
        "polyvisor binary not found at {}: build it first with `cargo build -p vmm` \
         (same profile/target as the tests), or set {BIN_ENV}",
        bin.display()
    );
    bin
}

/// A temporary directory removed on drop; unique per process and call.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/polyvisor-tests-<pid>-<n>`.
    pub fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("polyvisor-tests-{}-{}", std::process::id(), n));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to a file `name` in the directory and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One invocation of polyvisor.
#[derive(Clone, Debug)]
pub struct Polyvisor {
    /// A program polyvisor runs under (e.g. `unshare --net`), with its arguments.
    under: Vec<OsString>,
    bin: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
    stdin: Option<Vec<u8>>,
    env: Vec<(OsString, OsString)>,
}

impl Polyvisor {
    /// The binary from [`polyvisor_bin`], no arguments, [`DEFAULT_TIMEOUT`].
    pub fn new() -> Polyvisor {
        Polyvisor {
            under: Vec::new(),
            bin: polyvisor_bin(),
            args: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            stdin: None,
            env: Vec::new(),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Sets an environment variable for polyvisor (e.g. `POLYVISOR_LOG=debug`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Runs polyvisor as an argument of `program args...` (e.g. `unshare --net`, to give it
    /// a network namespace of its own).
    pub fn under<S: AsRef<OsStr>>(mut self, program: &[S]) -> Self {
        self.under = program.iter().map(|a| a.as_ref().to_os_string()).collect();
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Feeds `bytes` to polyvisor's stdin through a pipe, then closes it (default: stdin is
    /// /dev/null).
    pub fn stdin_bytes(mut self, bytes: &[u8]) -> Self {
        self.stdin = Some(bytes.to_vec());
        self
    }

    /// The command line, for messages.
    pub fn command_line(&self) -> String {
        let mut s = String::new();
        for a in &self.under {
            s.push_str(&a.to_string_lossy());
            s.push(' ');
        }
        s.push_str(&self.bin.display().to_string());
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Runs polyvisor (no `RUST_LOG`/`POLYVISOR_LOG` unless [`Polyvisor::env`] set them:
    /// default logging), waits up to the
    /// timeout, and returns what it printed and its exit code. On timeout it kills the
    /// process and panics with the output so far.
    pub fn run(&self) -> RunOutput {
        let start = Instant::now();
        let mut command = match self.under.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let mut child = command
            .args(&self.args)
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .env_remove("POLYVISOR_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.command_line()));
        if let (Some(bytes), Some(mut pipe)) = (self.stdin.clone(), child.stdin.take()) {
            // Written from a thread so a child that never reads cannot block the test; the
            // pipe closes when the thread ends.
            thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let out = reader(child.stdout.take().expect("stdout"));
        let err = reader(child.stderr.take().expect("stderr"));
        let status = wait_timeout(&mut child, self.timeout);
        let timed_out = status.is_none();
        let status = match status {
            Some(s) => s,
            None => {
                let _ = child.kill();
                child.wait().expect("wait after kill")
            }
        };
        let output = RunOutput {
            command: self.command_line(),
            code: status.code(),
            status: status.to_string(),
            stdout: String::from_utf8_lossy(&out.join().expect("stdout reader")).into_owned(),
            stderr: String::from_utf8_lossy(&err.join().expect("stderr reader")).into_owned(),
            elapsed: start.elapsed(),
        };
        assert!(
            !timed_out,
            "polyvisor did not finish within {:?} and was killed (a hang is a bug)\n{output}",
            self.timeout
        );
        output
    }
}

impl Default for Polyvisor {
    fn default() -> Self {
        Polyvisor::new()
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// What a polyvisor run did.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The command line that ran.
    pub command: String,
    /// Exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    /// The exit status as text ("exit status: 0", "signal: 6 (SIGABRT)").
    pub status: String,
    /// Everything on stdout (the guest's serial console).
    pub stdout: String,
    /// Everything on stderr (logs and errors).
    pub stderr: String,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl RunOutput {
    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Panics unless stderr is free of Rust panics.
    pub fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked"),
            "polyvisor panicked\n{self}"
        );
    }

    /// Panics unless the guest ended with a reset: exit code 0, `guest reset` on stderr, no
    /// panic, and the wrong-entry stub of a PVH image never ran.
    pub fn assert_guest_reset(&self) {
        self.assert_no_panic();
        assert_eq!(self.code, Some(0), "expected exit code 0\n{self}");
        assert!(
            self.stderr.contains("guest reset"),
            "expected `guest reset` on stderr\n{self}"
        );
        assert!(
            !self.stdout.contains(crate::guest::WRONG_ENTRY_MARKER),
            "the guest was entered at e_entry instead of the PVH note's entry\n{self}"
        );
    }

    /// Panics unless the guest powered off: exit code 0, `guest powered off` on stderr, no
    /// panic.
    pub fn assert_guest_poweroff(&self) {
        self.assert_no_panic();
        assert_eq!(self.code, Some(0), "expected exit code 0\n{self}");
        assert!(
            self.stderr.contains("guest powered off"),
            "expected `guest powered off` on stderr\n{self}"
        );
    }

    /// Panics unless stdout contains `text`.
    pub fn assert_stdout_contains(&self, text: &str) {
        assert!(
            self.stdout.contains(text),
            "expected {text:?} in the guest's output\n{self}"
        );
    }

    /// The rest of the first stdout line that contains `marker`, after the marker (the
    /// marker need not start the line: firmware or the VMM may have printed before it).
    pub fn stdout_field(&self, marker: &str) -> Option<&str> {
        self.stdout.lines().find_map(|l| {
            let l = l.trim_end_matches('\r');
            l.find(marker).map(|i| &l[i + marker.len()..])
        })
    }

    /// The hex number that follows `key` (up to the next space) in the guest's output.
    pub fn hex_field(&self, key: &str) -> u64 {
        let v = self
            .stdout_field(key)
            .unwrap_or_else(|| panic!("no {key:?} in the guest output\n{self}"));
        let v = v.split_whitespace().next().unwrap_or("");
        u64::from_str_radix(v, 16)
            .unwrap_or_else(|_| panic!("{key:?} is not followed by hex: {v:?}\n{self}"))
    }

    /// Panics unless the run failed cleanly: exit code in `codes`, exactly one non-empty
    /// stderr line, containing every string of `needles`, and no panic.
    pub fn assert_clean_error(&self, codes: &[i32], needles: &[&str]) {
        self.assert_no_panic();
        assert!(
            self.code.is_some_and(|c| codes.contains(&c)),
            "expected exit code in {codes:?}\n{self}"
        );
        let lines = self.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one error line on stderr\n{self}"
        );
        for n in needles {
            assert!(
                lines[0].contains(n),
                "expected the error line to name {n:?}\n{self}"
            );
        }
    }
}

impl fmt::Display for RunOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- command: {}", self.command)?;
        writeln!(f, "--- status: {} after {:?}", self.status, self.elapsed)?;
        writeln!(f, "--- stdout ({} bytes):", self.stdout.len())?;
        writeln!(f, "{}", self.stdout)?;
        writeln!(f, "--- stderr ({} bytes):", self.stderr.len())?;
        writeln!(f, "{}", self.stderr)?;
        write!(f, "---")
    }
}

/// Writes `kernel` to a fresh temp dir and runs `polyvisor run --kernel <it> <extra...>`.
pub fn run_kernel(kernel: &[u8], extra: &[&str]) -> RunOutput {
    let dir = TempDir::new();
    let k = dir.write("kernel.elf", kernel);
    Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&k)
        .args(extra)
        .run()
}

/// Whether this host has `/dev/kvm`, which every tiny-guest test needs. When it has not,
/// the first call in a test binary (one binary per file in `tests/`) writes one line,
/// `SKIPPED <file>: no /dev/kvm on this host ...`, straight to stderr (libtest does not
/// capture it), and the test returns without running anything: see [`require_kvm!`].
pub fn kvm_available(file: &str) -> bool {
    static SAID: std::sync::Once = std::sync::Once::new();
    if Path::new("/dev/kvm").exists() {
        return true;
    }
    SAID.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {file}: no /dev/kvm on this host (its guest tests return without running)"
        );
    });
    false
}

/// Whether this process may make network namespaces with taps in them (root, `unshare
/// --net`, /dev/net/tun); says why not otherwise (the tap tests then return).
pub fn can_unshare_net(test: &str) -> bool {
    let ok = std::process::Command::new("unshare")
        .args(["--net", "true"])
        .status()
        .is_ok_and(|s| s.success())
        && Path::new("/dev/net/tun").exists();
    if !ok {
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test}: needs `unshare --net` (root) and /dev/net/tun"
        );
    }
    ok
}

/// First line of a test that runs a guest: returns from the test (skipped, said once per
/// test file on stderr) when the host has no `/dev/kvm`.
#[macro_export]
macro_rules! require_kvm {
    () => {
        if !$crate::runner::kvm_available(file!()) {
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(stderr: &str, code: Option<i32>) -> RunOutput {
        RunOutput {
            command: "polyvisor".into(),
            code,
            status: String::new(),
            stdout: "Hello\r\nvalue=0000002a\n".into(),
            stderr: stderr.into(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn temp_dirs_are_unique_and_removed() {
        let a = TempDir::new();
        let b = TempDir::new();
        assert_ne!(a.path(), b.path());
        let f = a.write("x", b"abc");
        assert_eq!(std::fs::read(&f).unwrap(), b"abc");
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists());
    }

    #[test]
    fn fields_and_lines() {
        let o = output("\nerror: --memory: bad\n\n", Some(2));
        assert_eq!(o.stdout_field("value="), Some("0000002a"));
        assert_eq!(o.stdout_field("llo"), Some(""));
        assert_eq!(o.hex_field("value="), 42);
        assert_eq!(o.stderr_lines(), vec!["error: --memory: bad"]);
        o.assert_clean_error(&[2], &["--memory"]);
    }

    #[test]
    #[should_panic(expected = "exactly one error line")]
    fn two_error_lines_fail() {
        output("a\nb\n", Some(2)).assert_clean_error(&[2], &[]);
    }

    #[test]
    #[should_panic(expected = "panicked")]
    fn panics_are_caught() {
        output("thread 'main' panicked at x.rs", Some(101)).assert_no_panic();
    }
}
