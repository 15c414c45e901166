// SPDX-License-Identifier: Apache-2.0
//! Streams through the queues, served pass by pass on the test's thread: many megabytes
//! each way, in order, within credit, and how fast (MiB/s on stderr: the number to
//! compare before and after a change of the data path, with `--release`).

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
