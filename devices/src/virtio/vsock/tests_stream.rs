// SPDX-License-Identifier: Apache-2.0
//! Streams through the queues, served pass by pass on the test's thread: many megabytes
//! each way, in order, within credit, and how fast (MiB/s on stderr: the number to
//! compare before and after a change of the data path, with `--release`).

use super::super::conn::{Conn, State, RX_STAGE};
use super::*;

/// What a Linux guest announces as its receive buffer (`SO_VM_SOCKETS_BUFFER_SIZE`).
const GUEST_BUF_ALLOC: u32 = 256 << 10;
/// Bytes each way.
const STREAM_LEN: usize = 16 << 20;

fn mib_per_s(len: usize, t: Duration) -> f64 {
    len as f64 / (1 << 20) as f64 / t.as_secs_f64()
}

/// A device pass, timed into `busy`.
fn timed_pass(f: &mut Fixture, busy: &mut Duration) {
    let t = Instant::now();
    f.q.serve();
    *busy += t.elapsed();
}

/// A host process writes `len` bytes 64 KiB at a time (as `cross/vsock-io.c`) and shuts
/// its side down; the guest keeps its 64 rx buffers offered and announces what it read
/// every 64 KiB. Returns what the guest got, the rate and the rate of the device's passes
/// alone (bytes over the time spent in them).
fn host_to_guest(f: &mut Fixture, data: &[u8]) -> (Vec<u8>, f64, f64) {
    let (host, local) = f.host_connect(77);
    let credit = |fwd_cnt: usize| Header {
        buf_alloc: GUEST_BUF_ALLOC,
        fwd_cnt: fwd_cnt as u32,
        ..guest(op::CREDIT_UPDATE, 77, local)
    };
    f.d.send(&credit(0), &[]);
    let writer = {
        let data = data.to_vec();
        let mut host = host;
        std::thread::spawn(move || {
            for chunk in data.chunks(64 << 10) {
                host.write_all(chunk).unwrap();
            }
            host.shutdown(std::net::Shutdown::Write).unwrap();
            host
        })
    };
    let (t0, mut busy) = (Instant::now(), Duration::ZERO);
    let (mut got, mut announced, mut eof) = (Vec::with_capacity(data.len()), 0, false);
    while !eof {
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out");
        f.d.give_rx(RX_SLOTS);
        timed_pass(f, &mut busy);
        let packets = f.d.recv();
        if packets.is_empty() {
            // Let the host's writer run (2 cores for all of it).
            std::thread::yield_now();
        }
        let mut asked = false;
        for (h, bytes) in packets {
            assert_eq!((h.src_port, h.dst_port), (local, 77));
            match h.op {
                op::RW => {
                    assert!(!eof, "data after the SHUTDOWN");
                    let unread = got.len() - announced;
                    assert!(
                        bytes.len() <= GUEST_BUF_ALLOC as usize - unread,
                        "past credit"
                    );
                    got.extend(bytes);
                }
                op::SHUTDOWN => eof = true,
                op::CREDIT_REQUEST => asked = true,
                op::CREDIT_UPDATE => {}
                other => panic!("op {other}"),
            }
        }
        if got.len() - announced >= 64 << 10 || (asked && got.len() != announced) {
            announced = got.len();
            f.d.send(&credit(announced), &[]);
        }
    }
    let rates = (
        mib_per_s(got.len(), t0.elapsed()),
        mib_per_s(got.len(), busy),
    );
    drop(writer.join().unwrap());
    (got, rates.0, rates.1)
}

/// The guest connects to host port 5678 and sends `data` in 64 KiB packets within the
/// device's credit; a host thread reads it all. Returns what the host got and the rates
/// (as [`host_to_guest`]).
fn guest_to_host(f: &mut Fixture, data: &[u8]) -> (Vec<u8>, f64, f64) {
    let served = UnixListener::bind(port_path(&f.path, 5678)).unwrap();
    f.d.give_rx(8);
    f.d.send(&guest(op::REQUEST, 3000, 5678), &[]);
    let (h, _) = f.recv_one();
    assert_eq!(h.op, op::RESPONSE);
    let (mut peer, _) = served.accept().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        got
    });
    let (t0, mut busy) = (Instant::now(), Duration::ZERO);
    let (mut sent, mut dev_buf, mut dev_fwd) = (0usize, h.buf_alloc, h.fwd_cnt);
    while dev_fwd as usize != data.len() {
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out");
        loop {
            let credit = dev_buf as usize - (sent - dev_fwd as usize);
            let free = f.d.tx_offered.wrapping_sub(f.d.tx_used()) < TX_SLOTS;
            let n = credit.min(data.len() - sent).min(MAX_PKT_LEN as usize);
            if n == 0 || !free {
                break;
            }
            let rw = Header {
                len: n as u32,
                ..guest(op::RW, 3000, 5678)
            };
            f.d.send(&rw, &data[sent..sent + n]);
            sent += n;
        }
        f.d.give_rx(RX_SLOTS);
        timed_pass(f, &mut busy);
        let packets = f.d.recv();
        if packets.is_empty() {
            std::thread::yield_now();
        }
        for (h, _) in packets {
            assert_eq!(h.op, op::CREDIT_UPDATE);
            (dev_buf, dev_fwd) = (h.buf_alloc, h.fwd_cnt);
        }
    }
    let shut = Header {
        flags: SHUTDOWN_RCV | SHUTDOWN_SEND,
        ..guest(op::SHUTDOWN, 3000, 5678)
    };
    f.d.send(&shut, &[]);
    f.serve();
    let rates = (
        mib_per_s(data.len(), t0.elapsed()),
        mib_per_s(data.len(), busy),
    );
    let got = reader.join().unwrap();
    (got, rates.0, rates.1)
}

#[test]
fn sixteen_megabytes_host_to_guest_in_order_within_credit() {
    let mut f = fixture();
    let data = pattern(STREAM_LEN, 5);
    let (got, rate, passes) = host_to_guest(&mut f, &data);
    eprintln!("vsock host->guest: {rate:.0} MiB/s, {passes:.0} MiB/s of pass time");
    assert!(got == data, "guest data differs");
}

#[test]
fn sixteen_megabytes_guest_to_host_in_order() {
    let mut f = fixture();
    let data = pattern(STREAM_LEN, 9);
    let (got, rate, passes) = guest_to_host(&mut f, &data);
    eprintln!("vsock guest->host: {rate:.0} MiB/s, {passes:.0} MiB/s of pass time");
    assert!(got == data, "host data differs");
}

/// Have the rx buffers the handshake left filled (RSTs for packets to no connection).
fn use_up_rx(f: &mut Fixture) {
    let left = f.d.rx_offered.wrapping_sub(f.d.rx.used_idx(&f.d.mem));
    for port in 0..u32::from(left) {
        f.d.send(&guest(op::CREDIT_UPDATE, 1, 60_000 + port), &[]);
    }
    f.serve();
    assert_eq!(ops(&f.d.recv()), vec![op::RST; left.into()]);
}

/// Serve with one rx buffer at a time until `n` packets came.
fn one_buffer_at_a_time(f: &mut Fixture, n: usize) -> Vec<(Header, Vec<u8>)> {
    let mut got = Vec::new();
    f.serve_until(|f| {
        f.d.give_rx(1);
        got.extend(f.d.recv());
        got.len() >= n
    });
    got
}

fn payload(packets: &[(Header, Vec<u8>)]) -> Vec<u8> {
    packets
        .iter()
        .filter(|(h, _)| h.op == op::RW)
        .flat_map(|(_, d)| d.clone())
        .collect()
}

#[test]
fn staged_bytes_go_out_first_and_in_order_across_passes() {
    let mut f = fixture();
    let (mut host, _) = f.host_connect(21);
    let (first, second) = (pattern(10_000, 1), pattern(10_000, 2));
    host.write_all(&first).unwrap();
    // One read takes all 10 000 bytes; one rx buffer carries 4096 of them.
    use_up_rx(&mut f);
    let got = one_buffer_at_a_time(&mut f, 1);
    assert_eq!(ops(&got), [op::RW]);
    assert_eq!(f.q.staged(), 10_000 - RX_BUF as usize);
    // What the host sends meanwhile waits in its socket until the stage is empty.
    host.write_all(&second).unwrap();
    let rest = one_buffer_at_a_time(&mut f, 5);
    let lens: Vec<u32> = got.iter().chain(&rest).map(|(h, _)| h.len).collect();
    assert_eq!(lens, [4096, 4096, 1808, 4096, 4096, 1808]);
    let mut all = payload(&got);
    all.extend(payload(&rest));
    assert!(all == [first, second].concat(), "bytes reordered");
    assert_eq!(f.q.staged(), 0);
}

#[test]
fn a_connection_reads_no_more_than_the_guest_can_take() {
    let credit = |buf_alloc, fwd_cnt| Header {
        buf_alloc,
        fwd_cnt,
        ..Header::default()
    };
    let next = |c: &mut Conn| {
        let (h, data) = c.next_packet(CID, RX_BUF.into(), &mut None).unwrap()?;
        Some((h.op, data.to_vec()))
    };
    let in_socket = |c: &mut Conn| {
        let mut buf = vec![0u8; 256 << 10];
        match c.stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("{e}"),
        }
    };
    // 100 bytes of credit, 250 sent: 100 read and sent, 150 left in the socket.
    let (ours, mut host) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let mut c = Conn::new(ours, 1, State::Established, 1 << 30, 7);
    c.peer_credit_from(&credit(100, 0));
    let sent: Vec<u8> = (0..250u8).collect();
    host.write_all(&sent).unwrap();
    assert_eq!(next(&mut c), Some((op::RW, sent[..100].to_vec())));
    assert_eq!(c.staged(), 0);
    assert_eq!(next(&mut c), Some((op::CREDIT_REQUEST, vec![])));
    assert_eq!(next(&mut c), None);
    assert_eq!(in_socket(&mut c), 150);

    // Plenty of credit: one read of at most RX_STAGE bytes.
    let (ours, mut host) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let mut c = Conn::new(ours, 1, State::Established, 1 << 30, 7);
    c.peer_credit_from(&credit(1 << 20, 0));
    let sent = pattern(100 << 10, 3);
    host.write_all(&sent).unwrap();
    let (op_, first) = next(&mut c).unwrap();
    assert_eq!((op_, first.len()), (op::RW, 4096));
    assert_eq!(c.staged(), RX_STAGE - 4096);
    // The guest shrinks its buffer to 1000 bytes more: that much goes out, the rest of
    // the stage waits, nothing more is read.
    c.peer_credit_from(&credit(4096 + 1000, 0));
    assert_eq!(
        next(&mut c).map(|(o, d)| (o, d.len())),
        Some((op::RW, 1000))
    );
    assert_eq!(next(&mut c), Some((op::CREDIT_REQUEST, vec![])));
    assert_eq!(next(&mut c), None);
    assert_eq!(c.staged(), RX_STAGE - 5096);
    // Credit again: the stage, then the socket, in order, nothing lost.
    c.peer_credit_from(&credit(1 << 20, 5096));
    let mut got = first;
    got.extend(pattern(100 << 10, 3)[4096..5096].iter());
    while let Some((o, data)) = next(&mut c) {
        assert_eq!(o, op::RW);
        got.extend(data);
    }
    assert!(got == sent, "bytes lost or reordered");
    // Nothing more in the socket: the connection holds no stage, the spare has it.
    let mut spare = None;
    assert!(c.next_packet(CID, 4096, &mut spare).unwrap().is_none());
    assert!(spare.is_some() && !c.holds_stage());
}

/// A connection to guest port `port` whose host sent 10 000 bytes, 4096 of them in the
/// guest's one rx buffer, the rest staged. Returns the host's stream and the local port.
fn with_staged_bytes(f: &mut Fixture, port: u32) -> (UnixStream, u32) {
    let (mut host, local) = f.host_connect(port);
    host.write_all(&pattern(10_000, 4)).unwrap();
    use_up_rx(f);
    assert_eq!(ops(&one_buffer_at_a_time(f, 1)), [op::RW]);
    assert_eq!(f.q.staged(), 10_000 - RX_BUF as usize);
    (host, local)
}

#[test]
fn a_rst_drops_staged_bytes_and_closes_the_host_socket() {
    let mut f = fixture();
    let (mut host, local) = with_staged_bytes(&mut f, 22);
    f.d.send(&guest(op::RST, 22, local), &[]);
    f.d.give_rx(8);
    f.serve();
    assert_eq!((f.q.connections(), f.q.staged()), (0, 0));
    assert!(f.d.recv().is_empty(), "nothing after a RST");
    let mut buf = [0u8; 8];
    assert_eq!(host.read(&mut buf).unwrap(), 0);
}

#[test]
fn a_guest_that_receives_no_more_gets_no_staged_bytes_and_still_sends() {
    let mut f = fixture();
    let (mut host, local) = with_staged_bytes(&mut f, 23);
    let shut = Header {
        flags: SHUTDOWN_RCV,
        ..guest(op::SHUTDOWN, 23, local)
    };
    f.d.send(&shut, &[]);
    f.d.give_rx(8);
    f.serve();
    assert!(f.d.recv().is_empty(), "data after SHUTDOWN RCV");
    assert_eq!((f.q.connections(), f.q.staged()), (1, 0));
    let rw = Header {
        len: 4,
        ..guest(op::RW, 23, local)
    };
    f.d.send(&rw, b"more");
    f.serve();
    let mut buf = [0u8; 4];
    host.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"more");
}

#[test]
fn the_host_end_of_file_follows_the_staged_bytes() {
    let mut f = fixture();
    let (mut host, _) = f.host_connect(24);
    let sent = pattern(10_000, 6);
    host.write_all(&sent).unwrap();
    drop(host);
    use_up_rx(&mut f);
    let got = one_buffer_at_a_time(&mut f, 4);
    assert_eq!(ops(&got), [op::RW, op::RW, op::RW, op::SHUTDOWN]);
    assert_eq!(got[3].0.flags, SHUTDOWN_SEND);
    assert!(payload(&got) == sent, "bytes lost or reordered");
}
