// SPDX-License-Identifier: Apache-2.0
//! Pausing and resuming a running VM through the VMM's Rust API (`vmm::run_with` with a
//! `RunControl`, what the management API will drive): a counting guest stops making
//! progress while paused and goes on after resume, with 1, 2 and 4 vCPUs (all of them
//! leave the guest together); a paused VM still ends cleanly on SIGTERM; 200 pause/resume
//! pairs in a row lose no vCPU and never hang.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor tree (`cargo build -p vmm`);
//! skipped (with a line saying so) without /dev/kvm.
#![cfg(target_arch = "x86_64")]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use polyvisor_tests::guest::pvh_counting;
use polyvisor_tests::TempDir;
use vmm::cli::{Cli, Command};
use vmm::{CommandError, RunControl, RunOutcome};

/// Loop iterations between two dots (about 1 µs each on this host's software KVM).
const LOOPS_PER_DOT: u32 = 5_000;

/// Prints `ready`, then a dot every few milliseconds, forever.
fn counting_guest() -> Vec<u8> {
    pvh_counting(LOOPS_PER_DOT)
}

fn config(kernel: &Path, console: &Path, cpus: u32) -> vmm::Config {
    let args = [
        "polyvisor".to_string(),
        "run".into(),
        "--kernel".into(),
        kernel.display().to_string(),
        "--memory".into(),
        "64M".into(),
        "--cpus".into(),
        cpus.to_string(),
        "--shutdown-timeout".into(),
        "0".into(),
        "--console".into(),
        format!("file={}", console.display()),
    ];
    let Some(Command::Run(run)) = Cli::try_parse_from(args).unwrap().command else {
        panic!("not a run command")
    };
    run.into_config().unwrap()
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Wait (bounded) until the console file grows past `than`.
fn grows(p: &Path, than: u64, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if size(p) > than {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A counting guest running on its own thread under `vmm::run_with`.
struct Running {
    _dir: TempDir,
    console: std::path::PathBuf,
    rc: Arc<RunControl>,
    vm: std::thread::JoinHandle<Result<RunOutcome, vmm::Error>>,
    vm_thread: libc::pthread_t,
}

/// `None` (with a line saying so) without /dev/kvm.
fn start(cpus: u32) -> Option<Running> {
    if !Path::new("/dev/kvm").exists() {
        eprintln!("skipped: no /dev/kvm on this host");
        return None;
    }
    let dir = TempDir::new();
    let kernel = dir.write("count.elf", &counting_guest());
    let console = dir.path().join("console.log");
    let config = config(&kernel, &console, cpus);
    let rc = Arc::new(RunControl::new().unwrap());
    // The VM runs on its own thread, which owns the stop signals there (blocked in it,
    // read from its signalfd): SIGTERM below is sent to that thread only.
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let vm = {
        let rc = rc.clone();
        std::thread::spawn(move || {
            // SAFETY: pthread_self names this live thread.
            tid_tx.send(unsafe { libc::pthread_self() }).unwrap();
            vmm::run_with(&config, Some(&rc))
        })
    };
    let vm_thread = tid_rx.recv().unwrap();
    assert!(
        grows(&console, 6 + 10, Duration::from_secs(30)),
        "the guest never counted"
    );
    Some(Running {
        _dir: dir,
        console,
        rc,
        vm,
        vm_thread,
    })
}

/// The console file's size once the console writer has written out what the guest wrote
/// before a pause: wait (bounded) until it stops changing for a while.
fn settled_size(console: &Path) -> u64 {
    let mut frozen = size(console);
    let settle = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = size(console);
        if now == frozen || settle.elapsed() > Duration::from_secs(10) {
            return now;
        }
        frozen = now;
    }
}

impl Running {
    /// SIGTERM to the VM's thread: it ends, promptly, as a stopped run; requests are
    /// refused afterwards.
    fn terminate(self) {
        let t0 = Instant::now();
        // SAFETY: `vm_thread` is the live VM thread (it joins below); SIGTERM is blocked
        // there and waits for its signalfd.
        unsafe { libc::pthread_kill(self.vm_thread, libc::SIGTERM) };
        let outcome = self.vm.join().unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the VM did not stop"
        );
        match outcome {
            Err(e) => assert_eq!(e.exit_code(), 128 + libc::SIGTERM, "{e}"),
            Ok(o) => {
                panic!("ended as {o:?}, not by the signal")
            }
        }
        assert_eq!(
            self.rc.pause(Duration::from_secs(1)),
            Err(CommandError::NoAnswer(Duration::from_secs(1)))
        );
    }
}

fn pause_and_resume(cpus: u32) {
    let Some(vm) = start(cpus) else { return };
    let (rc, console) = (&vm.rc, vm.console.as_path());
    // Pausing a running VM works once; a second pause is refused.
    rc.pause(Duration::from_secs(10)).expect("pause");
    assert_eq!(
        rc.pause(Duration::from_secs(10)),
        Err(CommandError::AlreadyIn("paused"))
    );
    // The console writer may still be flushing what the guest wrote before the pause.
    let frozen = settled_size(console);
    assert!(
        !grows(console, frozen, Duration::from_millis(500)),
        "the guest kept counting while paused ({cpus} vCPUs)"
    );
    rc.resume(Duration::from_secs(10)).expect("resume");
    assert!(
        grows(console, frozen, Duration::from_secs(10)),
        "the guest did not go on after resume ({cpus} vCPUs)"
    );
    assert_eq!(
        rc.resume(Duration::from_secs(10)),
        Err(CommandError::AlreadyIn("running"))
    );

    // Paused again, then SIGTERM: the VM still ends, promptly, as a stopped run.
    rc.pause(Duration::from_secs(10)).expect("second pause");
    vm.terminate();
}

// One test function: the VM runs on a thread of this process that owns the stop signals,
// so the cases run one after another rather than in parallel threads.
#[test]
fn pause_stops_a_counting_guest_and_resume_continues_it() {
    for cpus in [1, 2, 4] {
        pause_and_resume(cpus);
    }
    two_hundred_pauses_in_a_row_lose_no_vcpu();
}

/// Pause and resume in a row, many times: every pause gets every vCPU out of the guest
/// (each reports it, or `pause` fails naming the late one), every resume lets them all go
/// on, none is lost and nothing hangs; the guest still counts at the end. With 4 vCPUs,
/// three of which wait for their INIT/SIPI inside `KVM_RUN` (a kick must get them out).
fn two_hundred_pauses_in_a_row_lose_no_vcpu() {
    let Some(vm) = start(4) else { return };
    let t0 = Instant::now();
    for round in 0..200 {
        vm.rc
            .pause(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("pause {round}: {e}"));
        vm.rc
            .resume(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("resume {round}: {e}"));
    }
    let took = t0.elapsed();
    eprintln!("200 pause/resume pairs with 4 vCPUs: {took:?}");
    // One kick each, no retry intervals: far below a second per pair even here.
    assert!(
        took < Duration::from_secs(60),
        "200 pause/resume pairs took {took:?}"
    );
    let now = size(&vm.console);
    assert!(
        grows(&vm.console, now, Duration::from_secs(10)),
        "the guest did not go on after 200 pause/resume pairs"
    );
    vm.terminate();
}
