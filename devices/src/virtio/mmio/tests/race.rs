// SPDX-License-Identifier: Apache-2.0
//! Several vCPUs racing one device: threads that share the transport as the bus does (one
//! mutex), writing registers in any order (resets, queue setup with addresses inside and
//! outside guest memory, notifies, feature and status garbage) while another thread
//! scribbles over the rings the device thread is reading. Nothing may panic or hang, the
//! transport must drop promptly, and afterwards a clean reset and bring-up must work.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use super::*;
use crate::virtio::block::{Block, BlockOptions, DiskImage, ImageOptions};
use crate::virtio::net::{Backend, Net};
use crate::virtio::test_util::DESC_F_NEXT;
use crate::virtio::Vsock;

const HAMMER: Duration = Duration::from_millis(1500);
const RING: u64 = 0x1_0000;
const DATA: u64 = 0x4_0000;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const REGS: [u64; 18] = [
    reg::DEVICE_FEATURES_SEL,
    reg::DRIVER_FEATURES,
    reg::DRIVER_FEATURES_SEL,
    reg::QUEUE_SEL,
    reg::QUEUE_NUM,
    reg::QUEUE_READY,
    reg::QUEUE_NOTIFY,
    reg::INTERRUPT_ACK,
    reg::STATUS,
    reg::QUEUE_DESC_LOW,
    reg::QUEUE_DESC_HIGH,
    reg::QUEUE_DRIVER_LOW,
    reg::QUEUE_DRIVER_HIGH,
    reg::QUEUE_DEVICE_LOW,
    reg::QUEUE_DEVICE_HIGH,
    reg::QUEUE_RESET,
    reg::SHM_SEL,
    reg::CONFIG,
];

/// One "vCPU": random register traffic, now and then a whole correct bring-up with a
/// burst of notifies, so the device thread is busy while the others reset it.
/// Returns how many of its bring-ups reached DRIVER_OK (the device thread was started).
fn vcpu(t: &Mutex<MmioTransport>, seed: u64, queues: u32) -> u32 {
    let mut r = XorShift(seed);
    let start = Instant::now();
    let mut activated = 0;
    while start.elapsed() < HAMMER {
        let mut t = t.lock().unwrap();
        match r.next() % 8 {
            0 => {
                negotiate(&mut t, r.next() as u32, 1);
                for q in 0..queues {
                    let ring = DriverRing {
                        size: 8,
                        desc: RING + u64::from(q) * 0x3000,
                        avail: RING + u64::from(q) * 0x3000 + 0x80,
                        used: RING + u64::from(q) * 0x3000 + 0x1000,
                    };
                    set_queue(&mut t, q, &ring);
                }
                write32(&mut t, reg::STATUS, ALL_OK);
                if read32(&mut t, reg::STATUS) == ALL_OK {
                    activated += 1;
                }
                for _ in 0..8 {
                    write32(&mut t, reg::QUEUE_NOTIFY, (r.next() % 3) as u32);
                }
            }
            1 => {
                let mut b = [0u8; 8];
                t.read(reg::CONFIG + r.next() % 64, &mut b[..(1 << (r.next() % 4))]);
            }
            2 => {
                // Addresses near and past the end of guest memory.
                let at = REGS[(r.next() % 6) as usize + 9];
                write32(&mut t, at, (r.next() as u32) | 0xf_0000);
            }
            _ => {
                let at = REGS[(r.next() % REGS.len() as u64) as usize];
                let value = match r.next() % 4 {
                    0 => 0,
                    1 => ALL_OK,
                    2 => (r.next() % 16) as u32,
                    _ => r.next() as u32,
                };
                write32(&mut t, at, value);
            }
        }
        drop(t);
        if r.next() % 16 == 0 {
            // Let the device thread at the rings (and another thread at the lock).
            std::thread::yield_now();
        }
    }
    activated
}

/// The memory scribbler: random bytes over the rings and the data buffers.
fn scribble(mem: &GuestMemory, seed: u64) {
    let mut r = XorShift(seed);
    let start = Instant::now();
    while start.elapsed() < HAMMER {
        let at = RING + r.next() % (DATA + 0x1000 - RING);
        let v = r.next().to_le_bytes();
        let _ = mem.write_slice(&v[..(1 + r.next() % 8) as usize], GuestAddress(at));
    }
}

/// Hammer `t` with three vCPUs and the scribbler, then reset it; returns it for the
/// clean bring-up.
fn race(t: MmioTransport, mem: &GuestMemory, queues: u32) -> MmioTransport {
    let t = Mutex::new(t);
    std::thread::scope(|s| {
        for seed in [
            0x1234_5678_9abc_def1,
            0x0fed_cba9_8765_4321,
            0x5555_aaaa_3333_cccc,
        ] {
            let t = &t;
            s.spawn(move || vcpu(t, seed, queues));
        }
        s.spawn(|| scribble(mem, 0x7777_1111_2222_3333));
    });
    let mut t = t.into_inner().unwrap();
    write32(&mut t, reg::STATUS, 0);
    assert_eq!(read32(&mut t, reg::STATUS), 0);
    t
}

/// Dropping the transport stops its device threads promptly.
fn drop_promptly(t: MmioTransport) {
    let start = Instant::now();
    drop(t);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

fn fresh_ring(mem: &GuestMemory, base: u64) -> DriverRing {
    mem.write_slice(&[0u8; 0x3000], GuestAddress(base)).unwrap();
    DriverRing::new(mem, base, 8)
}

#[test]
fn racing_vcpus_and_garbage_rings_leave_virtio_rng_working() {
    let mem = test_util::memory();
    let line = Arc::new(CountingLine::default());
    let rng = Rng::with_source(Box::new(CountingSource(0)));
    let t = MmioTransport::new(Box::new(rng), mem.clone(), line);
    let mut t = race(t, &mem, 1);

    negotiate(&mut t, 0, 1);
    let ring = fresh_ring(&mem, RING);
    set_queue(&mut t, 0, &ring);
    write32(&mut t, reg::STATUS, ALL_OK);
    ring.set_desc(&mem, 0, DATA, 16, DESC_F_WRITE, 0);
    ring.offer(&mem, 0);
    write32(&mut t, reg::QUEUE_NOTIFY, 0);
    ring.wait_used(&mem, 1);
    assert_eq!(ring.used_elem(&mem, 0), (0, 16));
    drop_promptly(t);
}

#[test]
fn racing_vcpus_and_garbage_rings_leave_virtio_blk_working() {
    let dir = std::env::temp_dir().join(format!("pv-race-blk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("disk.img");
    let content: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let image = DiskImage::open(&path, &ImageOptions::default()).unwrap();
    let blk = Block::new(Arc::new(image), BlockOptions::default());
    let mem = test_util::memory();
    let line = Arc::new(CountingLine::default());
    let t = MmioTransport::new(Box::new(blk), mem.clone(), line);
    let mut t = race(t, &mem, 1);

    // The guest may have written anywhere in the file: put the pattern back, then read
    // sector 3 through a clean bring-up.
    std::fs::write(&path, &content).unwrap();
    negotiate(&mut t, 0, 1);
    let ring = fresh_ring(&mem, RING);
    set_queue(&mut t, 0, &ring);
    write32(&mut t, reg::STATUS, ALL_OK);
    let header = [0u32.to_le_bytes(), 0u32.to_le_bytes()].concat();
    let mut req = header;
    req.extend_from_slice(&3u64.to_le_bytes());
    mem.write_slice(&req, GuestAddress(DATA)).unwrap();
    mem.write_slice(&[0xffu8], GuestAddress(DATA + 0x800))
        .unwrap();
    ring.set_desc(&mem, 0, DATA, 16, DESC_F_NEXT, 1);
    ring.set_desc(&mem, 1, DATA + 0x200, 512, DESC_F_WRITE | DESC_F_NEXT, 2);
    ring.set_desc(&mem, 2, DATA + 0x800, 1, DESC_F_WRITE, 0);
    ring.offer(&mem, 0);
    write32(&mut t, reg::QUEUE_NOTIFY, 0);
    ring.wait_used(&mem, 1);
    assert_eq!(ring.used_elem(&mem, 0), (0, 513));
    let mut status = [0xeeu8];
    mem.read_slice(&mut status, GuestAddress(DATA + 0x800))
        .unwrap();
    assert_eq!(status, [0], "VIRTIO_BLK_S_OK");
    let mut got = vec![0u8; 512];
    mem.read_slice(&mut got, GuestAddress(DATA + 0x200))
        .unwrap();
    assert_eq!(got, content[3 * 512..4 * 512]);
    drop_promptly(t);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A datagram socket standing in for the tap (one packet per message).
struct SocketTap(UnixDatagram);

impl Backend for SocketTap {
    fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }
    fn read_packet(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.recv(buf)
    }
    fn write_packet(&self, bufs: &[vm_memory::VolatileSlice<'_, ()>]) -> std::io::Result<usize> {
        tap::write_packet(&self.0, bufs)
    }
    fn set_offload(&self, _flags: u32) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn racing_vcpus_and_garbage_rings_leave_virtio_net_working() {
    let (dev, host) = UnixDatagram::pair().unwrap();
    dev.set_nonblocking(true).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The host side keeps sending while the vCPUs race, so receive runs too.
    let sender = host.try_clone().unwrap();
    sender.set_nonblocking(true).unwrap();
    let net = Net::new(Arc::new(SocketTap(dev)), [2, 0, 0, 0, 0, 1], "race".into());
    let mem = test_util::memory();
    let line = Arc::new(CountingLine::default());
    let t = MmioTransport::new(Box::new(net), mem.clone(), line);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut t = std::thread::scope(|s| {
        s.spawn(|| {
            let frame = [0x5au8; 12 + 60];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = sender.send(&frame);
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let t = race(t, &mem, 2);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        t
    });
    // Drain what the racing guests sent.
    host.set_nonblocking(true).unwrap();
    let mut sink = [0u8; 70000];
    while host.recv(&mut sink).is_ok() {}
    host.set_nonblocking(false).unwrap();

    // Clean bring-up; transmit one frame (virtio_net_hdr_v1, 12 bytes, then 60 bytes).
    negotiate(&mut t, 0, 1);
    let rx = fresh_ring(&mem, RING);
    let tx = fresh_ring(&mem, RING + 0x3000);
    set_queue(&mut t, 0, &rx);
    set_queue(&mut t, 1, &tx);
    write32(&mut t, reg::STATUS, ALL_OK);
    let mut frame = vec![0u8; 12];
    frame.extend((0..60u8).map(|i| i ^ 0x3c));
    mem.write_slice(&frame, GuestAddress(DATA)).unwrap();
    tx.set_desc(&mem, 0, DATA, frame.len() as u32, 0, 0);
    tx.offer(&mem, 0);
    write32(&mut t, reg::QUEUE_NOTIFY, 1);
    tx.wait_used(&mem, 1);
    let mut got = vec![0u8; 2048];
    let start = Instant::now();
    let n = loop {
        let n = host.recv(&mut got).unwrap();
        // Packets the racing rings queued before the reset may still come first.
        if got[..n] == frame[..] || start.elapsed() > Duration::from_secs(10) {
            break n;
        }
    };
    assert_eq!(got[..n], frame[..]);
    drop_promptly(t);
}

#[test]
fn racing_vcpus_and_garbage_rings_leave_virtio_vsock_working() {
    use std::io::Write;
    use std::os::unix::net::{UnixListener, UnixStream};
    const CID: u64 = 42;
    let dir = std::env::temp_dir().join(format!("pv-race-vsock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v.sock");
    let _ = std::fs::remove_file(&path);
    let listener = Arc::new(UnixListener::bind(&path).unwrap());
    let vsock = Vsock::new(CID, listener, path.clone(), "race".into()).unwrap();
    let mem = test_util::memory();
    let line = Arc::new(CountingLine::default());
    let t = MmioTransport::new(Box::new(vsock), mem.clone(), line);
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Host clients keep connecting while the vCPUs race: the device sends requests into
    // rings that are being reset and scribbled on.
    let mut t = std::thread::scope(|s| {
        s.spawn(|| {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut c) = UnixStream::connect(&path) {
                    let _ = c.write_all(b"CONNECT 1234\n");
                    held.push(c);
                }
                if held.len() > 32 {
                    held.clear();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let t = race(t, &mem, 3);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        t
    });

    let mut cid = [0u8; 8];
    t.read(reg::CONFIG, &mut cid);
    assert_eq!(u64::from_le_bytes(cid), CID);
    negotiate(&mut t, 0, 1);
    let rings: Vec<_> = (0..3)
        .map(|q| fresh_ring(&mem, RING + q * 0x3000))
        .collect();
    for (q, ring) in rings.iter().enumerate() {
        set_queue(&mut t, q as u32, ring);
    }
    write32(&mut t, reg::STATUS, ALL_OK);
    for d in 0..8u16 {
        rings[0].set_desc(&mem, d, DATA + u64::from(d) * 0x1000, 4096, DESC_F_WRITE, 0);
        rings[0].offer(&mem, d);
    }
    write32(&mut t, reg::QUEUE_NOTIFY, 0);
    let mut c = UnixStream::connect(&path).unwrap();
    c.write_all(b"CONNECT 5555\n").unwrap();
    // Clients the racing thread left in the listener's backlog are accepted now too (their
    // requests come first, each in one buffer, which is offered again): look for ours.
    let (start, mut seen) = (Instant::now(), 0u16);
    let found = 'found: loop {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no request for port 5555"
        );
        while seen != rings[0].used_idx(&mem) {
            let (id, _) = rings[0].used_elem(&mem, seen % 8);
            seen = seen.wrapping_add(1);
            let mut hdr = [0u8; 44];
            let at = DATA + u64::from(id) * 0x1000;
            mem.read_slice(&mut hdr, GuestAddress(at)).unwrap();
            if u32::from_le_bytes(hdr[20..24].try_into().unwrap()) == 5555 {
                break 'found hdr;
            }
            rings[0].offer(&mem, id as u16);
            write32(&mut t, reg::QUEUE_NOTIFY, 0);
        }
        // Notify again while waiting: a worker thread also wakes on the host's connection
        // by itself, but with the `fuzzing` feature the device is served only inline, on a
        // notify (`worker::inline`).
        write32(&mut t, reg::QUEUE_NOTIFY, 0);
        std::thread::sleep(Duration::from_millis(1));
    };
    let le64 = |at: usize| u64::from_le_bytes(found[at..at + 8].try_into().unwrap());
    assert_eq!((le64(0), le64(8)), (2, CID), "from the host to the guest");
    assert_eq!(
        u16::from_le_bytes([found[30], found[31]]),
        1,
        "VIRTIO_VSOCK_OP_REQUEST"
    );
    drop(c);
    drop_promptly(t);
    let _ = std::fs::remove_dir_all(&dir);
}
