// SPDX-License-Identifier: Apache-2.0
//! SIGTERM, SIGINT and SIGHUP stop a running guest cleanly: vCPU threads are stopped and
//! joined, polyvisor exits 128 + the signal number with one line saying which signal.
//! SIGTERM first presses the guest's ACPI power button (a GED event): a guest that answers
//! by powering off ends the run with exit 0; one that does not is stopped after
//! `--shutdown-timeout`.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use polyvisor_tests::guest::{halt_forever, print, pvh_asm, pvh_kernel};
use polyvisor_tests::runner::polyvisor_bin;
use polyvisor_tests::{Cond, Mem, Reg, TempDir};

/// The GED's event register (arch-x86_64 layout) and its power-button bit.
const GED_EVENTS: u32 = 0xc000_1000;
const EVENT_POWER_BUTTON: u32 = 1;
/// SLP_EN | SLP_TYP 5 to the sleep control register: ACPI S5.
const SLEEP_CONTROL_PORT: u16 = 0x600;
const SLEEP_S5: u8 = (1 << 5) | (5 << 2);

/// A guest that says it is running, then spins forever (with 2 vCPUs, the AP waits for a
/// SIPI that never comes, so both the running and the waiting vCPU must be stopped).
fn spinning_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "spinning\n");
    let top = a.here_label();
    a.jmp_short(top); // jmp $
    pvh_kernel(a.finish())
}

/// A guest that says it is waiting, polls the GED's event register (what its `_EVT` method
/// reads) until the power button bit is set, then powers off through S5, as Linux's ACPI
/// button driver and acpid would.
fn power_button_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "waiting\n");
    let poll = a.here_label();
    a.mov_load(Reg::Eax, Mem::Abs(GED_EVENTS)); // mov eax, [GED]
    a.test_eax_imm(EVENT_POWER_BUTTON); // test eax, 1
    a.j_near(Cond::E, poll); // jz poll
    print(&mut a, "power button\n");
    a.mov_dx(SLEEP_CONTROL_PORT); // mov dx, 0x600
    a.mov_al(SLEEP_S5); // mov al, S5
    a.out_dx_al(); // out dx, al
    halt_forever(&mut a);
    pvh_kernel(a.finish())
}

/// Start polyvisor on `kernel` with `extra` flags, wait for the guest's first line
/// `ready`, send `sig`, and return (exit status, stdout after `ready`, stderr).
fn signal_run(
    kernel: &[u8],
    extra: &[&str],
    ready: &str,
    sig: i32,
) -> (Option<i32>, String, String) {
    let dir = TempDir::new();
    let kernel = dir.write("guest.elf", kernel);
    let mut child = Command::new(polyvisor_bin())
        .args(["run", "--cpus", "2", "--memory", "64M"])
        .args(extra)
        .arg("--kernel")
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
    assert_eq!(line, ready);

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
            panic!("polyvisor did not stop within 20 s of signal {sig}");
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
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (status.code(), out, stderr)
}

/// SIGINT, SIGHUP, and SIGTERM with `--shutdown-timeout 0`: stopped at once, one line.
fn stop_with(sig: i32, name: &str) {
    let (code, _, stderr) = signal_run(
        &spinning_guest(),
        &["--shutdown-timeout", "0"],
        "spinning\n",
        sig,
    );
    assert_eq!(code, Some(128 + sig), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].contains(&format!("stopped by {name}")), "{stderr}");
    assert!(lines[0].contains("without its cooperation"), "{stderr}");
}

#[test]
fn sigterm_presses_the_acpi_power_button_and_the_guest_powers_off() {
    polyvisor_tests::require_kvm!();
    let (code, out, stderr) = signal_run(&power_button_guest(), &[], "waiting\n", 15);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(out, "power button\n");
    assert!(
        stderr.contains("SIGTERM: pressed the guest's ACPI power button; waiting up to 10 s"),
        "{stderr}"
    );
    assert!(stderr.contains("guest powered off"), "{stderr}");
}

#[test]
fn sigterm_stops_a_guest_that_ignores_its_power_button_after_the_timeout() {
    polyvisor_tests::require_kvm!();
    let t0 = Instant::now();
    let (code, _, stderr) = signal_run(
        &spinning_guest(),
        &["--shutdown-timeout", "1"],
        "spinning\n",
        15,
    );
    assert_eq!(code, Some(143), "stderr: {stderr}");
    assert!(t0.elapsed() >= Duration::from_secs(1));
    let last = stderr.lines().last().unwrap_or_default();
    // The figure is the time measured (1.0 s on a quiet machine, a little more under load).
    let waited = last
        .split_once("stopped by SIGTERM; the guest did not power off within ")
        .and_then(|(_, rest)| rest.split_once(" s of its power button press"))
        .and_then(|(secs, _)| secs.parse::<f64>().ok());
    assert!(waited.is_some_and(|w| (1.0..5.0).contains(&w)), "{stderr}");
}

#[test]
fn sigterm_stops_the_guest() {
    polyvisor_tests::require_kvm!();
    stop_with(15, "SIGTERM");
}

#[test]
fn sigint_stops_the_guest() {
    polyvisor_tests::require_kvm!();
    stop_with(2, "SIGINT");
}
