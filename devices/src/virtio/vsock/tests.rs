// SPDX-License-Identifier: Apache-2.0
//! virtio-vsock against a driver's queues in guest memory and real Unix sockets: the
//! Firecracker host protocol both ways, credit, shutdown, and hostile packets.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::tempdir::TempDir;

use super::backend::{Active, MAX_PACKETS_PER_PASS, MAX_PENDING_RSTS};
use super::conn::TX_BUF_SIZE;
use super::packet::{op, Header, HDR_LEN, MAX_PKT_LEN, SHUTDOWN_RCV, SHUTDOWN_SEND};
use super::*;
use crate::virtio::test_util::{CountingInterrupt, DriverRing, DESC_F_NEXT, DESC_F_WRITE};
use crate::virtio::worker::QueueHandler;

const CID: u64 = 42;
const RX_BUF: u32 = 4096;
const RING: u16 = 256;
/// Rx buffers: 64 of HDR_LEN + RX_BUF at 0x10_0000.
const RX_AREA: u64 = 0x10_0000;
const RX_SLOTS: u16 = 64;
/// Tx buffers: 128 of a header and up to 64 KiB at 0x20_0000, in a 16 MiB memory.
const TX_AREA: u64 = 0x20_0000;
const TX_SLOT: u64 = 0x1_0000 + 0x100;
const TX_SLOTS: u16 = 128;

fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap()
}

pub(super) struct Driver {
    pub mem: GuestMemory,
    rx: DriverRing,
    tx: DriverRing,
    pub irq: Arc<CountingInterrupt>,
    rx_offered: u16,
    rx_seen: u16,
    tx_offered: u16,
}

impl Driver {
    fn new() -> (Self, [Queue; 3]) {
        let mem = memory();
        let rx = DriverRing::new(&mem, 0x1_0000, RING);
        let tx = DriverRing::new(&mem, 0x4_0000, RING);
        let ev = DriverRing::new(&mem, 0x7_0000, RING);
        let queues = [
            rx.queue(QUEUE_SIZE),
            tx.queue(QUEUE_SIZE),
            ev.queue(QUEUE_SIZE),
        ];
        let d = Self {
            mem,
            rx,
            tx,
            irq: Arc::new(CountingInterrupt::default()),
            rx_offered: 0,
            rx_seen: 0,
            tx_offered: 0,
        };
        (d, queues)
    }

    /// Offer rx buffers until `n` are outstanding (at most [`RX_SLOTS`]).
    pub fn give_rx(&mut self, n: u16) {
        let n = n.min(RX_SLOTS);
        while self.rx_offered.wrapping_sub(self.rx.used_idx(&self.mem)) < n {
            let slot = self.rx_offered % RX_SLOTS;
            let addr = RX_AREA + u64::from(slot) * 0x1100;
            self.rx.set_desc(
                &self.mem,
                slot,
                addr,
                HDR_LEN as u32 + RX_BUF,
                DESC_F_WRITE,
                0,
            );
            self.rx.offer(&self.mem, slot);
            self.rx_offered = self.rx_offered.wrapping_add(1);
        }
    }

    /// Packets the device put in rx buffers since the last call.
    pub fn recv(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        let used = self.rx.used_idx(&self.mem);
        while self.rx_seen != used {
            let (id, len) = self.rx.used_elem(&self.mem, self.rx_seen % RING);
            let addr = RX_AREA + u64::from(id) * 0x1100;
            let mut raw = [0u8; HDR_LEN];
            self.mem.read_slice(&mut raw, GuestAddress(addr)).unwrap();
            let hdr = Header::from_bytes(&raw);
            assert_eq!(len as usize, HDR_LEN + hdr.len as usize, "{hdr:?}");
            let mut data = vec![0u8; hdr.len as usize];
            self.mem
                .read_slice(&mut data, GuestAddress(addr + HDR_LEN as u64))
                .unwrap();
            out.push((hdr, data));
            self.rx_seen = self.rx_seen.wrapping_add(1);
        }
        out
    }

    /// Put a packet in the tx queue (header and data in two descriptors).
    pub fn send(&mut self, hdr: &Header, data: &[u8]) {
        assert!(self.tx_offered.wrapping_sub(self.tx.used_idx(&self.mem)) < TX_SLOTS);
        let slot = self.tx_offered % TX_SLOTS;
        let addr = TX_AREA + u64::from(slot) * TX_SLOT;
        self.mem
            .write_slice(&hdr.to_bytes(), GuestAddress(addr))
            .unwrap();
        self.mem
            .write_slice(data, GuestAddress(addr + 0x100))
            .unwrap();
        let (a, b) = (2 * slot, 2 * slot + 1);
        self.tx
            .set_desc(&self.mem, a, addr, HDR_LEN as u32, DESC_F_NEXT, b);
        self.tx
            .set_desc(&self.mem, b, addr + 0x100, data.len() as u32, 0, 0);
        self.tx.offer(&self.mem, a);
        self.tx_offered = self.tx_offered.wrapping_add(1);
    }

    /// Offer a raw tx chain of one descriptor.
    fn send_raw(&mut self, addr: u64, len: u32, flags: u16) {
        let slot = 2 * (self.tx_offered % TX_SLOTS);
        self.tx.set_desc(&self.mem, slot, addr, len, flags, 0);
        self.tx.offer(&self.mem, slot);
        self.tx_offered = self.tx_offered.wrapping_add(1);
    }

    pub fn tx_used(&self) -> u16 {
        self.tx.used_idx(&self.mem)
    }
}

/// A guest packet on connection (guest port `gport`, host port `hport`).
pub(super) fn guest(op: u16, gport: u32, hport: u32) -> Header {
    Header {
        src_cid: CID,
        dst_cid: 2,
        src_port: gport,
        dst_port: hport,
        type_: packet::TYPE_STREAM,
        op,
        buf_alloc: 1 << 20,
        ..Header::default()
    }
}

struct Fixture {
    d: Driver,
    q: VsockQueues,
    path: PathBuf,
    dir: TempDir,
}

fn fixture() -> Fixture {
    let dir = TempDir::new_with_prefix("/tmp/pv-vsock-test").unwrap();
    let path = dir.as_path().join("v.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let (d, [rx, tx, ev]) = Driver::new();
    let q = VsockQueues::new(
        Active {
            mem: d.mem.clone(),
            interrupt: d.irq.clone(),
            rx,
            tx,
            _event: ev,
        },
        CID,
        Arc::new(listener),
        path.clone(),
        "vsock-test".into(),
    );
    Fixture { d, q, path, dir }
}

impl Fixture {
    /// Passes until the device says nothing is pending.
    fn serve(&mut self) {
        let mut passes = 0;
        while self.q.serve() {
            passes += 1;
            assert!(passes < 1000, "the device never ran dry");
        }
    }

    /// Serve until `what` holds (host sockets are asynchronous to the passes).
    fn serve_until(&mut self, mut what: impl FnMut(&mut Self) -> bool) {
        let start = Instant::now();
        loop {
            self.serve();
            if what(self) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn recv_one(&mut self) -> (Header, Vec<u8>) {
        let mut got = Vec::new();
        self.serve_until(|f| {
            got.extend(f.d.recv());
            !got.is_empty()
        });
        assert_eq!(got.len(), 1, "{got:?}");
        got.remove(0)
    }

    /// A host process connects with `CONNECT port`; the guest accepts. Returns the host's
    /// stream and the device's local port.
    fn host_connect(&mut self, port: u32) -> (UnixStream, u32) {
        let mut host = UnixStream::connect(&self.path).unwrap();
        writeln!(host, "CONNECT {port}").unwrap();
        self.d.give_rx(8);
        let (req, _) = self.recv_one();
        assert_eq!(req.op, op::REQUEST);
        assert_eq!((req.src_cid, req.dst_cid, req.dst_port), (2, CID, port));
        assert!(req.src_port >= 1 << 30);
        assert_eq!(req.buf_alloc, TX_BUF_SIZE);
        self.d.send(&guest(op::RESPONSE, port, req.src_port), &[]);
        self.serve();
        let mut line = [0u8; 64];
        let n = host.read(&mut line).unwrap();
        assert_eq!(
            std::str::from_utf8(&line[..n]).unwrap(),
            format!("OK {}\n", req.src_port)
        );
        (host, req.src_port)
    }
}

/// `len` bytes that differ from their neighbours and from another seed's.
pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

fn ops(packets: &[(Header, Vec<u8>)]) -> Vec<u16> {
    packets.iter().map(|(h, _)| h.op).collect()
}

#[test]
fn offers_three_queues_and_the_cid() {
    let f = fixture();
    let listener = Arc::new(UnixListener::bind(f.dir.as_path().join("d.sock")).unwrap());
    let dev = Vsock::new(0x1_2345_6789, listener, f.path.clone(), "v".into()).unwrap();
    assert_eq!(dev.device_type(), 19);
    assert_eq!(dev.queue_max_sizes(), &[256, 256, 256]);
    assert_eq!(dev.device_features(), features::VERSION_1);
    let mut cfg = [0xffu8; 12];
    dev.read_config(0, &mut cfg);
    assert_eq!(cfg, [0x89, 0x67, 0x45, 0x23, 1, 0, 0, 0, 0, 0, 0, 0]);
    let mut hi = [0u8; 4];
    dev.read_config(4, &mut hi);
    assert_eq!(hi, [1, 0, 0, 0]);
    assert_eq!(dev.queue_events().len(), 3);
}

#[test]
fn header_round_trips_little_endian() {
    let h = Header {
        src_cid: 0x0102_0304_0506_0708,
        dst_cid: 2,
        src_port: 0x1122_3344,
        dst_port: 5,
        len: 6,
        type_: 1,
        op: 5,
        flags: 3,
        buf_alloc: 0xaabb_ccdd,
        fwd_cnt: 9,
    };
    let b = h.to_bytes();
    assert_eq!(&b[..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(&b[16..20], &[0x44, 0x33, 0x22, 0x11]);
    assert_eq!(&b[28..32], &[1, 0, 5, 0]);
    assert_eq!(Header::from_bytes(&b), h);
}

#[test]
fn host_connects_and_data_flows_both_ways() {
    let mut f = fixture();
    let (mut host, local) = f.host_connect(1234);
    host.write_all(b"hello guest").unwrap();
    let (h, data) = f.recv_one();
    assert_eq!((h.op, h.src_port, h.dst_port), (op::RW, local, 1234));
    assert_eq!(data, b"hello guest");
    f.d.send(
        &Header {
            len: 10,
            ..guest(op::RW, 1234, local)
        },
        b"hello host",
    );
    f.serve();
    let mut buf = [0u8; 10];
    host.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello host");
    // The device announced the 10 bytes as forwarded.
    f.d.give_rx(8);
    let (h, _) = f.recv_one();
    assert_eq!((h.op, h.fwd_cnt), (op::CREDIT_UPDATE, 10));
    assert_eq!(f.q.connections(), 1);
    // The guest resets: the host sees the end.
    f.d.send(&guest(op::RST, 1234, local), &[]);
    f.serve();
    assert_eq!(f.q.connections(), 0);
    assert_eq!(host.read(&mut buf).unwrap(), 0);
}

#[test]
fn a_host_connection_the_guest_refuses_is_closed() {
    let mut f = fixture();
    let mut host = UnixStream::connect(&f.path).unwrap();
    host.write_all(b"CONNECT 99\n").unwrap();
    f.d.give_rx(4);
    let (req, _) = f.recv_one();
    f.d.send(&guest(op::RST, 99, req.src_port), &[]);
    f.serve();
    let mut buf = [0u8; 8];
    assert_eq!(host.read(&mut buf).unwrap(), 0);
    // Garbage instead of CONNECT: closed, no packet for the guest.
    let mut bad = UnixStream::connect(&f.path).unwrap();
    bad.write_all(b"HELLO 5\n").unwrap();
    f.serve_until(|_| {
        bad.set_nonblocking(true).unwrap();
        matches!(bad.read(&mut buf), Ok(0))
    });
    assert!(f.d.recv().is_empty());
    assert_eq!(f.q.connections(), 0);
}

#[test]
fn a_connect_the_guest_leaves_unanswered_times_out() {
    let mut f = fixture();
    let mut host = UnixStream::connect(&f.path).unwrap();
    host.write_all(b"CONNECT 4321\n").unwrap();
    f.d.give_rx(4);
    let (req, _) = f.recv_one();
    assert_eq!(req.op, op::REQUEST);
    std::thread::sleep(super::backend::CONNECT_TIMEOUT + Duration::from_millis(100));
    f.serve();
    assert_eq!(f.q.connections(), 0);
    let mut buf = [0u8; 8];
    assert_eq!(host.read(&mut buf).unwrap(), 0, "no OK, closed");
    assert_eq!(ops(&f.d.recv()), [op::RST]);
    // Each CONNECT has its own deadline.
    let mut quick = UnixStream::connect(&f.path).unwrap();
    quick.write_all(b"CONNECT 4322\n").unwrap();
    f.serve_until(|f| f.q.connections() == 1 || !f.d.recv().is_empty());
    std::thread::sleep(super::backend::CONNECT_TIMEOUT + Duration::from_millis(100));
    f.serve();
    assert_eq!(f.q.connections(), 0);
    assert_eq!(quick.read(&mut buf).unwrap(), 0);
}

#[test]
fn never_sends_the_guest_more_than_its_credit() {
    let mut f = fixture();
    let (mut host, local) = f.host_connect(7);
    // The guest has 100 bytes of buffer; the host sends 250.
    f.d.send(
        &Header {
            buf_alloc: 100,
            ..guest(op::CREDIT_UPDATE, 7, local)
        },
        &[],
    );
    let sent: Vec<u8> = (0..250u8).collect();
    host.write_all(&sent).unwrap();
    let mut got = Vec::new();
    f.serve_until(|f| {
        got.extend(f.d.recv());
        got.iter().map(|(h, _)| h.len).sum::<u32>() == 100
    });
    f.serve();
    got.extend(f.d.recv());
    let data: Vec<u8> = got
        .iter()
        .filter(|(h, _)| h.op == op::RW)
        .flat_map(|(_, d)| d.clone())
        .collect();
    assert_eq!(data, sent[..100]);
    // Out of credit, the device asks for more.
    assert_eq!(got.last().unwrap().0.op, op::CREDIT_REQUEST);
    // A lying guest (forwarded more than it got) gets nothing.
    f.d.send(
        &Header {
            buf_alloc: 100,
            fwd_cnt: 500,
            ..guest(op::CREDIT_UPDATE, 7, local)
        },
        &[],
    );
    f.serve();
    std::thread::sleep(Duration::from_millis(20));
    f.serve();
    assert!(f.d.recv().is_empty());
    // Read 100: the rest follows, in order, nothing lost.
    f.d.send(
        &Header {
            buf_alloc: 1000,
            fwd_cnt: 100,
            ..guest(op::CREDIT_UPDATE, 7, local)
        },
        &[],
    );
    let mut rest = Vec::new();
    f.serve_until(|f| {
        rest.extend(f.d.recv().into_iter().flat_map(|(_, d)| d));
        rest.len() == 150
    });
    assert_eq!(rest, sent[100..]);
}

#[test]
fn busy_connections_take_turns() {
    let mut f = fixture();
    let (mut a, pa) = f.host_connect(10);
    let (mut b, pb) = f.host_connect(11);
    a.write_all(&[1u8; 64 << 10]).unwrap();
    b.write_all(&[2u8; 64 << 10]).unwrap();
    f.serve();
    f.d.recv();
    // Eight buffers for two connections with plenty to send: four each, alternating.
    f.d.give_rx(8);
    f.q.serve();
    let got = f.d.recv();
    assert_eq!(got.len(), 8);
    let ports: Vec<u32> = got.iter().map(|(h, _)| h.src_port).collect();
    assert_eq!(ports.iter().filter(|p| **p == pa).count(), 4, "{ports:?}");
    assert_eq!(ports.iter().filter(|p| **p == pb).count(), 4, "{ports:?}");
    assert!(ports.windows(2).all(|w| w[0] != w[1]), "{ports:?}");
}

#[test]
fn guest_connects_to_a_host_port() {
    let mut f = fixture();
    let served = UnixListener::bind(port_path(&f.path, 5678)).unwrap();
    f.d.give_rx(8);
    f.d.send(&guest(op::REQUEST, 3000, 5678), &[]);
    let (h, _) = f.recv_one();
    assert_eq!(
        (h.op, h.src_cid, h.src_port, h.dst_cid, h.dst_port),
        (op::RESPONSE, 2, 5678, CID, 3000)
    );
    let (mut peer, _) = served.accept().unwrap();
    f.d.send(
        &Header {
            len: 4,
            ..guest(op::RW, 3000, 5678)
        },
        b"ping",
    );
    f.serve();
    let mut buf = [0u8; 4];
    peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    peer.write_all(b"pong").unwrap();
    let mut got = Vec::new();
    f.serve_until(|f| {
        got.extend(f.d.recv().into_iter().filter(|(h, _)| h.op == op::RW));
        !got.is_empty()
    });
    assert_eq!(got[0].1, b"pong");
    // Nobody listens on port 5679: RST.
    f.d.send(&guest(op::REQUEST, 3001, 5679), &[]);
    let (h, _) = f.recv_one();
    assert_eq!((h.op, h.dst_port, h.src_port), (op::RST, 3001, 5679));
}

#[test]
fn shutdown_half_closes_then_resets() {
    let mut f = fixture();
    let (mut host, local) = f.host_connect(80);
    host.write_all(b"last words").unwrap();
    host.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    f.serve_until(|f| {
        got.extend(f.d.recv());
        got.len() == 2
    });
    assert_eq!(ops(&got), [op::RW, op::SHUTDOWN]);
    assert_eq!(got[0].1, b"last words");
    assert_eq!(got[1].0.flags, SHUTDOWN_SEND);
    // The guest answers, then closes: the host gets everything, then the end; the guest
    // gets the RST that ends the connection.
    f.d.send(
        &Header {
            len: 5,
            ..guest(op::RW, 80, local)
        },
        b"reply",
    );
    f.d.send(
        &Header {
            flags: SHUTDOWN_RCV | SHUTDOWN_SEND,
            ..guest(op::SHUTDOWN, 80, local)
        },
        &[],
    );
    let mut got = Vec::new();
    f.serve_until(|f| {
        got.extend(f.d.recv());
        got.iter().any(|(h, _)| h.op == op::RST)
    });
    let mut reply = Vec::new();
    host.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"reply");
    assert_eq!(f.q.connections(), 0);
}

#[test]
fn hostile_packets_get_rst_or_are_dropped() {
    let mut f = fixture();
    f.d.give_rx(16);
    // Another CID: dropped without an answer.
    f.d.send(
        &Header {
            src_cid: 7,
            ..guest(op::REQUEST, 1, 2)
        },
        &[],
    );
    // To another CID, another type, an unknown connection: RST each.
    f.d.send(
        &Header {
            dst_cid: 9,
            ..guest(op::REQUEST, 1, 2)
        },
        &[],
    );
    f.d.send(
        &Header {
            type_: 2,
            ..guest(op::REQUEST, 1, 2)
        },
        &[],
    );
    f.d.send(
        &Header {
            len: 3,
            ..guest(op::RW, 1, 2)
        },
        b"abc",
    );
    // A RST for nothing: nothing.
    f.d.send(&guest(op::RST, 1, 2), &[]);
    f.serve();
    assert_eq!(f.d.tx_used(), 5);
    let got = f.d.recv();
    assert_eq!(ops(&got), [op::RST, op::RST, op::RST]);
    assert_eq!(got[1].0.type_, 2);
    // len past the maximum or past the chain, a device-writable or out-of-RAM chain, one
    // shorter than a header: dropped.
    f.d.send(
        &Header {
            len: MAX_PKT_LEN + 1,
            ..guest(op::RW, 1, 2)
        },
        &[],
    );
    f.d.send(
        &Header {
            len: 100,
            ..guest(op::RW, 1, 2)
        },
        b"short",
    );
    f.d.send_raw(0x8000, 64, DESC_F_WRITE);
    f.d.send_raw(1 << 40, 64, 0);
    f.d.send_raw(0x8000, 10, 0);
    f.serve();
    assert_eq!(f.d.tx_used(), 10);
    assert!(f.d.recv().is_empty());
    // The device goes on: an unknown op on a live connection resets it.
    let (mut host, local) = f.host_connect(5);
    f.d.send(&guest(99, 5, local), &[]);
    let (h, _) = f.recv_one();
    assert_eq!(h.op, op::RST);
    let mut buf = [0u8; 4];
    assert_eq!(host.read(&mut buf).unwrap(), 0);
}

#[test]
fn a_guest_sending_past_its_credit_is_reset() {
    let mut f = fixture();
    let (host, local) = f.host_connect(9);
    // The host does not read; the guest ignores the credit and sends until the host
    // socket's buffer and the device's 256 KiB are full.
    let chunk = vec![7u8; MAX_PKT_LEN as usize / 2];
    let mut sent = 0;
    while sent <= 16 << 20 && f.q.connections() == 1 {
        f.d.send(
            &Header {
                len: chunk.len() as u32,
                ..guest(op::RW, 9, local)
            },
            &chunk,
        );
        f.serve();
        sent += chunk.len();
    }
    assert_eq!(f.q.connections(), 0, "never reset after {sent} bytes");
    assert!(sent > TX_BUF_SIZE as usize);
    f.d.give_rx(64);
    f.serve();
    let got = f.d.recv();
    assert_eq!(got.last().unwrap().0.op, op::RST, "{got:?}");
    drop(host);
}

#[test]
fn a_flood_without_rx_buffers_stalls_only_the_guest() {
    let mut f = fixture();
    // 300 packets for no connection and no rx buffer: the device takes tx packets until
    // MAX_PENDING_RSTS answers wait.
    let mut sent = 0u16;
    for _ in 0..3 {
        for _ in 0..100 {
            f.d.send(&guest(op::RW, 1, u32::from(sent)), &[]);
            sent += 1;
        }
        f.serve();
    }
    assert_eq!(f.d.tx_used() as usize, MAX_PENDING_RSTS);
    // Rx buffers drain the answers and the rest of the queue is taken.
    let mut rsts = 0;
    f.serve_until(|f| {
        f.d.give_rx(64);
        rsts += f.d.recv().len();
        rsts == usize::from(sent)
    });
    assert_eq!(f.d.tx_used(), sent);
}

#[test]
fn a_pass_takes_at_most_64_packets() {
    let mut f = fixture();
    for i in 0..100 {
        f.d.send(&guest(op::RST, 1, i), &[]);
    }
    assert!(f.q.serve(), "work left after one pass");
    assert_eq!(usize::from(f.d.tx_used()), MAX_PACKETS_PER_PASS);
    assert!(!f.q.serve());
    assert_eq!(f.d.tx_used(), 100);
}

#[path = "tests_worker.rs"]
mod worker;

#[path = "tests_stream.rs"]
mod stream;
