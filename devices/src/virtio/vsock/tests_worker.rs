// SPDX-License-Identifier: Apache-2.0
//! The whole device on its worker thread: the worker wakes for the listening socket, the
//! connections and the queue kick, and 2 MiB cross each way under credit flow control.

use super::*;

/// Run the driver side until `done` holds, kicking the device after each change.
fn drive(d: &mut Driver, kick: &EventFd, mut step: impl FnMut(&mut Driver) -> bool) {
    let start = Instant::now();
    loop {
        if step(d) {
            return;
        }
        kick.write(1).unwrap();
        assert!(start.elapsed() < Duration::from_secs(30), "timed out");
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[cfg_attr(
    feature = "fuzzing",
    ignore = "a worker thread's timing; the fuzzing feature serves inline"
)]
#[test]
fn megabytes_both_ways_through_the_worker() {
    let dir = TempDir::new_with_prefix("/tmp/pv-vsock-worker").unwrap();
    let path = dir.as_path().join("v.sock");
    let listener = Arc::new(UnixListener::bind(&path).unwrap());
    let mut dev = Vsock::new(CID, listener, path.clone(), "vsock-worker".into()).unwrap();
    let (mut d, queues) = Driver::new();
    dev.activate(d.mem.clone(), d.irq.clone(), queues.into())
        .unwrap();
    let kick = dev.queue_events()[1].clone();

    const LEN: usize = 2 << 20;
    let to_guest = pattern(LEN, 1);
    let to_host = pattern(LEN, 7);
    let host = {
        let to_guest = to_guest.clone();
        let path = path.clone();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(b"CONNECT 1234\n").unwrap();
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while b[0] != b'\n' {
                s.read_exact(&mut b).unwrap();
                line.push(b[0]);
            }
            assert!(line.starts_with(b"OK "), "{line:?}");
            let mut r = s.try_clone().unwrap();
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                r.read_to_end(&mut got).unwrap();
                got
            });
            s.write_all(&to_guest).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            reader.join().unwrap()
        })
    };

    // The guest: accept the REQUEST, then read everything, announcing what it consumed,
    // and send its own data within the device's credit.
    let guest_buf = 64 << 10;
    let mut local = 0;
    drive(&mut d, &kick, |d| {
        d.give_rx(64);
        for (h, _) in d.recv() {
            assert_eq!(h.op, op::REQUEST);
            local = h.src_port;
        }
        local != 0
    });
    d.send(
        &Header {
            buf_alloc: guest_buf,
            ..guest(op::RESPONSE, 1234, local)
        },
        &[],
    );
    let t0 = Instant::now();
    let (mut got, mut sent, mut eof) = (Vec::new(), 0usize, false);
    let (mut dev_buf, mut dev_fwd) = (TX_BUF_SIZE, 0u32);
    let mut announced = 0usize;
    drive(&mut d, &kick, |d| {
        d.give_rx(64);
        for (h, data) in d.recv() {
            assert_eq!((h.src_port, h.dst_port), (local, 1234));
            dev_buf = h.buf_alloc;
            dev_fwd = h.fwd_cnt;
            match h.op {
                op::RW => {
                    assert!(data.len() <= guest_buf as usize - (got.len() - announced));
                    got.extend(data);
                }
                op::SHUTDOWN => eof = true,
                op::CREDIT_UPDATE | op::CREDIT_REQUEST => {}
                other => panic!("op {other}"),
            }
        }
        let free = d.tx_offered.wrapping_sub(d.tx_used()) < TX_SLOTS - 1;
        if free && (got.len() - announced >= 16 << 10 || (eof && got.len() != announced)) {
            announced = got.len();
            d.send(
                &Header {
                    buf_alloc: guest_buf,
                    fwd_cnt: announced as u32,
                    ..guest(op::CREDIT_UPDATE, 1234, local)
                },
                &[],
            );
        }
        let credit = dev_buf as usize - (sent - dev_fwd as usize);
        let free = d.tx_offered.wrapping_sub(d.tx_used()) < TX_SLOTS - 1;
        if sent < LEN && credit > 0 && free {
            let n = credit.min(LEN - sent).min(MAX_PKT_LEN as usize);
            d.send(
                &Header {
                    len: n as u32,
                    buf_alloc: guest_buf,
                    fwd_cnt: announced as u32,
                    ..guest(op::RW, 1234, local)
                },
                &to_host[sent..sent + n],
            );
            sent += n;
        }
        eof && sent == LEN && announced == got.len()
    });
    d.send(
        &Header {
            flags: SHUTDOWN_RCV | SHUTDOWN_SEND,
            ..guest(op::SHUTDOWN, 1234, local)
        },
        &[],
    );
    kick.write(1).unwrap();
    let host_got = host.join().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("vsock worker: {} MiB each way in {secs:.2} s", LEN >> 20);
    assert!(got == to_guest, "guest data differs");
    assert!(host_got == to_host, "host data differs");
    assert!(d.irq.used() > 0);
    dev.reset();
}
