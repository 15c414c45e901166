// SPDX-License-Identifier: Apache-2.0
use super::*;

fn sccb(len: u16, function: u8) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    b[0..2].copy_from_slice(&len.to_be_bytes());
    b[2] = function;
    b
}

fn rc(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[6], b[7]])
}

#[test]
fn read_scp_info_bytes() {
    let mut s = Sclp::new(256 << 20, 2, SclpConsole::Vt220);
    let mut b = sccb(4096, 0);
    b[200] = 0xee; // beyond the answer: untouched
    s.execute(command::READ_SCP_INFO, &mut b, &mut Vec::new());
    let mut want = [0u8; 160];
    want[0..8].copy_from_slice(&[0x10, 0x00, 0, 0, 0, 0, 0x00, 0x10]);
    want[8..11].copy_from_slice(&[0x01, 0x00, 0x01]); // 256 increments of 1 MiB
    want[16..20].copy_from_slice(&[0x00, 0x02, 0x00, 0x80]); // 2 CPUs at 128
    want[48] = 0x08; // READ CPU INFO available
    want[100..104].copy_from_slice(&[0, 0, 0, 1]); // rnsize2
    want[104..112].copy_from_slice(&[0, 0, 0, 0, 0, 0, 1, 0]); // rnmax2
    want[120..122].copy_from_slice(&[0, 1]); // highest CPU address
    want[144] = 1; // second entry: CPU address 1
    assert_eq!(&b[..160], &want[..]);
    assert_eq!(b[200], 0xee);
}

#[test]
fn big_memory_uses_bigger_increments() {
    let s = Sclp::new(4 << 30, 1, SclpConsole::Vt220);
    assert_eq!(s.storage_increments(), (8, 512));
    let s = Sclp::new(1 << 40, 1, SclpConsole::Vt220);
    assert_eq!(s.storage_increments(), (2048, 512));
    let mut b = sccb(256, 0);
    let mut s = s;
    s.execute(command::READ_SCP_INFO_FORCED, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), response::NORMAL_READ_COMPLETION);
    assert_eq!(b[10], 0); // too big for rnsize: rnsize2 says it
    assert_eq!(&b[100..104], &[0, 0, 0x08, 0]);
}

#[test]
fn short_sccbs_get_insufficient_length() {
    let mut s = Sclp::new(64 << 20, 4, SclpConsole::Vt220);
    let mut b = sccb(128 + 3 * 16, 0);
    s.execute(command::READ_SCP_INFO, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), 0x0300);
    let mut b = sccb(8, 0);
    s.execute(command::WRITE_EVENT_MASK, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), 0x0300);
}

#[test]
fn read_cpu_info_bytes() {
    let mut s = Sclp::new(64 << 20, 2, SclpConsole::Vt220);
    let mut b = sccb(64, 0);
    s.execute(command::READ_CPU_INFO, &mut b, &mut Vec::new());
    let mut want = vec![0u8; 64];
    want[0..8].copy_from_slice(&[0, 64, 0, 0, 0, 0, 0x00, 0x10]);
    want[8..16].copy_from_slice(&[0, 2, 0, 16, 0, 0, 0, 48]);
    want[32] = 1;
    assert_eq!(b, want);
}

#[test]
fn write_event_mask_answers_with_the_sclp_masks_and_asks_for_length_4() {
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::Vt220);
    let mut b = sccb(28, 0);
    b[10..12].copy_from_slice(&[0, 4]);
    b[12..16].copy_from_slice(&[0x80, 0, 0, 0x40]); // guest receives op commands, VT220
    b[16..20].copy_from_slice(&[0x40, 0, 0, 0x40]); // guest sends messages, VT220
    s.execute(command::WRITE_EVENT_MASK, &mut b, &mut Vec::new());
    assert_eq!(
        b,
        [
            0, 28, 0, 0, 0, 0, 0x00, 0x20, 0, 0, 0, 4, 0x80, 0, 0, 0x40, 0x40, 0, 0, 0x40, 0, 0, 0,
            0x40, 0, 0, 0, 0x48
        ]
    );
    assert_eq!(s.guest_masks(), (0x8000_0040, 0x4000_0040));

    // Linux first tries a longer mask, then retries with 4 on 0x74f0.
    let mut b = sccb(8 + 4 + 4 * 32, 0);
    b[10..12].copy_from_slice(&[0, 32]);
    s.execute(command::WRITE_EVENT_MASK, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), 0x74f0);

    let mut s = Sclp::new(64 << 20, 1, SclpConsole::LineMode);
    let mut b = sccb(28, 0);
    b[10..12].copy_from_slice(&[0, 4]);
    s.execute(command::WRITE_EVENT_MASK, &mut b, &mut Vec::new());
    assert_eq!(&b[20..28], &[0x40, 0, 0, 0, 0x80, 0, 0, 0x08]);
}

fn vt220_event(text: &[u8]) -> Vec<u8> {
    let mut e = vec![0u8; 6];
    e[0..2].copy_from_slice(&((6 + text.len()) as u16).to_be_bytes());
    e[2] = event::VT220;
    e.extend_from_slice(text);
    e
}

#[test]
fn write_event_data_vt220_goes_to_the_sink() {
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::Vt220);
    let mut b = sccb(8, 0);
    b.extend(vt220_event(b"hello\n"));
    b.extend(vt220_event(b"world\n"));
    let len = b.len() as u16;
    b[0..2].copy_from_slice(&len.to_be_bytes());
    let mut out = Vec::new();
    s.execute(command::WRITE_EVENT_DATA, &mut b, &mut out);
    assert_eq!(out, b"hello\nworld\n");
    assert_eq!(rc(&b), 0x0020);
    assert_eq!(b[8 + 3], 0x80);
    assert_eq!(b[8 + 12 + 3], 0x80);
}

#[test]
fn write_event_data_line_mode_is_ebcdic_lines() {
    // MDB: header (12) + GO object (type 1, 8 bytes) + MTO "HI" (10 + 2).
    let mut mdb = vec![0u8; 12];
    mdb[2..4].copy_from_slice(&[0, 1]);
    mdb[4..8].copy_from_slice(&[0xd4, 0xc4, 0xc2, 0x40]); // "MDB "
    mdb[8..12].copy_from_slice(&[0, 0, 0, 1]);
    mdb.extend([0, 8, 0, 1, 0, 0, 0, 0]);
    mdb.extend([0, 12, 0, 4, 0x10, 0, 0, 0, 0, 0, 0xc8, 0xc9]);
    let mdb_len = mdb.len() as u16;
    mdb[0..2].copy_from_slice(&mdb_len.to_be_bytes());
    let mut b = sccb(8, 0);
    b.extend(((6 + mdb.len()) as u16).to_be_bytes());
    b.extend([event::MESSAGE, 0, 0, 0]);
    b.extend(&mdb);
    let len = b.len() as u16;
    b[0..2].copy_from_slice(&len.to_be_bytes());
    let mut out = Vec::new();
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::LineMode);
    s.execute(command::WRITE_EVENT_DATA, &mut b, &mut out);
    assert_eq!(out, b"HI\n");
    assert_eq!(rc(&b), 0x0020);
    assert_eq!(b[11], 0x80);
}

#[test]
fn bad_event_buffers_are_refused() {
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::Vt220);
    let mut out = Vec::new();
    // Buffer claims more than the SCCB holds.
    let mut b = sccb(8, 0);
    b.extend(vt220_event(b"abc"));
    b[8..10].copy_from_slice(&[0, 40]);
    let len = b.len() as u16;
    b[0..2].copy_from_slice(&len.to_be_bytes());
    s.execute(command::WRITE_EVENT_DATA, &mut b, &mut out);
    assert_eq!(rc(&b), 0x73f0);
    // Unknown event type.
    let mut b = sccb(8, 0);
    b.extend([0, 6, 0x55, 0, 0, 0]);
    b[0..2].copy_from_slice(&14u16.to_be_bytes());
    s.execute(command::WRITE_EVENT_DATA, &mut b, &mut out);
    assert_eq!(rc(&b), 0x40f0);
    assert_eq!(b[11], 0);
    // Non-zero function code.
    let mut b = sccb(8, 1);
    s.execute(command::WRITE_EVENT_DATA, &mut b, &mut out);
    assert_eq!(rc(&b), 0x40f0);
    assert!(out.is_empty());
    // Unknown command.
    let mut b = sccb(8, 0);
    s.execute(0x00ff_0001, &mut b, &mut out);
    assert_eq!(rc(&b), 0x01f0);
}

#[test]
fn read_event_data_without_input() {
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::Vt220);
    // Linux's unconditional read: function 0, variable-length response asked for.
    let mut b = sccb(4096, 0x00);
    b[5] = 0x80;
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(&b[..8], &[0x10, 0, 0x00, 0, 0, 0x80, 0x60, 0xf0]);
    // Selective read (function 1): the mask at 8.
    let mut b = sccb(16, 0x01);
    b[8..12].copy_from_slice(&0x40u32.to_be_bytes());
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), 0x60f0);
    b[8..12].copy_from_slice(&0x4000_0000u32.to_be_bytes());
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), 0x70f0);
    let mut b = sccb(16, 0x80);
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(
        rc(&b),
        0x40f0,
        "0x80 is the control-mask bit, not a function code"
    );
}

#[test]
fn service_call_through_guest_memory() {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let mut s = Sclp::new(1 << 20, 1, SclpConsole::Vt220);
    let mut b = sccb(8, 0);
    b.extend(vt220_event(b"ok\n"));
    b[0..2].copy_from_slice(&17u16.to_be_bytes());
    mem.write_slice(&b, GuestAddress(0x2000)).unwrap();
    let mut out = Vec::new();
    let parm = s
        .service_call(&mem, command::WRITE_EVENT_DATA, 0x2000, &mut out)
        .unwrap();
    assert_eq!(parm, 0x2000);
    assert_eq!(out, b"ok\n");
    let mut h = [0u8; 12];
    mem.read_slice(&mut h, GuestAddress(0x2000)).unwrap();
    assert_eq!(h, [0, 17, 0, 0, 0, 0, 0, 0x20, 0, 9, 0x1a, 0x80]);

    // Misaligned, above 2 GiB, outside memory, too short, crossing a page.
    let e = |s: &mut Sclp, a| s.service_call(&mem, command::READ_SCP_INFO, a, &mut Vec::new());
    assert_eq!(e(&mut s, 0x2004), Err(ServiceError::Specification));
    assert_eq!(e(&mut s, 0x8000_0000), Err(ServiceError::Specification));
    assert_eq!(e(&mut s, 0x10_0000), Err(ServiceError::Addressing));
    mem.write_slice(&[0, 4], GuestAddress(0x3000)).unwrap();
    assert_eq!(e(&mut s, 0x3000), Err(ServiceError::Specification));
    assert_eq!(ServiceError::Addressing.program_code(), 5);
    mem.write_slice(&[0x10, 0], GuestAddress(0x3ff8)).unwrap();
    assert_eq!(e(&mut s, 0x3ff8), Ok(0x3ff8));
    let mut h = [0u8; 8];
    mem.read_slice(&mut h, GuestAddress(0x3ff8)).unwrap();
    assert_eq!(h, [0x10, 0, 0, 0, 0, 0, 0x01, 0x00]);
}

#[test]
fn signal_quiesce_reaches_a_guest_that_asked_for_it() {
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::Vt220);
    assert!(
        !s.request_quiesce(),
        "the guest has not registered for it yet"
    );
    assert!(!s.event_pending());
    // WRITE EVENT MASK: the guest receives VT220 and signal quiesce, sends VT220.
    let mut b = sccb(28, 0);
    b[10..12].copy_from_slice(&4u16.to_be_bytes());
    let quiesce = 1u32 << (32 - 0x1d);
    b[12..16].copy_from_slice(&(0x40 | quiesce).to_be_bytes());
    b[16..20].copy_from_slice(&0x40u32.to_be_bytes());
    s.execute(command::WRITE_EVENT_MASK, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), 0x0020);
    assert!(
        s.event_pending(),
        "queued before the guest registered, still there"
    );
    assert!(s.request_quiesce());

    // A selective read for VT220 only does not take it.
    let mut b = sccb(4096, 0x01);
    b[8..12].copy_from_slice(&0x40u32.to_be_bytes());
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), 0x60f0);
    assert!(s.event_pending());

    // Too small an SCCB for the event.
    let mut b = sccb(12, 0x00);
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), 0x0300);

    let mut b = sccb(4096, 0x00);
    b[5] = 0x80; // variable-length response, as Linux asks
    b[100] = 0xee;
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(
        &b[..17],
        &[0, 17, 0x00, 0, 0, 0, 0x00, 0x20, 0, 9, 0x1d, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(b[100], 0xee, "nothing written past the event");
    assert!(!s.event_pending(), "delivered once");
    let mut b = sccb(4096, 0x00);
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), 0x60f0);
}

#[test]
fn service_signal_parameter_flags_a_pending_event() {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let mut s = Sclp::new(1 << 20, 1, SclpConsole::Vt220);
    let mut b = sccb(28, 0);
    b[10..12].copy_from_slice(&4u16.to_be_bytes());
    b[12..16].copy_from_slice(&(1u32 << (32 - 0x1d)).to_be_bytes());
    mem.write_slice(&b, GuestAddress(0x2000)).unwrap();
    let parm = s
        .service_call(&mem, command::WRITE_EVENT_MASK, 0x2000, &mut Vec::new())
        .unwrap();
    assert_eq!(parm, 0x2000);
    s.request_quiesce();
    mem.write_slice(&b, GuestAddress(0x2000)).unwrap();
    let parm = s
        .service_call(&mem, command::WRITE_EVENT_MASK, 0x2000, &mut Vec::new())
        .unwrap();
    assert_eq!(parm, 0x2001, "event pending");
}

/// WRITE EVENT MASK with the given cp-receive mask (cp-send: VT220).
fn register(s: &mut Sclp, receive: u32) {
    let mut b = sccb(28, 0);
    b[10..12].copy_from_slice(&4u16.to_be_bytes());
    b[12..16].copy_from_slice(&receive.to_be_bytes());
    b[16..20].copy_from_slice(&0x40u32.to_be_bytes());
    s.execute(command::WRITE_EVENT_MASK, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), 0x0020);
}

#[test]
fn console_input_becomes_vt220_events() {
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::Vt220);
    assert_eq!(s.queue_input(b"ls\n"), 3);
    assert!(
        !s.event_pending(),
        "the guest has not registered for VT220 input yet"
    );
    register(&mut s, 0x40);
    assert!(s.event_pending(), "input that came early waits for it");

    let mut b = sccb(4096, 0x00);
    b[5] = 0x80;
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    // Header (length 18), then the event: length 10, type 0x1a, flags, reserved, session
    // data marker 0, then the bytes.
    assert_eq!(
        &b[..18],
        &[0, 18, 0, 0, 0, 0, 0x00, 0x20, 0, 10, 0x1a, 0, 0, 0, 0x00, b'l', b's', b'\n']
    );
    assert!(!s.event_pending());

    // A small SCCB takes what fits; the rest waits for the next read.
    s.queue_input(b"abcdef");
    let mut b = sccb(8 + 7 + 4, 0x00);
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(&b[14..19], &[0x00, b'a', b'b', b'c', b'd']);
    assert!(s.event_pending());
    let mut b = sccb(8 + 7, 0x00);
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(rc(&b), 0x0300, "no room for a single byte");
    let mut b = sccb(64, 0x00);
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(&b[14..17], &[0x00, b'e', b'f']);
    assert_eq!(u16::from_be_bytes([b[0], b[1]]), 17);
}

#[test]
fn quiesce_and_input_share_one_read() {
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::Vt220);
    register(&mut s, 0x40 | (1 << (32 - 0x1d)));
    s.queue_input(b"x");
    assert!(s.request_quiesce());
    let mut b = sccb(4096, 0x00);
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert_eq!(u16::from_be_bytes([b[0], b[1]]), 8 + 9 + 8);
    assert_eq!(&b[8..11], &[0, 9, 0x1d]);
    assert_eq!(&b[17..25], &[0, 8, 0x1a, 0, 0, 0, 0x00, b'x']);
    assert!(!s.event_pending());
}

#[test]
fn input_is_bounded_and_line_mode_takes_none() {
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::Vt220);
    assert_eq!(s.queue_input(&[b'a'; 5000]), INPUT_MAX);
    assert_eq!(s.queue_input(b"more"), 0, "full: the VMM's input waits");
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::LineMode);
    assert_eq!(s.queue_input(b"ls\n"), 0);
}

#[test]
fn full_input_says_when_the_guest_has_read_some() {
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::Vt220);
    let ev = EventFd::new(EFD_NONBLOCK).unwrap();
    s.input_room().set_event(ev.try_clone().unwrap());
    register(&mut s, 0x40);
    assert_eq!(s.queue_input(&[b'a'; INPUT_MAX + 10]), INPUT_MAX);
    assert!(ev.read().is_err());
    let mut b = sccb(4096, 0x00);
    b[5] = 0x80;
    s.execute(command::READ_EVENT_DATA, &mut b, &mut Vec::new());
    assert!(ev.read().is_ok(), "the guest read events: room again");
    assert!(s.queue_input(b"0123456789") == 10);
}

/// A console sink that always fails.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_sink_is_counted_and_the_output_still_taken() {
    let mut s = Sclp::new(64 << 20, 1, SclpConsole::Vt220);
    for _ in 0..100 {
        let mut b = sccb(8, 0);
        b.extend(vt220_event(b"x"));
        let len = b.len() as u16;
        b[0..2].copy_from_slice(&len.to_be_bytes());
        s.execute(command::WRITE_EVENT_DATA, &mut b, &mut Broken);
        assert_eq!(rc(&b), 0x0020);
        assert_eq!(b[8 + 3], 0x80);
    }
    assert_eq!(s.output_errors.count(), 100);
}

#[test]
fn lock_within_gives_up_on_a_held_lock_in_bounded_time() {
    use std::sync::{mpsc, Arc};
    let m = Arc::new(Mutex::new(0u32));
    assert!(
        lock_within(&m, Duration::ZERO).is_some(),
        "free: taken at once"
    );
    let (held_tx, held_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let holder = {
        let m = m.clone();
        std::thread::spawn(move || {
            let _g = m.lock().unwrap();
            held_tx.send(()).unwrap();
            let _ = done_rx.recv();
        })
    };
    held_rx.recv().unwrap();
    let start = Instant::now();
    assert!(lock_within(&m, Duration::from_millis(50)).is_none());
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(50), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(lock_within(&m, Duration::from_secs(5)).is_some());
    // A lock poisoned by a panicking holder is still taken.
    let p = m.clone();
    let _ = std::thread::spawn(move || {
        let _g = p.lock().unwrap();
        panic!("poison");
    })
    .join();
    assert!(m.is_poisoned());
    assert!(lock_within(&m, Duration::ZERO).is_some());
}
