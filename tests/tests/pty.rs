// SPDX-License-Identifier: Apache-2.0
//! polyvisor with a terminal as its stdin, as a person runs it: a pseudo-terminal whose
//! slave is polyvisor's stdin and controlling terminal (polyvisor is a session leader).
//! polyvisor puts the terminal in raw mode while the guest runs; whatever ends the run —
//! guest poweroff, guest reset, SIGTERM, SIGINT, SIGHUP, SIGQUIT — it must exit by itself,
//! without a key press (nothing is ever written to the master here), with the documented
//! status, and leave the terminal's settings exactly as it found them. Keys typed into
//! the master reach the guest's UART, Ctrl-C included (raw mode: no SIGINT from the
//! terminal).
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

mod common;

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Ended, Running, Stdout, STOP_DEADLINE};
use polyvisor_tests::guest::{
    halt_forever, print, pvh_asm, pvh_kernel, reset_i8042, COM1, SCRATCH,
};
use polyvisor_tests::runner::polyvisor_bin;
use polyvisor_tests::{Asm, Cond, Mem, Reg, TempDir};

/// A pseudo-terminal pair; both ends close-on-exec (the child gets the slave as its
/// stdin through `Stdio`, which clears the flag on fd 0 only).
struct Pty {
    master: File,
    slave: OwnedFd,
}

fn check(rc: libc::c_int, what: &str) {
    assert!(rc >= 0, "{what}: {}", io::Error::last_os_error());
}

impl Pty {
    /// `posix_openpt` + `grantpt` + `unlockpt` + open of the slave (what `openpty` does,
    /// but with `O_CLOEXEC` from the start: other tests fork concurrently, and a child that
    /// inherited either end would keep the terminal alive).
    fn open() -> Pty {
        // SAFETY: plain syscalls on fds this function owns; `ptsname_r` writes at most
        // `buf.len()` bytes into `buf` and NUL-terminates on success.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            check(m, "posix_openpt");
            let master = File::from_raw_fd(m);
            check(libc::grantpt(m), "grantpt");
            check(libc::unlockpt(m), "unlockpt");
            let mut buf = [0 as libc::c_char; 128];
            let rc = libc::ptsname_r(m, buf.as_mut_ptr(), buf.len());
            assert_eq!(rc, 0, "ptsname_r: {}", io::Error::from_raw_os_error(rc));
            let name = CStr::from_ptr(buf.as_ptr());
            let s = libc::open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            check(s, "open the pty slave");
            Pty {
                master,
                slave: OwnedFd::from_raw_fd(s),
            }
        }
    }

    fn termios(&self) -> libc::termios {
        // SAFETY: tcgetattr fills the zeroed termios (plain data) for a valid fd.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            check(libc::tcgetattr(self.slave.as_raw_fd(), &mut t), "tcgetattr");
            t
        }
    }

    fn set_termios(&self, t: &libc::termios) {
        // SAFETY: tcsetattr reads the termios for a valid fd.
        let rc = unsafe { libc::tcsetattr(self.slave.as_raw_fd(), libc::TCSANOW, t) };
        check(rc, "tcsetattr");
    }

    /// Gives the terminal settings a user might have that differ from the defaults, so a
    /// VMM that "restores" by setting fixed flags instead of the saved settings shows up.
    fn customize(&self) -> Settings {
        let mut t = self.termios();
        t.c_cc[libc::VKILL] = 0x0b; // ^K instead of ^U
        t.c_cc[libc::VEOF] = 0x1a; // ^Z instead of ^D
        t.c_lflag &= !libc::ECHOCTL;
        t.c_iflag |= libc::IUTF8;
        self.set_termios(&t);
        Settings::of(&self.termios())
    }
}

/// The parts of `struct termios` that must come back exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Settings {
    iflag: libc::tcflag_t,
    oflag: libc::tcflag_t,
    cflag: libc::tcflag_t,
    lflag: libc::tcflag_t,
    cc: [libc::cc_t; libc::NCCS],
}

impl Settings {
    fn of(t: &libc::termios) -> Settings {
        Settings {
            iflag: t.c_iflag,
            oflag: t.c_oflag,
            cflag: t.c_cflag,
            lflag: t.c_lflag,
            cc: t.c_cc,
        }
    }

    /// Raw as far as the contract needs: no line editing, no echo, no signals from keys.
    fn is_raw(&self) -> bool {
        self.lflag & (libc::ICANON | libc::ECHO | libc::ISIG) == 0
    }
}

/// Makes the child a session leader whose controlling terminal is its stdin (the pty
/// slave), as a login shell's child is; and lets it dump no core (a SIGQUIT that beats
/// polyvisor's handlers would otherwise leave one behind).
fn session_leader_on_stdin(cmd: &mut Command) {
    session_leader(cmd, true);
}

/// As [`session_leader_on_stdin`]; with `ctty` false the session has no controlling
/// terminal (stdin is a terminal job control does not apply to, as a console handed to
/// a process started by init is).
fn session_leader(cmd: &mut Command, ctty: bool) {
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (setsid, ioctl, setrlimit); it allocates nothing. Stdio
    // is set up before it runs, so fd 0 is the pty slave.
    unsafe {
        cmd.pre_exec(move || {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setsid() < 0
                || (ctty && libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0)
                || libc::setrlimit(libc::RLIMIT_CORE, &no_core) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// polyvisor running with the pty slave as stdin and controlling terminal.
struct TtyRun {
    pty: Pty,
    before: Settings,
    vm: Running,
    raw_seen: bool,
}

impl TtyRun {
    fn start(kernel: &[u8], extra: &[&str]) -> TtyRun {
        Self::start_as(kernel, extra, true)
    }

    /// [`TtyRun::start`]; `ctty` false: the pty is stdin but not the controlling terminal.
    fn start_as(kernel: &[u8], extra: &[&str], ctty: bool) -> TtyRun {
        let dir = TempDir::new();
        let k = dir.write("tty.elf", kernel);
        let pty = Pty::open();
        let before = pty.customize();
        let mut cmd = Command::new(polyvisor_bin());
        cmd.args([OsStr::new("run"), OsStr::new("--kernel"), k.as_os_str()])
            .args(extra);
        session_leader(&mut cmd, ctty);
        let stdin = Stdio::from(pty.slave.try_clone().expect("dup the pty slave"));
        let vm = Running::spawn_with(&mut cmd, stdin, Stdout::Read);
        // The kernel file may go once the guest runs.
        let mut run = TtyRun {
            pty,
            before,
            vm,
            raw_seen: false,
        };
        run.vm.wait_for_stdout("ready\n", Duration::from_secs(20));
        drop(dir);
        run
    }

    /// Waits (bounded) until polyvisor has put the terminal in raw mode.
    fn wait_raw(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Settings::of(&self.pty.termios()).is_raw() {
            if Instant::now() > deadline {
                self.vm
                    .fail("polyvisor did not put its terminal stdin in raw mode within 10 s");
            }
            thread::sleep(Duration::from_millis(2));
        }
        self.raw_seen = true;
    }

    /// Waits for polyvisor to end by itself (no key is pressed) within `deadline` of the
    /// last signal (or of its start), watching for raw mode meanwhile; checks that the
    /// terminal's settings are back.
    fn finish(mut self, deadline: Duration, what: &str) -> Ended {
        let limit = Instant::now() + deadline;
        // Sample the terminal while the guest runs, until polyvisor exits (wait_exit
        // below then returns at once) or the deadline passes (it then fails).
        while !self.raw_seen && Instant::now() < limit {
            if Settings::of(&self.pty.termios()).is_raw() {
                self.raw_seen = true;
            } else if self.vm.has_exited() {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let raw_seen = self.raw_seen;
        let end = self.vm.wait_exit(deadline, what);
        assert!(!end.stderr.contains("panicked"), "{end}");
        assert!(
            raw_seen,
            "the terminal was never seen in raw mode while the guest ran\n{end}"
        );
        let after = Settings::of(&self.pty.termios());
        assert_eq!(
            after, self.before,
            "the terminal's settings after polyvisor (left) differ from before (right)\n{end}"
        );
        end
    }
}

// ------------------------------------------------------------------ guests

/// SLP_EN | SLP_TYP 5 to the ACPI sleep control register: S5.
const SLEEP_CONTROL_PORT: u16 = 0x600;
const SLEEP_S5: u8 = (1 << 5) | (5 << 2);
/// A pause before the guest ends by itself, so the main loop is waiting on stdin (the
/// terminal) when it does (iterations of `loop`: about 1 µs each on this host's KVM,
/// whose guests run slowly).
const DELAY_LOOPS: u32 = 500_000;

fn delay(a: &mut Asm) {
    a.mov_imm(Reg::Ecx, DELAY_LOOPS);
    let l = a.here_label();
    a.loop_to(l);
}

fn poweroff_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "ready\n");
    delay(&mut a);
    a.mov_dx(SLEEP_CONTROL_PORT);
    a.mov_al(SLEEP_S5);
    a.out_dx_al(); // out 0x600, S5
    halt_forever(&mut a);
    pvh_kernel(a.finish())
}

fn reset_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "ready\n");
    delay(&mut a);
    reset_i8042(&mut a);
    pvh_kernel(a.finish())
}

fn spinning_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "ready\n");
    let top = a.here_label();
    a.jmp_short(top);
    pvh_kernel(a.finish())
}

const COM1_LSR: u16 = COM1 + 5;
const LSR_DATA_READY: u8 = 1;
/// Bytes the echo guest collects.
const KEYS: u32 = 4;
/// Polls of the UART before the echo guest gives up (bounded; each poll is a port exit).
const RX_SPINS: u32 = 20_000_000;

/// Prints `ready`, collects [`KEYS`] bytes from COM1 (bounded), prints `got=[<bytes>]`
/// and resets.
fn echo_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "ready\n");
    a.xor_rr(Reg::Ebx, Reg::Ebx); // ebx = bytes received
    a.mov_imm(Reg::Ecx, RX_SPINS);
    let poll = a.here_label();
    let next = a.label();
    let done = a.label();
    a.mov_dx(COM1_LSR);
    a.in_al_dx(); // in al, LSR
    a.test_al(LSR_DATA_READY);
    a.j(Cond::E, next);
    a.mov_dx(COM1);
    a.in_al_dx(); // in al, RBR
    a.mov_store8(Mem::Base(Reg::Ebx, SCRATCH as i32), Reg::Eax); // buf[ebx] = al
    a.inc(Reg::Ebx);
    a.cmp_imm(Reg::Ebx, KEYS);
    a.j(Cond::Ae, done);
    a.bind(next);
    a.loop_to(poll);
    a.bind(done);
    print(&mut a, "got=[");
    let empty = a.label();
    a.test_rr(Reg::Ebx, Reg::Ebx);
    a.j(Cond::E, empty);
    a.mov_imm(Reg::Esi, SCRATCH);
    a.mov_rr(Reg::Ecx, Reg::Ebx);
    let each = a.here_label();
    a.lodsb(); // al = [esi++]
    a.out_dx_al();
    a.loop_to(each);
    a.bind(empty);
    print(&mut a, "]\n");
    reset_i8042(&mut a);
    pvh_kernel(a.finish())
}

// ------------------------------------------------------------------ the endings

/// How long a guest that ends by itself may take, from its `ready` line.
const GUEST_END_DEADLINE: Duration = Duration::from_secs(20);

fn assert_guest_ended(end: &Ended, line: &str) {
    assert_eq!(end.code(), Some(0), "exit status 0\n{end}");
    assert!(
        end.stderr.contains(line),
        "expected `{line}` on stderr\n{end}"
    );
}

/// Port a guest writes to make a debug build's vCPU thread panic (POLYVISOR_TEST_PANIC_ON_PORT).
const PANIC_PORT: u8 = 0x80;

fn panicking_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "ready\n");
    delay(&mut a);
    a.out_imm_al(PANIC_PORT); // out 0x80, al: the armed vCPU thread panics
    halt_forever(&mut a);
    pvh_kernel(a.finish())
}

/// The panic policy: a panic on a vCPU thread stops the VM at once, restores the terminal,
/// says which thread panicked where, and exits 70. (The hook that makes the thread panic
/// exists in debug builds only; the tests use one.)
#[test]
fn a_vmm_panic_restores_the_terminal_and_exits_70() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let k = dir.write("panic.elf", &panicking_guest());
    let pty = Pty::open();
    let before = pty.customize();
    let mut cmd = Command::new(polyvisor_bin());
    cmd.args([OsStr::new("run"), OsStr::new("--kernel"), k.as_os_str()])
        .env(
            "POLYVISOR_TEST_PANIC_ON_PORT",
            u16::from(PANIC_PORT).to_string(),
        );
    session_leader_on_stdin(&mut cmd);
    let stdin = Stdio::from(pty.slave.try_clone().expect("dup the pty slave"));
    let mut vm = Running::spawn_with(&mut cmd, stdin, Stdout::Read);
    vm.wait_for_stdout("ready\n", Duration::from_secs(20));
    let mut raw_seen = false;
    let limit = Instant::now() + Duration::from_secs(20);
    while !vm.has_exited() && Instant::now() < limit {
        raw_seen |= Settings::of(&pty.termios()).is_raw();
        thread::sleep(Duration::from_millis(1));
    }
    let end = vm.wait_exit(Duration::from_secs(20), "a vCPU thread's panic");
    if cfg!(debug_assertions) {
        assert_eq!(end.code(), Some(70), "exit status 70\n{end}");
        assert!(end.stderr.contains("thread 'vcpu0' panicked"), "{end}");
        assert!(end.stderr.contains("this is a bug"), "{end}");
    }
    let _ = raw_seen; // raw mode may be too short-lived to sample; the settings matter
    assert_eq!(
        Settings::of(&pty.termios()),
        before,
        "the terminal's settings after the panic differ from before\n{end}"
    );
}

#[test]
fn guest_poweroff_ends_without_a_key_and_restores_the_terminal() {
    polyvisor_tests::require_kvm!();
    let run = TtyRun::start(&poweroff_guest(), &[]);
    let end = run.finish(GUEST_END_DEADLINE, "the guest's S5 poweroff");
    assert_guest_ended(&end, "guest powered off");
}

#[test]
fn guest_reset_ends_without_a_key_and_restores_the_terminal() {
    polyvisor_tests::require_kvm!();
    let run = TtyRun::start(&reset_guest(), &[]);
    let end = run.finish(GUEST_END_DEADLINE, "the guest's i8042 reset");
    assert_guest_ended(&end, "guest reset");
}

/// A spinning guest, raw mode reached, then `sig`: exit 128 + `sig` within the deadline.
fn stopped_by(sig: i32, extra: &[&str]) {
    let mut run = TtyRun::start(&spinning_guest(), extra);
    run.wait_raw();
    run.vm.signal(sig);
    let end = run.finish(STOP_DEADLINE, &format!("signal {sig}"));
    assert_eq!(
        end.code(),
        Some(128 + sig),
        "exit status 128 + {sig}\n{end}"
    );
}

#[test]
fn sigterm_with_timeout_0_ends_without_a_key_and_restores_the_terminal() {
    polyvisor_tests::require_kvm!();
    stopped_by(libc::SIGTERM, &["--shutdown-timeout", "0"]);
}

#[test]
fn sigint_ends_without_a_key_and_restores_the_terminal() {
    polyvisor_tests::require_kvm!();
    stopped_by(libc::SIGINT, &[]);
}

#[test]
fn sighup_ends_without_a_key_and_restores_the_terminal() {
    polyvisor_tests::require_kvm!();
    // Sent with kill(2): polyvisor is the session leader of this terminal, and the test
    // never closes the master while it runs.
    stopped_by(libc::SIGHUP, &[]);
}

#[test]
fn sigquit_ends_without_a_key_and_restores_the_terminal() {
    polyvisor_tests::require_kvm!();
    stopped_by(libc::SIGQUIT, &[]);
}

#[test]
fn keys_typed_on_the_terminal_reach_the_guest_uart() {
    polyvisor_tests::require_kvm!();
    let mut run = TtyRun::start(&echo_guest(), &[]);
    run.wait_raw();
    // Ctrl-C is a byte for the guest in raw mode, not a SIGINT for polyvisor.
    run.pty
        .master
        .write_all(b"p\x03ng")
        .expect("typing on the master");
    let end = run.finish(GUEST_END_DEADLINE, "the echo guest's reset");
    assert_guest_ended(&end, "guest reset");
    assert!(
        end.stdout.contains("got=[p\x03ng]\n"),
        "the guest did not receive the typed keys\n{end}"
    );
}

#[test]
fn a_terminal_that_is_not_the_controlling_one_is_used() {
    polyvisor_tests::require_kvm!();
    // No job control applies to it: raw mode and input, as on a controlling terminal.
    let mut run = TtyRun::start_as(&echo_guest(), &[], false);
    run.wait_raw();
    run.pty
        .master
        .write_all(b"ping")
        .expect("typing on the master");
    let end = run.finish(GUEST_END_DEADLINE, "the echo guest's reset");
    assert_guest_ended(&end, "guest reset");
    assert!(
        end.stdout.contains("got=[ping]\n"),
        "the guest did not receive the typed keys\n{end}"
    );
}

/// The GED's event register (x86_64 layout) and its power-button bit.
const GED_EVENTS: u32 = 0xc000_1000;
const EVENT_POWER_BUTTON: u32 = 1;

/// Prints `ready`, polls the GED until its power button is pressed, then powers off.
fn power_button_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "ready\n");
    let poll = a.here_label();
    a.mov_load(Reg::Eax, Mem::Abs(GED_EVENTS));
    a.test_eax_imm(EVENT_POWER_BUTTON);
    a.j_near(Cond::E, poll);
    a.mov_dx(SLEEP_CONTROL_PORT);
    a.mov_al(SLEEP_S5);
    a.out_dx_al();
    halt_forever(&mut a);
    pvh_kernel(a.finish())
}

#[test]
fn sigterm_answered_by_a_guest_poweroff_restores_the_terminal() {
    polyvisor_tests::require_kvm!();
    let mut run = TtyRun::start(&power_button_guest(), &[]);
    run.wait_raw();
    run.vm.signal(libc::SIGTERM);
    let end = run.finish(STOP_DEADLINE, "SIGTERM (power button)");
    assert_guest_ended(&end, "guest powered off");
}

/// Signals that arrive while polyvisor is still starting (before or around the moment it
/// sets raw mode) must not leave the terminal raw: raw mode comes only after the signal
/// handlers exist. Whatever the timing, polyvisor ends promptly (by the signal's default
/// action if it came before any handler, else with 128 + N) and the settings are back.
#[test]
fn signals_during_start_up_never_leave_the_terminal_raw() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let k = dir.write("tty.elf", &spinning_guest());
    let delays_us = [
        0u64, 200, 500, 1000, 2000, 3000, 5000, 8000, 12_000, 20_000, 30_000, 50_000,
    ];
    for (i, delay_us) in delays_us.into_iter().enumerate() {
        let sig = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT][i % 4];
        let pty = Pty::open();
        let before = pty.customize();
        let mut cmd = Command::new(polyvisor_bin());
        cmd.args([OsStr::new("run"), OsStr::new("--kernel"), k.as_os_str()])
            .args(["--shutdown-timeout", "0"]);
        session_leader_on_stdin(&mut cmd);
        let stdin = Stdio::from(pty.slave.try_clone().expect("dup the pty slave"));
        let mut vm = Running::spawn_with(&mut cmd, stdin, Stdout::Read);
        thread::sleep(Duration::from_micros(delay_us));
        vm.signal(sig);
        let end = vm.wait_exit(STOP_DEADLINE, &format!("signal {sig} {delay_us} µs in"));
        assert!(!end.stderr.contains("panicked"), "{end}");
        println!("signal {sig} after {delay_us} µs: {}", end.status);
        assert!(
            end.code() == Some(128 + sig) || end.status.signal() == Some(sig),
            "signal {sig} {delay_us} µs after the start: expected exit 128 + {sig} (or death \
             by the signal before any handler existed)\n{end}"
        );
        assert_eq!(
            Settings::of(&pty.termios()),
            before,
            "signal {sig} {delay_us} µs after the start left the terminal changed\n{end}"
        );
    }
}

/// `polyvisor run ... &` from an interactive shell: a job in the background of its terminal
/// must neither be stopped by SIGTTOU (raw mode) nor SIGTTIN (reading stdin); it leaves the
/// terminal alone, runs, and ends on SIGINT. Driven through util-linux `script` (a pty) and
/// an interactive bash (job control); skipped where either is missing.
#[test]
fn a_background_job_is_not_stopped_by_its_terminal() {
    polyvisor_tests::require_kvm!();
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !have("script") || !have("bash") {
        eprintln!("SKIPPED a_background_job_is_not_stopped_by_its_terminal: no script or bash");
        return;
    }
    let dir = TempDir::new();
    let k = dir.write("spin.elf", &spinning_guest());
    let bin = polyvisor_bin();
    let inner = format!(
        "{} run --kernel {} --memory 64M >/dev/null 2>&1 & sleep 2; jobs -l; kill -INT %1; \
         wait %1; echo rc=$?",
        bin.display(),
        k.display()
    );
    let out = Command::new("timeout")
        .args(["60", "script", "-qec"])
        .arg(format!("bash --norc -i -c '{inner}'"))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("running script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Running"), "the job was not running:\n{text}");
    assert!(!text.contains("Stopped"), "the job was stopped:\n{text}");
    assert!(
        text.contains("rc=130"),
        "SIGINT did not end it with 130:\n{text}"
    );
}
