// SPDX-License-Identifier: Apache-2.0
//! What the management API tests (`api.rs`, `api_hostile.rs`) share: a `polyvisor run
//! --api-socket` in the background running a counting guest, and a plain HTTP/1.1 client
//! on a `UnixStream` (no HTTP crate: the test sees the bytes a client sends).
#![allow(dead_code)] // each test crate uses its own part

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use polyvisor_tests::guest::pvh_counting;
use polyvisor_tests::runner::polyvisor_bin;
use polyvisor_tests::TempDir;

/// Loop iterations between two of the guest's dots.
const LOOPS_PER_DOT: u32 = 5_000;

/// An answer: status, headers (as received) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("answer body is not JSON ({e}): {self:?}"))
    }

    /// An error answer: Cloud Hypervisor's JSON array of messages, joined.
    pub fn error(&self) -> String {
        let messages: Vec<String> = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("error body is not a JSON array ({e}): {self:?}"));
        assert!(!messages.is_empty(), "{self:?}");
        messages.join(": ")
    }
}

/// Send `raw` on a new connection and read the whole answer (the request should ask
/// `Connection: close`, or the server closes after an error).
pub fn exchange(socket: &Path, raw: &[u8]) -> Answer {
    let mut s = UnixStream::connect(socket).expect("connect to the API socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // A server that refuses the connection at once (503) may have closed it before the
    // request is sent: its answer is still there to read.
    let _ = s.write_all(raw);
    read_answer(&mut s)
}

/// Read one answer until the server closes the connection.
pub fn read_answer(s: &mut UnixStream) -> Answer {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            // A server that closes a refused connection with part of the request unread
            // resets it: what it sent before still counts.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => panic!("read the answer: {e}"),
        }
    }
    parse_answer(&raw)
}

pub fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// `METHOD /api/v1/ENDPOINT` with an optional JSON body, one request per connection.
pub fn call(socket: &Path, method: &str, endpoint: &str, body: Option<&str>) -> Answer {
    let mut raw = format!(
        "{method} /api/v1/{endpoint} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n"
    );
    if let Some(b) = body {
        raw.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        raw.push_str("\r\n");
    }
    exchange(socket, raw.as_bytes())
}

pub fn get(socket: &Path, endpoint: &str) -> Answer {
    call(socket, "GET", endpoint, None)
}

pub fn put(socket: &Path, endpoint: &str) -> Answer {
    call(socket, "PUT", endpoint, None)
}

/// A `polyvisor run --api-socket` running a counting guest, killed on drop if still there.
pub struct Vmm {
    pub dir: TempDir,
    pub socket: PathBuf,
    pub console: PathBuf,
    pub stderr_path: PathBuf,
    child: Child,
}

impl Vmm {
    /// Start it and wait (bounded) until the guest counts. `None` without /dev/kvm.
    pub fn start(extra: &[&str]) -> Option<Vmm> {
        Self::start_under(&[], extra)
    }

    /// [`Vmm::start`] under a wrapper command (`unshare --net`), which must exec polyvisor.
    pub fn start_under(wrapper: &[&str], extra: &[&str]) -> Option<Vmm> {
        Self::start_kernel(wrapper, &pvh_counting(LOOPS_PER_DOT), extra, &[])
    }

    /// [`Vmm::start_under`] with another guest (an ELF kernel image; it must write to its
    /// console soon after it starts) and extra environment variables.
    pub fn start_kernel(
        wrapper: &[&str],
        kernel: &[u8],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Vmm> {
        if !polyvisor_tests::runner::kvm_available(file!()) {
            return None;
        }
        let dir = TempDir::new();
        let kernel = dir.write("guest.elf", kernel);
        let socket = dir.path().join("api.sock");
        let console = dir.path().join("console.log");
        let stderr_path = dir.path().join("stderr.log");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(polyvisor_bin());
                c
            }
            None => Command::new(polyvisor_bin()),
        };
        let child = command
            .arg("run")
            .arg("--kernel")
            .arg(&kernel)
            .args(["--memory", "64M", "--shutdown-timeout", "0", "--console"])
            .arg(format!("file={}", console.display()))
            .arg("--api-socket")
            .arg(&socket)
            .args(extra)
            .env_remove("POLYVISOR_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn polyvisor");
        let vmm = Vmm {
            dir,
            socket,
            console,
            stderr_path,
            child,
        };
        assert!(
            vmm.grows(0, Duration::from_secs(30)),
            "the guest never counted; stderr:\n{}",
            vmm.stderr()
        );
        Some(vmm)
    }

    /// `polyvisor --api-socket PATH`: the VMM with no VM, once its socket answers.
    pub fn start_empty() -> Vmm {
        let dir = TempDir::new();
        let socket = dir.path().join("api.sock");
        let console = dir.path().join("console.log");
        let stderr_path = dir.path().join("stderr.log");
        let child = Command::new(polyvisor_bin())
            .arg("--api-socket")
            .arg(&socket)
            .env_remove("POLYVISOR_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn polyvisor");
        let vmm = Vmm {
            dir,
            socket,
            console,
            stderr_path,
            child,
        };
        let start = Instant::now();
        while UnixStream::connect(&vmm.socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the API socket never answered; stderr:\n{}",
                vmm.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        vmm
    }

    /// A `VmConfig` for the counting guest, its serial console in `console`.
    pub fn counting_vm_config(&self) -> String {
        let kernel = self.dir.write("count.elf", &pvh_counting(LOOPS_PER_DOT));
        serde_json::json!({
            "payload": {"kernel": kernel},
            "cpus": {"boot_vcpus": 1, "max_vcpus": 1},
            "memory": {"size": 64u64 << 20},
            "serial": {"mode": "File", "file": self.console},
            "console": {"mode": "Off"}
        })
        .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn console_text(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    pub fn console_size(&self) -> u64 {
        std::fs::metadata(&self.console)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Whether the console grows past `than` within `within`.
    pub fn grows(&self, than: u64, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.console_size() > than + 8 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// The console's size once what the guest wrote before a pause is written out.
    pub fn settled_size(&self) -> u64 {
        let mut last = self.console_size();
        let start = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.console_size();
            if now == last || start.elapsed() > Duration::from_secs(10) {
                return now;
            }
            last = now;
        }
    }

    /// The VM's state from `vm.info`.
    pub fn state(&self) -> String {
        let info = get(&self.socket, "vm.info");
        assert_eq!(info.status, 200, "{info:?}");
        info.json()["state"].as_str().unwrap().to_string()
    }

    /// Wait (bounded) for the process to end: its exit code.
    pub fn wait(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "polyvisor did not end within {within:?}; stderr:\n{}",
            self.stderr()
        )
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
