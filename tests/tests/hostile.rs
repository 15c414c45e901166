// SPDX-License-Identifier: Apache-2.0
//! Hostile tiny guests: a guest cannot hold polyvisor hostage or flood the host (issue 12).
//!
//! - a 2-vCPU guest whose AP keeps refilling the virtio-rng queue and notifying while the
//!   BSP notifies too: SIGTERM (with `--shutdown-timeout 0` and with the default) and
//!   SIGINT still end polyvisor within the documented time;
//! - a boot-timer flood, with and without `--boot-timer`: stderr stays small (guest-driven
//!   log lines are rate-limited), the timer logs "init reached" once, and without the flag
//!   its address is unclaimed MMIO;
//! - a UART flood into a stdout pipe nobody reads (and one whose reader is gone): the
//!   vCPU is never blocked by guest output, so SIGTERM/SIGINT still end polyvisor;
//! - `rep insb` / `rep insw` deliver each element as its own port access.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

mod common;

use std::ffi::OsStr;
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use common::{Ended, Running, Stdout, STOP_DEADLINE};
use polyvisor_tests::guest::{
    flat_data_segments, halt_forever, load_flat_gdt, print, print_hex32, protected_mode_trampoline,
    pvh_asm, pvh_kernel, reset_i8042, start_aps, COM1, SCRATCH, TRAMPOLINE_LEN,
};
use polyvisor_tests::virtio_mmio::{
    set_up_queue0, DRIVER_FEATURES, DRIVER_FEATURES_SEL, QUEUE_NOTIFY, STATUS,
};
use polyvisor_tests::{run_kernel, Asm, Cond, Mem, Reg, TempDir};

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
const SIGQUIT: i32 = 3;
/// The default `--shutdown-timeout`.
const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(10);
/// Guest-triggerable logging must keep stderr below this after seconds of flooding.
const STDERR_LIMIT: usize = 64 << 10;
/// How long a flood runs before the test stops it.
const FLOOD: Duration = Duration::from_secs(2);

// ------------------------------------------------------------------ virtio-rng flood

/// The queue, at its largest size, in guest-free memory (0x30000..0x9efff; the AP's
/// trampoline page comes before it). Every descriptor points at the same buffer of the
/// largest size one request is filled to (64 KiB): each request costs the device a
/// 64 KiB read of host entropy, so draining the queue takes far longer than the AP takes
/// to refill it, even when the AP's thread is descheduled for a while.
const QSIZE: u32 = 256;
const DESC: u32 = 0x4_0000;
const AVAIL: u32 = 0x4_1000;
const USED: u32 = 0x4_2000;
const BUF: u32 = 0x20_0000;
const BUF_LEN: u32 = 64 << 10;
/// Used requests the BSP waits for before it starts the AP.
const WARMUP_REQUESTS: u32 = QSIZE;
/// Bound on that phase (iterations of a loop with one notify exit each).
const WARMUP_SPINS: u32 = 2_000_000;

/// Counts the AP's refills; and the bound on the BSP's wait for the first.
const AP_ROUNDS: u32 = SCRATCH + 0x40;
const AP_WAIT_SPINS: u32 = 10_000_000;
/// The guest's own GDT (flat code 0x08, data 0x10), which the AP switches to.
const GDT_DESC: u32 = SCRATCH + 0x20;
const GDT: u32 = SCRATCH + 0x800;

/// AP start-up (see smp.rs): the SIPI vector names the trampoline's page.
const TRAMPOLINE: u32 = 0x3_0000;

fn reg(a: &mut Asm, addr: u32, value: u32) {
    a.mov_mem_imm32(Mem::Abs(addr), value); // mov dword [addr], value
}

/// Sets up virtio-rng queue 0 (VERSION_1, [`QSIZE`] entries, rings at DESC/AVAIL/USED):
/// every descriptor is device-writable, [`BUF_LEN`] bytes at `buf`, and avail slot i
/// carries descriptor i. Nothing is offered yet (the caller sets `avail.idx`).
/// Clobbers eax, ecx, esi.
fn rng_setup(a: &mut Asm, buf: u32) {
    reg(a, STATUS, 0); // reset
    reg(a, STATUS, 1); // ACKNOWLEDGE
    reg(a, STATUS, 3); // DRIVER
    reg(a, DRIVER_FEATURES_SEL, 1);
    reg(a, DRIVER_FEATURES, 1); // VERSION_1
    reg(a, DRIVER_FEATURES_SEL, 0);
    reg(a, DRIVER_FEATURES, 0);
    reg(a, STATUS, 0xb); // FEATURES_OK
    set_up_queue0(a, QSIZE, DESC, AVAIL, USED);
    reg(a, STATUS, 0xf); // DRIVER_OK
                         // Descriptor i: the one shared buffer at `buf`, device-writable, no next.
    a.mov_imm(Reg::Esi, DESC);
    a.mov_imm(Reg::Ecx, QSIZE);
    let desc = a.here_label();
    a.mov_mem_imm32(Mem::Base(Reg::Esi, 0), buf);
    a.mov_mem_imm32(Mem::Base(Reg::Esi, 4), 0);
    a.mov_mem_imm32(Mem::Base(Reg::Esi, 8), BUF_LEN);
    a.mov_mem_imm32(Mem::Base(Reg::Esi, 12), 2);
    a.add_imm(Reg::Esi, 16);
    a.loop_to(desc);
    // avail.ring[i] = i, two u16 at a time: ring slot i always carries descriptor i.
    a.mov_imm(Reg::Esi, AVAIL + 4);
    a.mov_imm(Reg::Eax, 1 << 16);
    a.mov_imm(Reg::Ecx, QSIZE / 2);
    let ring = a.here_label();
    a.mov_store(Mem::Base(Reg::Esi, 0), Reg::Eax);
    a.add_imm(Reg::Esi, 4);
    a.add_imm(Reg::Eax, 0x2_0002);
    a.loop_to(ring);
}

/// Two vCPUs against one virtio-rng queue, polled (no interrupts: the device may complete
/// requests on another thread, after the notify returns). The BSP first checks the queue
/// works alone: it keeps it full — `avail.idx = used.idx + QSIZE`, so every in-flight
/// request is a distinct descriptor — and notifies until [`WARMUP_REQUESTS`] were used.
/// Then it starts the AP, prints `flooding used=<hex>` and notifies forever, while the AP
/// keeps the queue full forever (and notifies after each refill if `ap_notifies`): a
/// vCPU serving a notification never runs out of requests, as in issue 12's report.
fn rng_flood_guest(ap_notifies: bool) -> Vec<u8> {
    let mut a = pvh_asm();
    let main = a.label();
    a.jmp(main);

    // --- the AP, in 32-bit protected mode after the trampoline ---
    a.align(16);
    let ap = a.here_label();
    flat_data_segments(&mut a);
    let feed = a.here_label();
    a.lock_inc_mem32(Mem::Abs(AP_ROUNDS)); // the BSP checks the AP runs
    a.movzx_load16(Reg::Eax, Mem::Abs(USED + 2)); // eax = used.idx
    a.add_imm(Reg::Eax, QSIZE); // + QSIZE
    a.shl_imm(Reg::Eax, 16); // idx in the high half, flags 0 (u16 wraps)
    a.mov_store(Mem::Abs(AVAIL), Reg::Eax); // avail.flags/idx
    if ap_notifies {
        reg(&mut a, QUEUE_NOTIFY, 0); // notify queue 0
    }
    a.jmp(feed);

    // --- the BSP ---
    a.bind(main);
    a.cli();
    load_flat_gdt(&mut a, GDT, GDT_DESC);
    rng_setup(&mut a, BUF);
    reg(&mut a, AVAIL, 0); // flags 0, idx 0: nothing offered yet
    reg(&mut a, AP_ROUNDS, 0);

    // Alone, keep the queue full and notify until WARMUP_REQUESTS were used (bounded).
    a.mov_imm(Reg::Ecx, WARMUP_SPINS);
    let warm = a.here_label();
    let warmed = a.label();
    a.movzx_load16(Reg::Eax, Mem::Abs(USED + 2)); // eax = used.idx
    a.cmp_imm(Reg::Eax, WARMUP_REQUESTS);
    a.j(Cond::Ae, warmed);
    a.add_imm(Reg::Eax, QSIZE);
    a.shl_imm(Reg::Eax, 16);
    a.mov_store(Mem::Abs(AVAIL), Reg::Eax); // avail.idx = used.idx + QSIZE
    reg(&mut a, QUEUE_NOTIFY, 0);
    a.loop_to(warm);
    a.bind(warmed);

    // Start the AP at the trampoline.
    let tramp = a.label();
    start_aps(&mut a, TRAMPOLINE, tramp, TRAMPOLINE_LEN);
    // Wait (bounded) until the AP is feeding.
    a.mov_imm(Reg::Ecx, AP_WAIT_SPINS);
    let ap_wait = a.here_label();
    let ap_runs = a.label();
    a.cmp_mem_imm32(Mem::Abs(AP_ROUNDS), 0);
    a.j(Cond::Ne, ap_runs);
    a.loop_to(ap_wait);
    a.bind(ap_runs);
    print(&mut a, "flooding used=");
    a.movzx_load16(Reg::Edi, Mem::Abs(USED + 2));
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, " ap=");
    a.mov_load(Reg::Edi, Mem::Abs(AP_ROUNDS));
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, "\n");
    let notify = a.here_label();
    reg(&mut a, QUEUE_NOTIFY, 0); // notify queue 0, forever
    a.jmp(notify);

    let ap_entry = a.addr_of(ap) as u32;
    a.align(16);
    a.bind(tramp);
    a.bytes(&protected_mode_trampoline(GDT, ap_entry));
    pvh_kernel(a.finish())
}

/// Starts polyvisor on `kernel` with `args`, waits for the guest's `ready` text, lets it
/// run for `run_for`, sends `sig` and waits up to `deadline` for the exit.
fn flood_then_signal(
    kernel: &[u8],
    args: &[&str],
    stdout: Stdout,
    ready: &str,
    run_for: Duration,
    sig: i32,
    deadline: Duration,
) -> Ended {
    let dir = TempDir::new();
    let k = dir.write("hostile.elf", kernel);
    let mut argv: Vec<&OsStr> = vec![OsStr::new("run"), OsStr::new("--kernel"), k.as_os_str()];
    argv.extend(args.iter().map(OsStr::new));
    let mut vm = Running::spawn(&argv, Stdio::null(), stdout);
    vm.wait_for_stdout(ready, Duration::from_secs(20));
    thread::sleep(run_for);
    vm.signal(sig);
    vm.wait_exit(deadline, &format!("signal {sig}"))
}

fn assert_stopped_by(end: &Ended, sig: i32) {
    assert!(!end.stderr.contains("panicked"), "{end}");
    assert_eq!(
        end.code(),
        Some(128 + sig),
        "exit status 128 + {sig}\n{end}"
    );
}

fn rng_flood(ap_notifies: bool, args: &[&str], sig: i32, deadline: Duration) {
    let mut all = vec!["--rng", "--cpus", "2", "--memory", "64M"];
    all.extend_from_slice(args);
    let end = flood_then_signal(
        &rng_flood_guest(ap_notifies),
        &all,
        Stdout::Read,
        "\n",
        Duration::from_millis(500),
        sig,
        deadline,
    );
    assert_stopped_by(&end, sig);
    let field = |key: &str| {
        end.stdout
            .split(key)
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| u32::from_str_radix(v, 16).ok())
            .unwrap_or_else(|| panic!("no `{key}<hex>` in the guest output\n{end}"))
    };
    let used = field("flooding used=");
    assert!(
        used >= WARMUP_REQUESTS,
        "the device served only {used} requests before the flood: the guest's queue \
         does not work, so this test proves nothing\n{end}"
    );
    assert_ne!(field("ap="), 0, "the AP never started feeding\n{end}");
    assert!(end.stderr_total < STDERR_LIMIT, "stderr flooded\n{end}");
}

#[test]
fn rng_queue_fed_by_a_second_vcpu_sigterm_timeout_0() {
    polyvisor_tests::require_kvm!();
    rng_flood(false, &["--shutdown-timeout", "0"], SIGTERM, STOP_DEADLINE);
}

#[test]
fn rng_queue_fed_by_a_second_vcpu_sigterm_default_timeout() {
    polyvisor_tests::require_kvm!();
    rng_flood(false, &[], SIGTERM, DEFAULT_SHUTDOWN + STOP_DEADLINE);
}

#[test]
fn rng_queue_fed_by_a_second_vcpu_sigint() {
    polyvisor_tests::require_kvm!();
    rng_flood(false, &[], SIGINT, STOP_DEADLINE);
}

#[test]
fn rng_queue_fed_and_notified_by_both_vcpus_sigterm_timeout_0() {
    polyvisor_tests::require_kvm!();
    rng_flood(true, &["--shutdown-timeout", "0"], SIGTERM, STOP_DEADLINE);
}

#[test]
fn rng_queue_fed_and_notified_by_both_vcpus_sigint() {
    polyvisor_tests::require_kvm!();
    rng_flood(true, &[], SIGINT, STOP_DEADLINE);
}

/// What a garbage-feeding guest gets wrong, as fast as it can.
#[derive(Clone, Copy)]
enum Garbage {
    /// Every request's buffer is outside guest RAM (the device warns per request).
    BufferOutsideRam,
    /// `avail.idx` claims far more requests than the queue holds (virtio-queue's own
    /// error, per notification).
    AvailIdxTooFar,
}

/// One vCPU: sets up the queue, prints `flooding`, then offers garbage and notifies,
/// forever.
fn rng_garbage_guest(kind: Garbage) -> Vec<u8> {
    let mut a = pvh_asm();
    a.cli();
    let buf = match kind {
        Garbage::BufferOutsideRam => 0xf000_0000, // 64M of RAM: far outside
        Garbage::AvailIdxTooFar => BUF,
    };
    rng_setup(&mut a, buf);
    reg(&mut a, AVAIL, 0);
    print(&mut a, "flooding\n");
    let top = a.here_label();
    match kind {
        Garbage::BufferOutsideRam => {
            a.movzx_load16(Reg::Eax, Mem::Abs(USED + 2)); // eax = used.idx
            a.add_imm(Reg::Eax, QSIZE);
            a.shl_imm(Reg::Eax, 16);
            a.mov_store(Mem::Abs(AVAIL), Reg::Eax); // avail.idx = used.idx + QSIZE
        }
        Garbage::AvailIdxTooFar => {
            a.mov_load(Reg::Eax, Mem::Abs(AVAIL));
            a.add_imm(Reg::Eax, 0x1000 << 16); // avail.idx += 4096 (> QSIZE)
            a.mov_store(Mem::Abs(AVAIL), Reg::Eax);
        }
    }
    reg(&mut a, QUEUE_NOTIFY, 0);
    a.jmp(top);
    pvh_kernel(a.finish())
}

fn rng_garbage(kind: Garbage) -> Ended {
    let end = flood_then_signal(
        &rng_garbage_guest(kind),
        &["--rng", "--memory", "64M", "--shutdown-timeout", "0"],
        Stdout::Read,
        "flooding\n",
        FLOOD,
        SIGTERM,
        STOP_DEADLINE,
    );
    assert_stopped_by(&end, SIGTERM);
    assert!(
        end.stderr_total < STDERR_LIMIT,
        "{} bytes on stderr after {FLOOD:?} of bad virtio-rng requests: guest-triggered \
         warnings must be rate-limited\n{end}",
        end.stderr_total
    );
    end
}

#[test]
fn rng_requests_with_buffers_outside_ram_warn_boundedly() {
    polyvisor_tests::require_kvm!();
    let end = rng_garbage(Garbage::BufferOutsideRam);
    assert!(
        end.stderr.contains("virtio-rng"),
        "the bad requests were not noticed at all\n{end}"
    );
}

#[test]
fn rng_avail_index_beyond_the_queue_warns_boundedly() {
    polyvisor_tests::require_kvm!();
    rng_garbage(Garbage::AvailIdxTooFar);
}

// ------------------------------------------------------------------ boot-timer flood

/// The x86_64 boot timer's MMIO byte and its "init reached" value.
const BOOT_TIMER: u32 = 0xc000_0000;
const INIT_REACHED: u8 = 123;

/// Reads the boot timer's dword (all ones when unclaimed), prints `bt=<hex>` and
/// `flooding`, then writes 123 to it forever.
fn boot_timer_flood_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "bt=");
    a.mov_load(Reg::Edi, Mem::Abs(BOOT_TIMER));
    print_hex32(&mut a, Reg::Edi);
    print(&mut a, "\nflooding\n");
    let top = a.here_label();
    a.mov_mem_imm8(Mem::Abs(BOOT_TIMER), INIT_REACHED); // mov byte [timer], 123
    a.jmp_short(top);
    pvh_kernel(a.finish())
}

/// Resident memory of process `pid` in KiB (VmRSS from /proc).
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The boot-timer flood for [`FLOOD`], then SIGTERM (`--shutdown-timeout 0`). Returns
/// how it ended and how much polyvisor's resident memory grew during the flood (the
/// guest touches no new memory meanwhile, so this is the VMM's own).
fn boot_timer_flood(flag: bool) -> (Ended, i64) {
    let dir = TempDir::new();
    let k = dir.write("hostile.elf", &boot_timer_flood_guest());
    let mut argv: Vec<&OsStr> = ["run", "--shutdown-timeout", "0", "--kernel"]
        .map(OsStr::new)
        .to_vec();
    argv.push(k.as_os_str());
    if flag {
        argv.push(OsStr::new("--boot-timer"));
    }
    let mut vm = Running::spawn(&argv, Stdio::null(), Stdout::Read);
    vm.wait_for_stdout("flooding\n", Duration::from_secs(20));
    thread::sleep(Duration::from_millis(200));
    let rss_before = rss_kib(vm.pid());
    thread::sleep(FLOOD);
    let growth = rss_kib(vm.pid()) as i64 - rss_before as i64;
    vm.signal(SIGTERM);
    let end = vm.wait_exit(STOP_DEADLINE, "SIGTERM");
    assert_ne!(end.code(), Some(2), "--boot-timer refused?\n{end}");
    assert_stopped_by(&end, SIGTERM);
    assert!(
        end.stderr_total < STDERR_LIMIT,
        "{} bytes on stderr after {FLOOD:?} of boot-timer writes: guest-triggered log \
         lines must be rate-limited\n{end}",
        end.stderr_total
    );
    (end, growth)
}

fn boot_timer_lines(end: &Ended) -> usize {
    end.stderr
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("boot timer"))
        .count()
}

#[test]
fn boot_timer_flood_with_the_flag_logs_init_once_and_stores_nothing() {
    polyvisor_tests::require_kvm!();
    let (end, growth) = boot_timer_flood(true);
    assert_eq!(
        boot_timer_lines(&end),
        1,
        "the boot timer logs the first `init reached` (123) only\n{end}"
    );
    assert!(
        growth < 2048,
        "polyvisor's resident memory grew by {growth} KiB during {FLOOD:?} of boot-timer \
         writes: the timer must store nothing\n{end}"
    );
}

#[test]
fn boot_timer_flood_without_the_flag_hits_unclaimed_mmio() {
    polyvisor_tests::require_kvm!();
    let (end, _) = boot_timer_flood(false);
    assert!(
        end.stdout.contains("bt=ffffffff"),
        "without --boot-timer its address is unclaimed MMIO (reads all ones)\n{end}"
    );
    assert_eq!(
        boot_timer_lines(&end),
        0,
        "no boot timer without the flag\n{end}"
    );
}

// ------------------------------------------------------------------ UART flood

/// Prints `flooding`, then writes to COM1 forever.
fn uart_flood_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    print(&mut a, "flooding\n");
    a.mov_dx(COM1);
    a.mov_al(b'x');
    let top = a.here_label();
    a.out_dx_al(); // out dx, al
    a.jmp_short(top);
    pvh_kernel(a.finish())
}

fn uart_flood(args: &[&str], sig: i32, deadline: Duration) {
    let end = flood_then_signal(
        &uart_flood_guest(),
        args,
        Stdout::Unread,
        "flooding\n",
        FLOOD,
        sig,
        deadline,
    );
    assert_stopped_by(&end, sig);
    assert!(end.stderr_total < STDERR_LIMIT, "stderr flooded\n{end}");
    assert!(
        end.stderr.contains("dropped"),
        "guest output that could not be written is dropped and counted: expected a line \
         saying how much was dropped\n{end}"
    );
}

#[test]
fn uart_flood_into_an_unread_pipe_sigterm_timeout_0() {
    polyvisor_tests::require_kvm!();
    uart_flood(&["--shutdown-timeout", "0"], SIGTERM, STOP_DEADLINE);
}

#[test]
fn uart_flood_into_an_unread_pipe_sigterm_default_timeout() {
    polyvisor_tests::require_kvm!();
    uart_flood(&[], SIGTERM, DEFAULT_SHUTDOWN + STOP_DEADLINE);
}

#[test]
fn uart_flood_into_an_unread_pipe_sigint() {
    polyvisor_tests::require_kvm!();
    uart_flood(&[], SIGINT, STOP_DEADLINE);
}

#[test]
fn uart_flood_into_an_unread_pipe_sighup() {
    polyvisor_tests::require_kvm!();
    uart_flood(&[], SIGHUP, STOP_DEADLINE);
}

#[test]
fn uart_flood_into_an_unread_pipe_sigquit() {
    polyvisor_tests::require_kvm!();
    uart_flood(&[], SIGQUIT, STOP_DEADLINE);
}

#[test]
fn uart_flood_into_a_console_file_stops_at_its_max_size() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let log = dir.path().join("console.log");
    let console = format!("file={},max-size=4K", log.display());
    let end = flood_then_signal(
        &uart_flood_guest(),
        &["--console", &console, "--shutdown-timeout", "0"],
        Stdout::Read,
        "",
        FLOOD,
        SIGTERM,
        STOP_DEADLINE,
    );
    assert_stopped_by(&end, SIGTERM);
    assert!(end.stderr_total < STDERR_LIMIT, "stderr flooded\n{end}");
    let written = std::fs::read(&log).unwrap_or_default();
    assert!(
        written.starts_with(b"flooding\n"),
        "the console file holds {} bytes, not starting with the guest's first line\n{end}",
        written.len()
    );
    assert!(
        written.len() <= 4096,
        "the console file grew to {} bytes past max-size=4K\n{end}",
        written.len()
    );
}

#[test]
fn uart_flood_into_a_closed_pipe_warns_boundedly() {
    polyvisor_tests::require_kvm!();
    // The reader goes away: every write fails (EPIPE). Warnings must stay bounded.
    let dir = TempDir::new();
    let k = dir.write("hostile.elf", &uart_flood_guest());
    let argv = [
        OsStr::new("run"),
        OsStr::new("--kernel"),
        k.as_os_str(),
        OsStr::new("--shutdown-timeout"),
        OsStr::new("0"),
    ];
    let mut vm = Running::spawn(&argv, Stdio::null(), Stdout::Unread);
    vm.wait_for_stdout("flooding\n", Duration::from_secs(20));
    vm.close_stdout();
    thread::sleep(FLOOD);
    vm.signal(SIGTERM);
    let end = vm.wait_exit(STOP_DEADLINE, "SIGTERM");
    assert_stopped_by(&end, SIGTERM);
    assert!(
        end.stderr_total < STDERR_LIMIT,
        "{} bytes on stderr after {FLOOD:?} of output into a closed pipe\n{end}",
        end.stderr_total
    );
}

// ------------------------------------------------------------------ rep ins

const COM1_LSR: u16 = COM1 + 5;
/// Where the guest keeps what it read.
const SINGLES: u32 = SCRATCH;
const REP_BYTES: u32 = SCRATCH + 4;
const WORD: u32 = SCRATCH + 8;
const REP_WORDS: u32 = SCRATCH + 12;

/// Reads the UART's line status register four times with `in al, dx`, then four times
/// with `rep insb`; a word with `in ax, dx`, then two with `rep insw`; prints all four
/// dwords (the `rep` targets start as 0xaaaaaaaa, so an element not written shows).
fn rep_ins_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    a.cld();
    reg(&mut a, REP_BYTES, 0xaaaa_aaaa);
    reg(&mut a, REP_WORDS, 0xaaaa_aaaa);
    a.mov_dx(COM1_LSR);
    for i in 0..4 {
        a.in_al_dx(); // in al, dx
        a.mov_store8(Mem::Abs(SINGLES + i), Reg::Eax); // singles[i] = al
    }
    a.mov_imm(Reg::Edi, REP_BYTES);
    a.mov_imm(Reg::Ecx, 4);
    a.rep_insb(); // rep insb: 4 reads of port 0x3fd
    a.xor_rr(Reg::Eax, Reg::Eax);
    a.in_ax_dx(); // in ax, dx (settles any read side effects)
    a.in_ax_dx(); // in ax, dx
    a.mov_store(Mem::Abs(WORD), Reg::Eax); // word = ax (upper half 0)
    a.mov_imm(Reg::Edi, REP_WORDS);
    a.mov_imm(Reg::Ecx, 2);
    a.rep_insw(); // rep insw: 2 word reads of port 0x3fd
    for (name, addr) in [
        ("singles=", SINGLES),
        (" rep_insb=", REP_BYTES),
        (" word=", WORD),
        (" rep_insw=", REP_WORDS),
    ] {
        print(&mut a, name);
        a.mov_load(Reg::Edi, Mem::Abs(addr));
        print_hex32(&mut a, Reg::Edi);
    }
    print(&mut a, "\n");
    reset_i8042(&mut a);
    halt_forever(&mut a);
    pvh_kernel(a.finish())
}

#[test]
fn rep_insb_and_rep_insw_read_each_element_separately() {
    polyvisor_tests::require_kvm!();
    let out = run_kernel(&rep_ins_guest(), &[]);
    out.assert_guest_reset();
    let singles = out.hex_field("singles=");
    let rep_insb = out.hex_field("rep_insb=");
    let word = out.hex_field("word=");
    let rep_insw = out.hex_field("rep_insw=");
    println!(
        "singles={singles:08x} rep_insb={rep_insb:08x} word={word:08x} rep_insw={rep_insw:08x}"
    );
    assert_eq!(
        singles & 0x60,
        0x60,
        "the LSR says the transmitter is empty\n{out}"
    );
    assert_eq!(
        rep_insb, singles,
        "`rep insb` count 4 must be four 1-byte reads, as four `in al, dx`\n{out}"
    );
    assert_eq!(
        rep_insw,
        (word & 0xffff) * 0x1_0001,
        "`rep insw` count 2 must be two 2-byte reads, as `in ax, dx`\n{out}"
    );
}

/// `rep outsb` of "rep-outsb\n" to COM1: each byte its own write, so all of them show.
#[test]
fn rep_outsb_writes_each_byte_separately() {
    polyvisor_tests::require_kvm!();
    let text = b"rep-outsb\n";
    let mut a = pvh_asm();
    let data = a.label();
    a.cld();
    a.mov_label(Reg::Esi, data);
    a.mov_imm(Reg::Ecx, text.len() as u32);
    a.mov_dx(COM1);
    a.rep_outsb(); // rep outsb
    reset_i8042(&mut a);
    a.bind(data);
    a.bytes(text);
    let out = run_kernel(&pvh_kernel(a.finish()), &[]);
    out.assert_guest_reset();
    assert_eq!(out.stdout, "rep-outsb\n", "{out}");
}
