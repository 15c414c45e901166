//! SIGTERM, SIGINT and SIGHUP stop a running guest cleanly: vCPU threads are stopped and
//! joined, polyvisor exits 128 + the signal number with one line saying which signal.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use polyvisor_tests::guest::{print, pvh_asm, pvh_kernel};
use polyvisor_tests::runner::polyvisor_bin;
use polyvisor_tests::TempDir;

/// A guest that says it is running, then spins forever (with 2 vCPUs, the AP waits for a
/// SIPI that never comes, so both the running and the waiting vCPU must be stopped).
fn spinning_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "spinning\n");
    let top = a.here_label();
    a.jmp_short(top); // jmp $
    pvh_kernel(a.finish())
}

fn stop_with(sig: i32, name: &str) {
    let dir = TempDir::new();
    let kernel = dir.write("spin.elf", &spinning_guest());
    let mut child = Command::new(polyvisor_bin())
        .args(["run", "--cpus", "2", "--memory", "64M", "--kernel"])
        .arg(&kernel)
        .env_remove("POLYVISOR_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting polyvisor");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "spinning\n");

    let sent = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("running kill(1)");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("polyvisor did not stop within 20 s of {name}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(128 + sig), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].contains(&format!("stopped by {name}")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn sigterm_stops_the_guest() {
    stop_with(15, "SIGTERM");
}

#[test]
fn sigint_stops_the_guest() {
    stop_with(2, "SIGINT");
}
