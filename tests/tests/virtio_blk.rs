// SPDX-License-Identifier: Apache-2.0
//! virtio-blk driven by hand from a tiny PVH guest: the guest finds the disk `--disk` adds
//! (virtio-mmio slot 0 at 0xd000_0000), negotiates, sets up a split queue and sends
//! requests, polling the used ring (bounded) rather than taking interrupts:
//!
//! - phase 1: read sector 1;
//! - phase 2: write what it read to sector 10, write its own pattern to sector 20, flush,
//!   discard sectors 30..38, read sector 64 (past the end of the 64-sector image), a looping
//!   chain, a read into a buffer outside guest RAM, GET_ID, and a last good read of
//!   sector 2 to show the device went on.
//!
//! The test then checks the guest's report (status bytes, used lengths, the data it read)
//! and the host file (the sectors written, the hole, everything else unchanged), and that
//! polyvisor ended cleanly. The same guest against a `readonly=on` disk gets I/O errors for
//! every write and the file is untouched.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

use polyvisor_tests::guest::{
    print, print_hex32, pvh_asm, pvh_kernel, reset_i8042, SCRATCH_STACK_TOP,
};
use polyvisor_tests::virtio_mmio::{
    set_up_queue0, DEVICE_FEATURES, DEVICE_FEATURES_SEL, DEVICE_ID, DRIVER_FEATURES,
    DRIVER_FEATURES_SEL, MAGIC, MMIO, QUEUE_NOTIFY, STATUS,
};
use polyvisor_tests::{Asm, Cond, Mem, Polyvisor, Reg, RunOutput, TempDir};

/// The guest's queue, requests and buffers, in guest-free memory (0x30000..0x9efff).
const QSIZE: u32 = 32;
const DESC: u32 = 0x3_0000;
const AVAIL: u32 = 0x3_0200;
const USED: u32 = 0x3_1000;
const HDR: u32 = 0x3_2000;
const STAT: u32 = 0x3_2800;
const SEG: u32 = 0x3_2900;
const IDBUF: u32 = 0x3_2a00;
const BUF0: u32 = 0x3_3000;
const BUF1: u32 = 0x3_4000;
const BUF2: u32 = 0x3_5000;
const BUF3: u32 = 0x3_6000;
/// Past the guest's 512 MiB of RAM (and below nothing the VMM maps as RAM).
const OUTSIDE_RAM: u64 = 0x10_0000_0000;
/// The config space's `capacity` (low half).
const CONFIG_CAPACITY: u32 = MMIO + 0x100;

const F_NEXT: u32 = 1;
const F_WRITE: u32 = 2;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_DISCARD: u32 = 11;
/// Feature bits offered in the low word.
const FLUSH: u32 = 1 << 9;
const DISCARD: u32 = 1 << 13;
const WRITE_ZEROES: u32 = 1 << 14;
const RO: u32 = 1 << 5;

const SECTORS: usize = 64;
const SERIAL: &str = "pv-blk-serial";
/// Polls of the used ring (each with a port read that exits to the VMM: some seconds).
const POLLS: u32 = 200_000;

fn reg(a: &mut Asm, addr: u32, value: u32) {
    a.mov_mem_imm32(Mem::Abs(addr), value);
}

/// Prints `name=<hex of the dword at addr> `. Clobbers eax, ecx, edx, edi.
fn show(a: &mut Asm, name: &str, addr: u32) {
    print(a, name);
    a.mov_load(Reg::Edi, Mem::Abs(addr));
    print_hex32(a, Reg::Edi);
    print(a, " ");
}

fn desc(a: &mut Asm, i: u32, addr: u64, len: u32, flags: u32, next: u32) {
    let at = DESC + 16 * i;
    reg(a, at, addr as u32);
    reg(a, at + 4, (addr >> 32) as u32);
    reg(a, at + 8, len);
    reg(a, at + 12, flags | (next << 16));
}

/// Request header `n` (at HDR + 16n): type and sector.
fn header(a: &mut Asm, n: u32, kind: u32, sector: u32) -> u64 {
    let at = HDR + 16 * n;
    reg(a, at, kind);
    reg(a, at + 4, 0);
    reg(a, at + 8, sector);
    reg(a, at + 12, 0);
    u64::from(at)
}

/// A three-descriptor request from index `first`: header `n`, one data buffer, status byte
/// STAT + n.
fn request(a: &mut Asm, first: u32, n: u32, kind: u32, sector: u32, data: (u64, u32, u32)) {
    let hdr = header(a, n, kind, sector);
    desc(a, first, hdr, 16, F_NEXT, first + 1);
    desc(a, first + 1, data.0, data.1, data.2 | F_NEXT, first + 2);
    desc(a, first + 2, u64::from(STAT + n), 1, F_WRITE, 0);
}

/// Make `ring[from..]` available (`ring` holds every head offered so far, by slot), then
/// publish the new index and notify.
fn offer(a: &mut Asm, ring: &[u32], from: usize) {
    // Ring entries are u16: write whole dwords, from the pair that holds slot `from`.
    for pair in (from / 2)..ring.len().div_ceil(2) {
        let lo = ring[2 * pair];
        let hi = ring.get(2 * pair + 1).copied().unwrap_or(0);
        reg(a, AVAIL + 4 + 4 * pair as u32, lo | (hi << 16));
    }
    reg(a, AVAIL, (ring.len() as u32) << 16); // flags 0, idx
    reg(a, QUEUE_NOTIFY, 0);
}

/// Wait (bounded) until the used index is `n`.
fn wait_used(a: &mut Asm, n: u32) {
    a.mov_imm(Reg::Ecx, POLLS);
    a.mov_dx(0x80);
    let again = a.here_label();
    let done = a.label();
    a.movzx_load16(Reg::Eax, Mem::Abs(USED + 2));
    a.cmp_imm(Reg::Eax, n);
    a.j(Cond::E, done);
    a.in_al_dx(); // an exit to the VMM: time for the device's worker
    a.loop_to(again);
    a.bind(done);
}

/// Negotiate (VERSION_1, and FLUSH and DISCARD where offered) and set up queue 0; with
/// `report`, print the features, status and capacity on the way.
fn setup(a: &mut Asm, report: bool) {
    let show = |a: &mut Asm, name: &str, addr: u32| {
        if report {
            show(a, name, addr);
        }
    };
    reg(a, STATUS, 0);
    reg(a, STATUS, 1);
    reg(a, STATUS, 3);
    reg(a, DEVICE_FEATURES_SEL, 0);
    show(a, "features_lo=", DEVICE_FEATURES);
    reg(a, DEVICE_FEATURES_SEL, 1);
    show(a, "features_hi=", DEVICE_FEATURES);
    reg(a, DRIVER_FEATURES_SEL, 1);
    reg(a, DRIVER_FEATURES, 1); // VERSION_1
                                // FLUSH and DISCARD, where offered (a read-only disk offers no DISCARD).
    reg(a, DEVICE_FEATURES_SEL, 0);
    a.mov_load(Reg::Eax, Mem::Abs(DEVICE_FEATURES));
    a.and_imm(Reg::Eax, FLUSH | DISCARD);
    reg(a, DRIVER_FEATURES_SEL, 0);
    a.mov_store(Mem::Abs(DRIVER_FEATURES), Reg::Eax);
    reg(a, STATUS, 0xb);
    show(a, "status=", STATUS);
    show(a, "capacity=", CONFIG_CAPACITY);
    set_up_queue0(a, QSIZE, DESC, AVAIL, USED);
    reg(a, STATUS, 0xf);
    show(a, "status=", STATUS);
}

fn blk_driver_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    a.cli();
    a.mov_imm(Reg::Esp, SCRATCH_STACK_TOP);
    show(&mut a, "magic=", MAGIC);
    show(&mut a, "device=", DEVICE_ID);
    setup(&mut a, true);
    for at in [STAT, STAT + 4, STAT + 8] {
        reg(&mut a, at, 0xeeee_eeee);
    }

    // Phase 1: read sector 1.
    request(&mut a, 0, 0, T_IN, 1, (BUF0.into(), 512, F_WRITE));
    offer(&mut a, &[0], 0);
    wait_used(&mut a, 1);

    // Phase 2.
    request(&mut a, 3, 1, T_OUT, 10, (BUF0.into(), 512, 0));
    reg(&mut a, BUF1, 0x1122_3344);
    reg(&mut a, BUF1 + 256, 0x5566_7788);
    reg(&mut a, BUF1 + 508, 0xdead_beef);
    request(&mut a, 6, 2, T_OUT, 20, (BUF1.into(), 512, 0));
    let hdr = header(&mut a, 3, T_FLUSH, 0);
    desc(&mut a, 9, hdr, 16, F_NEXT, 10);
    desc(&mut a, 10, u64::from(STAT + 3), 1, F_WRITE, 0);
    reg(&mut a, SEG, 30); // sector 30
    reg(&mut a, SEG + 4, 0);
    reg(&mut a, SEG + 8, 8); // 8 sectors
    reg(&mut a, SEG + 12, 0); // flags
    let hdr = header(&mut a, 4, T_DISCARD, 0);
    desc(&mut a, 11, hdr, 16, F_NEXT, 12);
    desc(&mut a, 12, SEG.into(), 16, F_NEXT, 13);
    desc(&mut a, 13, u64::from(STAT + 4), 1, F_WRITE, 0);
    request(
        &mut a,
        14,
        5,
        T_IN,
        SECTORS as u32,
        (BUF2.into(), 512, F_WRITE),
    );
    let hdr = header(&mut a, 6, T_IN, 0);
    desc(&mut a, 17, hdr, 16, F_NEXT, 18);
    desc(&mut a, 18, BUF2.into(), 512, F_WRITE | F_NEXT, 17); // back to 17: a loop
    request(&mut a, 19, 7, T_IN, 0, (OUTSIDE_RAM, 512, F_WRITE));
    request(&mut a, 22, 8, T_GET_ID, 0, (IDBUF.into(), 20, F_WRITE));
    request(&mut a, 25, 9, T_IN, 2, (BUF3.into(), 512, F_WRITE));
    offer(&mut a, &[0, 3, 6, 9, 11, 14, 17, 19, 22, 25], 1);
    wait_used(&mut a, 10);

    show(&mut a, "used=", USED);
    for i in 0..10 {
        show(&mut a, &format!("head{i}="), USED + 4 + 8 * i);
        show(&mut a, &format!("len{i}="), USED + 8 + 8 * i);
    }
    show(&mut a, "stat0=", STAT);
    show(&mut a, "stat4=", STAT + 4);
    show(&mut a, "stat8=", STAT + 8);
    show(&mut a, "buf0=", BUF0);
    show(&mut a, "buf0_end=", BUF0 + 508);
    show(&mut a, "buf3=", BUF3);
    show(&mut a, "id0=", IDBUF);
    show(&mut a, "id1=", IDBUF + 4);
    show(&mut a, "id4=", IDBUF + 16);
    print(&mut a, "\n");
    reset_i8042(&mut a);
    pvh_kernel(a.finish())
}

/// Sector `s` of the image before the run: its own pattern; 30..38 are 0xff (to be
/// discarded).
fn original() -> Vec<u8> {
    let mut img = vec![0u8; SECTORS * 512];
    for (s, sector) in img.chunks_mut(512).enumerate() {
        for (i, b) in sector.iter_mut().enumerate() {
            *b = if (30..38).contains(&s) {
                0xff
            } else {
                (s as u8).wrapping_mul(31) ^ (i as u8).wrapping_mul(7) ^ (i >> 8) as u8
            };
        }
    }
    img
}

fn sector(img: &[u8], s: usize) -> &[u8] {
    &img[s * 512..(s + 1) * 512]
}

fn dword(img: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(img[at..at + 4].try_into().unwrap()))
}

fn run(readonly: bool, direct: bool) -> (RunOutput, Vec<u8>) {
    let dir = TempDir::new();
    let kernel = dir.write("blk.elf", &blk_driver_guest());
    let img = dir.write("disk.img", &original());
    let disk = format!(
        "path={},serial={SERIAL}{}",
        img.display(),
        if readonly { ",readonly=on" } else { "" }
    ) + if direct { ",direct=on" } else { "" };
    let out = Polyvisor::new()
        .arg("run")
        .arg("--kernel")
        .arg(&kernel)
        .args(["--disk", &disk])
        .run();
    let after = std::fs::read(&img).unwrap();
    (out, after)
}

/// What both runs share: discovery, the reads, the bad requests, GET_ID, a clean end.
fn check_common(out: &RunOutput, orig: &[u8]) {
    out.assert_guest_reset();
    assert_eq!(out.hex_field("magic="), 0x7472_6976, "{out}");
    assert_eq!(out.hex_field("device="), 2, "virtio-blk\n{out}");
    assert_eq!(out.hex_field("features_hi=") & 1, 1, "VERSION_1\n{out}");
    let lo = out.hex_field("features_lo=");
    assert_eq!(lo & (3 << 28), 3 << 28, "EVENT_IDX, INDIRECT_DESC\n{out}");
    assert_ne!(lo & FLUSH as u64, 0, "{out}");
    assert_eq!(lo & 0x46, 0x46, "SIZE_MAX, SEG_MAX, BLK_SIZE\n{out}");
    assert_eq!(out.hex_field("capacity="), SECTORS as u64, "{out}");
    assert!(
        out.stdout
            .contains("status=0000000b capacity=00000040 status=0000000f "),
        "FEATURES_OK, then DRIVER_OK\n{out}"
    );
    assert_eq!(out.hex_field("used=") >> 16, 10, "ten requests used\n{out}");
    // The data the guest read is the file's.
    assert_eq!(out.hex_field("buf0="), dword(orig, 512), "{out}");
    assert_eq!(out.hex_field("buf0_end="), dword(orig, 1020), "{out}");
    assert_eq!(out.hex_field("buf3="), dword(orig, 1024), "{out}");
    // Used lengths by head (requests kept in flight complete in any order): data
    // written to the guest plus the status byte; 0 for the loop.
    let mut used: Vec<(u64, u64)> = (0..10)
        .map(|i| {
            (
                out.hex_field(&format!("head{i}=")),
                out.hex_field(&format!("len{i}=")),
            )
        })
        .collect();
    assert_eq!(used[0], (0, 513), "phase 1's read\n{out}");
    used.sort_unstable();
    let heads = [0, 3, 6, 9, 11, 14, 17, 19, 22, 25];
    let lens = [513, 1, 1, 1, 1, 1, 0, 1, 21, 513];
    let want: Vec<(u64, u64)> = heads.into_iter().zip(lens).collect();
    assert_eq!(used, want, "(head, used length)\n{out}");
    // Bytes 8 and 9: GET_ID and the last read OK; 10 and 11 were never status bytes.
    assert_eq!(out.hex_field("stat8="), 0xeeee_0000, "{out}");
    let serial = format!("{SERIAL:\0<20}");
    let id = serial.as_bytes();
    assert_eq!(out.hex_field("id0="), dword(id, 0), "{out}");
    assert_eq!(out.hex_field("id1="), dword(id, 4), "{out}");
    assert_eq!(out.hex_field("id4="), dword(id, 16), "{out}");
}

#[test]
fn a_guest_reads_writes_flushes_and_discards_and_bad_requests_fail_alone() {
    polyvisor_tests::require_kvm!();
    for direct in [false, true] {
        guest_reads_writes_flushes_and_discards(direct);
    }
}

/// With `direct=on` the reads, writes and flush go through io_uring where the host has
/// it, several in flight.
fn guest_reads_writes_flushes_and_discards(direct: bool) {
    let orig = original();
    let (out, after) = run(false, direct);
    check_common(&out, &orig);
    let lo = out.hex_field("features_lo=");
    assert_eq!(
        lo & (DISCARD | WRITE_ZEROES) as u64,
        (DISCARD | WRITE_ZEROES) as u64
    );
    assert_eq!(lo & RO as u64, 0, "{out}");
    // Statuses, a byte per request: OK x4 | OK, IOERR (past the end), untouched (the loop
    // was dropped), IOERR (outside RAM).
    assert_eq!(out.hex_field("stat0="), 0, "{out}");
    assert_eq!(out.hex_field("stat4="), 0x01ee_0100, "{out}");
    // The host file: sector 10 is what the guest read from sector 1, sector 20 its own
    // pattern, 30..38 a hole; nothing else changed.
    assert_eq!(sector(&after, 10), sector(&orig, 1));
    let mut mine = vec![0u8; 512];
    mine[0..4].copy_from_slice(&0x1122_3344u32.to_le_bytes());
    mine[256..260].copy_from_slice(&0x5566_7788u32.to_le_bytes());
    mine[508..512].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    assert_eq!(sector(&after, 20), &mine[..]);
    assert!(
        after[30 * 512..38 * 512].iter().all(|&b| b == 0),
        "discarded"
    );
    for s in (0..SECTORS).filter(|s| ![10, 20].contains(s) && !(30..38).contains(s)) {
        assert_eq!(sector(&after, s), sector(&orig, s), "sector {s}");
    }
}

#[test]
fn a_read_only_disk_fails_every_write_and_keeps_its_file() {
    polyvisor_tests::require_kvm!();
    let orig = original();
    let (out, after) = run(true, true);
    check_common(&out, &orig);
    let lo = out.hex_field("features_lo=");
    assert_eq!(lo & RO as u64, RO as u64, "{out}");
    assert_eq!(lo & (DISCARD | WRITE_ZEROES) as u64, 0, "{out}");
    // Read OK, the two writes IOERR, flush OK | discard IOERR, IOERR, loop, IOERR.
    assert_eq!(out.hex_field("stat0="), 0x0001_0100, "{out}");
    assert_eq!(out.hex_field("stat4="), 0x01ee_0101, "{out}");
    assert!(after == orig, "the read-only image changed");
}

/// Each boot: read sector 0, add 1 to its first dword, write it back, flush, print
/// `boot=<count>`, reset.
fn counting_guest() -> Vec<u8> {
    let mut a = pvh_asm();
    a.cli();
    a.mov_imm(Reg::Esp, SCRATCH_STACK_TOP);
    setup(&mut a, false);
    request(&mut a, 0, 0, T_IN, 0, (BUF0.into(), 512, F_WRITE));
    offer(&mut a, &[0], 0);
    wait_used(&mut a, 1);
    a.lock_inc_mem32(Mem::Abs(BUF0));
    request(&mut a, 3, 1, T_OUT, 0, (BUF0.into(), 512, 0));
    let hdr = header(&mut a, 2, T_FLUSH, 0);
    desc(&mut a, 6, hdr, 16, F_NEXT, 7);
    desc(&mut a, 7, u64::from(STAT + 2), 1, F_WRITE, 0);
    offer(&mut a, &[0, 3, 6], 1);
    wait_used(&mut a, 3);
    show(&mut a, "boot=", BUF0);
    print(&mut a, "\n");
    reset_i8042(&mut a);
    pvh_kernel(a.finish())
}

#[test]
fn restarts_keep_the_image_locked_and_see_what_the_last_boot_wrote() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let kernel = dir.write("count.elf", &counting_guest());
    let img = dir.write("count.img", &[0u8; 4096]);
    let mut child = std::process::Command::new(polyvisor_tests::runner::polyvisor_bin())
        .args([
            "run",
            "--memory",
            "64M",
            "--on-reset",
            "restart",
            "--kernel",
        ])
        .arg(&kernel)
        .args(["--disk", &format!("path={}", img.display())])
        .env_remove("POLYVISOR_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting polyvisor");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut line = String::new();
    while seen.len() < 3 {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "polyvisor ended");
        if let Some(v) = line.trim().strip_prefix("boot=") {
            seen.push(u64::from_str_radix(v.trim(), 16).unwrap());
        }
        assert!(start.elapsed() < Duration::from_secs(60), "too slow");
    }
    // Every boot saw the previous one's write: 1, 2, 3.
    assert_eq!(seen, [1, 2, 3]);
    // Still locked between and across boots: a second polyvisor is refused.
    let other = polyvisor_tests::runner::run_kernel(
        &polyvisor_tests::guest::pvh_print_and_reset("x\n"),
        &["--disk", &format!("path={},readonly=on", img.display())],
    );
    other.assert_clean_error(&[2], &["--disk", "count.img", "locked"]);
    let _ = std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        // Generous, as in on_reset.rs: this host's KVM can be slow to tear VMs down.
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "SIGINT did not stop it"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
    let last = rest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("boot="))
        .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
        .next_back()
        .unwrap_or(3);
    let file = std::fs::read(&img).unwrap();
    let count = u64::from(u32::from_le_bytes(file[..4].try_into().unwrap()));
    // A boot stopped between its flush and its line leaves one more.
    assert!(
        count == last || count == last + 1,
        "file {count}, last boot {last}"
    );
}
