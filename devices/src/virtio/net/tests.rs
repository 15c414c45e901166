// SPDX-License-Identifier: Apache-2.0
//! virtio-net against a driver's queues in guest memory and a fake tap (one end of a
//! datagram socket pair: one packet per message, like a tap; the test holds the other
//! end): good traffic both ways, and what a hostile driver can do.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::EventSet;

use super::handler::Active;
use super::socket_tap::socket_tap;
use super::*;
use crate::virtio::test_util::{self, CountingInterrupt, DriverRing, DESC_F_NEXT, DESC_F_WRITE};
use crate::virtio::worker::QueueHandler;

const RXQ: u64 = 0x1_0000;
const TXQ: u64 = 0x4_0000;
const BUFS: u64 = 0x8_0000;
const RING: u16 = 16;

struct Fixture {
    q: NetQueues,
    mem: GuestMemory,
    rx: DriverRing,
    tx: DriverRing,
    irq: Arc<CountingInterrupt>,
    host: UnixDatagram,
}

fn fixture(features: u64) -> Fixture {
    let mem = test_util::memory();
    let rx = DriverRing::new(&mem, RXQ, RING);
    let tx = DriverRing::new(&mem, TXQ, RING);
    let irq = Arc::new(CountingInterrupt::default());
    let (tap, host) = socket_tap().unwrap();
    let q = NetQueues::new(
        tap,
        features,
        Active {
            mem: mem.clone(),
            interrupt: irq.clone(),
            rx: rx.queue(QUEUE_SIZE),
            tx: tx.queue(QUEUE_SIZE),
        },
        "virtio-net test".into(),
    );
    Fixture {
        q,
        mem,
        rx,
        tx,
        irq,
        host,
    }
}

/// A packet: a header (flags DATA_VALID, gso none, the rest zero) and an Ethernet frame of
/// `frame` bytes with a recognisable pattern.
fn packet(frame: usize, seed: u8) -> Vec<u8> {
    let mut p = vec![0u8; HDR_LEN];
    p[0] = 2; // DATA_VALID, as a tap sets for a packet whose checksum it knows is good
    p.extend((0..frame).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)));
    p
}

impl Fixture {
    /// Offer a transmit chain of readable buffers holding `parts`, descriptors from
    /// `first`, data from `at`.
    fn send(&self, first: u16, at: u64, parts: &[&[u8]]) {
        let mut addr = at;
        for (i, part) in parts.iter().enumerate() {
            self.mem.write_slice(part, GuestAddress(addr)).unwrap();
            let last = i + 1 == parts.len();
            let idx = first + i as u16;
            let flags = if last { 0 } else { DESC_F_NEXT };
            self.tx
                .set_desc(&self.mem, idx, addr, part.len() as u32, flags, idx + 1);
            addr += (part.len() as u64 + 0xf) & !0xf;
        }
        self.tx.offer(&self.mem, first);
    }

    /// Offer a receive chain of one writable buffer of `len` bytes at `at`.
    fn post(&self, index: u16, at: u64, len: u32) {
        self.rx.set_desc(&self.mem, index, at, len, DESC_F_WRITE, 0);
        self.rx.offer(&self.mem, index);
    }

    fn host_recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; MAX_PACKET_LEN + 100];
        let n = self.host.recv(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    fn guest_bytes(&self, at: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }
}

#[test]
fn configuration_space_and_features() {
    let (tap, _host) = socket_tap().unwrap();
    let mut net = Net::new(tap.clone(), [2, 0, 0, 0, 0, 7], "n".into());
    assert_eq!(net.device_type(), device_type::NET);
    assert_eq!(net.queue_max_sizes(), &[QUEUE_SIZE, QUEUE_SIZE]);
    let mut c = [0xffu8; 12];
    net.read_config(0, &mut c);
    assert_eq!(c, [2, 0, 0, 0, 0, 7, 1, 0, 1, 0, 0, 0]);
    let mut c = [0xffu8; 2];
    net.read_config(6, &mut c);
    assert_eq!(u16::from_le_bytes(c), LINK_UP);
    net.read_config(u64::MAX, &mut c);
    assert_eq!(c, [0, 0]);
    net.write_config(0, &[9; 6]);
    net.read_config(0, &mut c);
    assert_eq!(c, [2, 0]);
    let offered = net.device_features();
    for f in [
        features::VERSION_1,
        features::RING_EVENT_IDX,
        net_features::MAC,
        net_features::STATUS,
        net_features::MRG_RXBUF,
        net_features::CSUM,
        net_features::GUEST_TSO6,
    ] {
        assert_ne!(offered & f, 0, "{f:#x}");
    }
    net.set_driver_features(u64::MAX);
    assert_eq!(net.driver_features(), offered);
    // Both queues' notifies wake the one worker.
    let events = net.queue_events();
    assert_eq!(events.len(), 2);
    assert!(Arc::ptr_eq(&events[0], &events[1]));
    net.reset();
    assert_eq!(net.driver_features(), 0);
    assert_eq!(*tap.offloads.lock().unwrap(), vec![0]);
}

#[test]
fn default_macs_are_stable_local_and_unicast() {
    let a = default_mac("tap0");
    assert_eq!(a, default_mac("tap0"));
    // One letter apart: every byte but the first's two low bits may differ; most do.
    let b = default_mac("tap1");
    assert!(
        a.iter().zip(&b).filter(|(x, y)| x != y).count() >= 4,
        "{a:02x?} {b:02x?}"
    );
    for name in ["tap0", "tap1", "x", "a-much-longer1"] {
        let m = default_mac(name);
        assert_eq!(m[0] & 0x03, 0x02, "{name}: {m:02x?}");
    }
}

#[test]
fn offloads_follow_what_the_driver_took() {
    use net_features::*;
    assert_eq!(tap_offloads(0), 0);
    assert_eq!(tap_offloads(GUEST_TSO4), 0, "TSO without checksums");
    assert_eq!(tap_offloads(GUEST_CSUM), tap::TUN_F_CSUM);
    assert_eq!(
        tap_offloads(GUEST_CSUM | GUEST_TSO4 | GUEST_TSO6 | CSUM),
        tap::TUN_F_CSUM | tap::TUN_F_TSO4 | tap::TUN_F_TSO6
    );
}

#[test]
fn transmit_gathers_each_chain_into_one_packet() {
    let mut f = fixture(net_features::CSUM);
    let p = packet(1000, 3);
    f.send(0, BUFS, &[&p[..HDR_LEN], &p[HDR_LEN..100], &p[100..]]);
    assert!(!f.q.serve());
    assert_eq!(f.host_recv().unwrap(), p);
    assert_eq!(f.tx.used_idx(&f.mem), 1);
    assert_eq!(f.tx.used_elem(&f.mem, 0), (0, 0));
    assert_eq!(f.irq.used(), 1);
    assert!(f.host_recv().is_none());
}

#[test]
fn hostile_transmit_chains_are_dropped_and_the_next_goes_out() {
    let mut f = fixture(0);
    let good = packet(60, 1);
    // A device-writable descriptor.
    f.tx.set_desc(&f.mem, 0, BUFS, 100, DESC_F_WRITE, 0);
    f.tx.offer(&f.mem, 0);
    // Truncated: a header and 13 bytes of frame.
    f.send(1, BUFS + 0x1000, &[&good[..HDR_LEN + 13]]);
    // Oversized: one byte more than the largest packet.
    f.tx.set_desc(&f.mem, 2, BUFS, (MAX_PACKET_LEN + 1) as u32, 0, 0);
    f.tx.offer(&f.mem, 2);
    // Outside guest memory (1 MiB).
    f.tx.set_desc(&f.mem, 3, 0xff000, 0x2000, 0, 0);
    f.tx.offer(&f.mem, 3);
    // Then a good one.
    f.send(4, BUFS + 0x2000, &[&good]);
    assert!(!f.q.serve());
    assert_eq!(f.host_recv().unwrap(), good);
    assert!(f.host_recv().is_none(), "only the good packet went out");
    assert_eq!(f.tx.used_idx(&f.mem), 5, "every chain was returned");
}

#[test]
fn transmit_passes_are_bounded() {
    let mut f = fixture(0);
    let p = packet(64, 9);
    f.mem.write_slice(&p, GuestAddress(BUFS)).unwrap();
    f.tx.set_desc(&f.mem, 0, BUFS, p.len() as u32, 0, 0);
    // 100 packets offered through a 16-entry ring: the same descriptor over and over.
    for _ in 0..100 {
        f.tx.offer(&f.mem, 0);
    }
    // 100 - 16 entries ahead of the ring: virtio-queue refuses the index as garbage...
    f.tx.set_avail_idx(&f.mem, 16);
    let (sent, more) = f.q.serve_tx();
    assert_eq!((sent, more), (16, false));
    // ...and with a legal index, a pass stops at MAX_PACKETS_PER_PASS.
    let mut f = fixture(0);
    f.mem.write_slice(&p, GuestAddress(BUFS)).unwrap();
    let big = DriverRing::new(&f.mem, TXQ, 128);
    big.set_desc(&f.mem, 0, BUFS, p.len() as u32, 0, 0);
    for _ in 0..100 {
        big.offer(&f.mem, 0);
    }
    f.q.active.tx = big.queue(QUEUE_SIZE);
    assert_eq!(f.q.serve_tx(), (MAX_PACKETS_PER_PASS, true));
    assert_eq!(f.q.serve_tx(), (100 - MAX_PACKETS_PER_PASS, false));
    let mut n = 0;
    while f.host_recv().is_some() {
        n += 1;
    }
    assert_eq!(n, 100);
}

#[test]
fn a_received_packet_lands_in_one_buffer_with_num_buffers_1() {
    let mut f = fixture(net_features::GUEST_CSUM);
    let p = packet(500, 5);
    f.host.send(&p).unwrap();
    f.post(0, BUFS, 2048);
    assert!(!f.q.serve());
    assert_eq!(f.rx.used_idx(&f.mem), 1);
    assert_eq!(f.rx.used_elem(&f.mem, 0), (0, p.len() as u32));
    let mut want = p.clone();
    want[NUM_BUFFERS_AT..NUM_BUFFERS_AT + 2].copy_from_slice(&1u16.to_le_bytes());
    assert_eq!(f.guest_bytes(BUFS, p.len()), want);
    assert_eq!(f.irq.used(), 1);
}

const NUM_BUFFERS_AT: usize = 10;

#[test]
fn packets_needing_offloads_the_driver_did_not_take_are_dropped() {
    let mut f = fixture(net_features::GUEST_CSUM | net_features::GUEST_TSO4);
    let mut tso6 = packet(100, 1);
    tso6[1] = 4; // GSO_TCPV6
    let mut udp = packet(100, 2);
    udp[1] = 3; // GSO_UDP: never offered
    let mut tso4 = packet(100, 3);
    tso4[1] = 1;
    for p in [&tso6, &udp, &tso4] {
        f.host.send(p).unwrap();
    }
    f.post(0, BUFS, 2048);
    f.post(1, BUFS + 0x1000, 2048);
    f.q.serve();
    assert_eq!(f.rx.used_idx(&f.mem), 1, "only the TCPv4 segment");
    assert_eq!(f.guest_bytes(BUFS + HDR_LEN as u64, 100), tso4[HDR_LEN..]);
    // Without GUEST_CSUM, a partial checksum cannot go to the driver.
    let mut f = fixture(0);
    let mut partial = packet(100, 4);
    partial[0] = 1; // NEEDS_CSUM
    f.host.send(&partial).unwrap();
    f.post(0, BUFS, 2048);
    f.q.serve();
    assert_eq!(f.rx.used_idx(&f.mem), 0);
}

#[test]
fn without_guest_csum_the_flags_are_cleared() {
    let mut f = fixture(0);
    let p = packet(100, 5);
    f.host.send(&p).unwrap();
    f.post(0, BUFS, 2048);
    f.q.serve();
    assert_eq!(f.guest_bytes(BUFS, 1), [0]);
}

#[test]
fn merged_buffers_carry_a_large_packet_in_order() {
    let mut f = fixture(net_features::MRG_RXBUF);
    let p = packet(4000, 11);
    f.host.send(&p).unwrap();
    // Three 1536-byte buffers; the packet needs all three.
    for i in 0..3u16 {
        f.post(i, BUFS + 0x1000 * u64::from(i), 1536);
    }
    f.q.serve();
    assert_eq!(f.rx.used_idx(&f.mem), 3);
    let lens: Vec<u32> = (0..3).map(|s| f.rx.used_elem(&f.mem, s).1).collect();
    assert_eq!(lens, [1536, 1536, (p.len() - 2 * 1536) as u32]);
    let mut got = Vec::new();
    for (i, len) in lens.iter().enumerate() {
        got.extend(f.guest_bytes(BUFS + 0x1000 * i as u64, *len as usize));
    }
    assert_eq!(
        &got[NUM_BUFFERS_AT..NUM_BUFFERS_AT + 2],
        &3u16.to_le_bytes()
    );
    assert_eq!(got[HDR_LEN..], p[HDR_LEN..]);
}

#[test]
fn no_receive_buffers_holds_the_packet_and_stops_reading_until_the_guest_posts() {
    let mut f = fixture(net_features::MRG_RXBUF);
    f.q.active.rx.set_event_idx(true);
    let packets: Vec<Vec<u8>> = (0..3).map(|i| packet(200 + i, i as u8)).collect();
    for p in &packets {
        f.host.send(p).unwrap();
    }
    assert!(!f.q.serve());
    assert!(f.q.rx.waiting_for_buffers());
    assert_eq!(f.q.tap_wanted(), EventSet::empty(), "not reading the tap");
    // The device asked to be told about the next buffer.
    assert_eq!(f.rx.avail_event(&f.mem), 0);
    // Serving again (another wake-up) changes nothing and reads nothing more.
    assert!(!f.q.serve());
    assert_eq!(f.rx.used_idx(&f.mem), 0);
    // The guest posts one buffer: one packet; then two more: the rest, in order.
    f.post(0, BUFS, 2048);
    f.q.serve();
    assert_eq!(f.rx.used_idx(&f.mem), 1);
    assert!(f.q.rx.waiting_for_buffers());
    f.post(1, BUFS + 0x1000, 2048);
    f.post(2, BUFS + 0x2000, 2048);
    f.q.serve();
    assert_eq!(f.rx.used_idx(&f.mem), 3);
    assert!(!f.q.rx.waiting_for_buffers());
    assert_eq!(f.q.tap_wanted(), EventSet::IN);
    for (i, p) in packets.iter().enumerate() {
        let got = f.guest_bytes(BUFS + 0x1000 * i as u64, p.len());
        assert_eq!(got[HDR_LEN..], p[HDR_LEN..], "packet {i}");
    }
}

#[test]
fn a_packet_too_big_for_a_plain_chain_is_dropped_and_the_chain_kept() {
    let mut f = fixture(0);
    let big = packet(3000, 1);
    let small = packet(100, 2);
    f.host.send(&big).unwrap();
    f.host.send(&small).unwrap();
    f.post(0, BUFS, 1526);
    f.q.serve();
    assert_eq!(f.rx.used_idx(&f.mem), 1);
    assert_eq!(f.rx.used_elem(&f.mem, 0), (0, small.len() as u32));
    assert_eq!(f.guest_bytes(BUFS + HDR_LEN as u64, 100), small[HDR_LEN..]);
}

#[test]
fn garbage_receive_chains_are_returned_empty_and_the_next_one_used() {
    let mut f = fixture(0);
    let p = packet(100, 4);
    f.host.send(&p).unwrap();
    // Device-readable, outside memory, zero room.
    f.rx.set_desc(&f.mem, 0, BUFS, 2048, 0, 0);
    f.rx.offer(&f.mem, 0);
    f.post(1, 0xff000, 0x2000);
    f.post(2, BUFS, 0);
    f.post(3, BUFS + 0x1000, 2048);
    f.q.serve();
    assert_eq!(f.rx.used_idx(&f.mem), 4);
    for slot in 0..3 {
        assert_eq!(f.rx.used_elem(&f.mem, slot).1, 0);
    }
    assert_eq!(f.rx.used_elem(&f.mem, 3), (3, p.len() as u32));
}

#[test]
fn short_packets_from_the_tap_are_dropped_and_a_flood_is_served_in_bounded_passes() {
    let mut f = fixture(0);
    f.host.send(&[0u8; 20]).unwrap();
    for i in 0..100u8 {
        f.host.send(&packet(60, i)).unwrap();
    }
    // A big ring, always full of buffers.
    let big = DriverRing::new(&f.mem, RXQ, 128);
    for i in 0..128u16 {
        big.set_desc(
            &f.mem,
            i,
            BUFS + 0x100 * u64::from(i),
            0x100,
            DESC_F_WRITE,
            0,
        );
        big.offer(&f.mem, i);
    }
    f.q.active.rx = big.queue(QUEUE_SIZE);
    let (n, more) = f.q.serve_rx();
    assert!(more);
    assert!(
        n < MAX_PACKETS_PER_PASS,
        "the short one counts against the pass"
    );
    let (m, more) = f.q.serve_rx();
    assert!(!more);
    assert_eq!(n + m, 100);
}

#[cfg_attr(
    feature = "fuzzing",
    ignore = "a worker thread's timing; the fuzzing feature serves inline"
)]
#[test]
fn the_worker_moves_packets_both_ways_and_stops() {
    let (tap, host) = socket_tap().unwrap();
    let mem = test_util::memory();
    let rx = DriverRing::new(&mem, RXQ, RING);
    let tx = DriverRing::new(&mem, TXQ, RING);
    let irq = Arc::new(CountingInterrupt::default());
    let mut net = Net::new(tap.clone(), default_mac("t"), "virtio-net test".into());
    net.set_driver_features(
        features::VERSION_1 | net_features::MRG_RXBUF | net_features::GUEST_CSUM,
    );
    net.activate(
        mem.clone(),
        irq.clone(),
        vec![rx.queue(QUEUE_SIZE), tx.queue(QUEUE_SIZE)],
    )
    .unwrap();
    assert_eq!(*tap.offloads.lock().unwrap(), vec![tap::TUN_F_CSUM]);
    // Host to guest: the tap's readability wakes the worker, which waits for a buffer.
    let p = packet(300, 8);
    host.send(&p).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    rx.set_desc(&mem, 0, BUFS, 2048, DESC_F_WRITE, 0);
    rx.offer(&mem, 0);
    net.queue_events()[RX as usize].write(1).unwrap(); // what the ioeventfd does
    rx.wait_used(&mem, 1);
    // Guest to host.
    let q = packet(400, 9);
    mem.write_slice(&q, GuestAddress(BUFS + 0x10000)).unwrap();
    tx.set_desc(&mem, 0, BUFS + 0x10000, q.len() as u32, 0, 0);
    tx.offer(&mem, 0);
    net.queue_notify(TX);
    tx.wait_used(&mem, 1);
    host.set_nonblocking(false).unwrap();
    let mut buf = vec![0u8; 1000];
    let n = host.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], &q[..]);
    net.reset();
}
