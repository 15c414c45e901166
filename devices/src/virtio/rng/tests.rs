// SPDX-License-Identifier: Apache-2.0
//! virtio-rng against a driver's queue in guest memory, good requests and garbage.

use std::sync::Arc;

use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::test_util::{
    self, CountingInterrupt, CountingSource, DriverRing, DESC_F_NEXT, DESC_F_WRITE,
};

struct Fixture {
    q: RngQueue,
    mem: GuestMemory,
    ring: DriverRing,
    irq: Arc<CountingInterrupt>,
}

fn active(size: u16, event_idx: bool) -> Fixture {
    let mem = test_util::memory();
    let ring = DriverRing::new(&mem, 0x1_0000, size);
    let irq = Arc::new(CountingInterrupt::default());
    let mut queue = ring.queue(QUEUE_SIZE);
    queue.set_event_idx(event_idx);
    let q = RngQueue::new(
        Box::new(CountingSource(0)),
        ActiveQueue {
            mem: mem.clone(),
            interrupt: irq.clone(),
            queue,
        },
    );
    Fixture { q, mem, ring, irq }
}

impl Fixture {
    /// What the worker does after a kick: passes until nothing is pending.
    fn serve(&mut self) {
        let mut passes = 0;
        while self.q.serve() {
            passes += 1;
            assert!(passes < 1000, "the queue never ran dry");
        }
    }
}

fn bytes(mem: &GuestMemory, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

#[test]
fn offers_one_queue_and_version_1() {
    let rng = Rng::with_source(Box::new(CountingSource(0)));
    assert_eq!(rng.device_type(), 4);
    assert_eq!(rng.queue_max_sizes(), &[256]);
    assert_eq!(
        rng.device_features() & features::VERSION_1,
        features::VERSION_1
    );
    let mut cfg = [0xffu8; 4];
    rng.read_config(0, &mut cfg);
    assert_eq!(cfg, [0; 4]);
}

#[test]
fn fills_every_writable_buffer_of_a_chain() {
    let mut f = active(8, false);
    f.ring
        .set_desc(&f.mem, 2, 0x2_0000, 8, DESC_F_WRITE | DESC_F_NEXT, 5);
    f.ring.set_desc(&f.mem, 5, 0x2_0100, 8, DESC_F_WRITE, 0);
    f.ring.offer(&f.mem, 2);
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), 1);
    assert_eq!(f.ring.used_elem_bytes(&f.mem, 0), [2, 0, 0, 0, 16, 0, 0, 0]);
    assert_eq!(bytes(&f.mem, 0x2_0000, 9), [0, 1, 2, 3, 4, 5, 6, 7, 0]);
    assert_eq!(bytes(&f.mem, 0x2_0100, 8), [8, 9, 10, 11, 12, 13, 14, 15]);
    assert_eq!(f.irq.used(), 1);
}

#[test]
fn skips_device_readable_buffers() {
    let mut f = active(8, false);
    f.mem
        .write_slice(&[0xee; 8], GuestAddress(0x2_0000))
        .unwrap();
    f.ring.set_desc(&f.mem, 0, 0x2_0000, 8, DESC_F_NEXT, 1);
    f.ring.set_desc(&f.mem, 1, 0x2_0100, 4, DESC_F_WRITE, 0);
    f.ring.offer(&f.mem, 0);
    // A chain with nothing writable at all is returned empty.
    f.ring.set_desc(&f.mem, 2, 0x2_0200, 4, 0, 0);
    f.ring.offer(&f.mem, 2);
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), 2);
    assert_eq!(f.ring.used_elem(&f.mem, 0), (0, 4));
    assert_eq!(f.ring.used_elem(&f.mem, 1), (2, 0));
    assert_eq!(bytes(&f.mem, 0x2_0000, 8), [0xee; 8]);
    assert_eq!(bytes(&f.mem, 0x2_0100, 4), [0, 1, 2, 3]);
    assert_eq!(bytes(&f.mem, 0x2_0200, 4), [0; 4]);
}

#[test]
fn buffers_outside_guest_memory_are_returned_empty() {
    let mut f = active(8, false);
    f.ring.set_desc(&f.mem, 0, 0x20_0000, 16, DESC_F_WRITE, 0); // past the 1 MiB of RAM
    f.ring.set_desc(&f.mem, 1, 0xf_fff8, 16, DESC_F_WRITE, 0); // crosses its end
    f.ring
        .set_desc(&f.mem, 2, u64::MAX - 3, 16, DESC_F_WRITE, 0); // wraps
    f.ring.set_desc(&f.mem, 3, 0x2_0000, 4, DESC_F_WRITE, 0);
    for head in 0..4 {
        f.ring.offer(&f.mem, head);
    }
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), 4);
    for slot in 0..3 {
        assert_eq!(f.ring.used_elem(&f.mem, slot), (u32::from(slot), 0));
    }
    assert_eq!(f.ring.used_elem(&f.mem, 3), (3, 4));
}

#[test]
fn a_looping_chain_ends() {
    let mut f = active(8, false);
    f.ring
        .set_desc(&f.mem, 0, 0x2_0000, 4, DESC_F_WRITE | DESC_F_NEXT, 1);
    f.ring
        .set_desc(&f.mem, 1, 0x2_0100, 4, DESC_F_WRITE | DESC_F_NEXT, 0);
    // A next index past the table ends the chain too.
    f.ring
        .set_desc(&f.mem, 2, 0x2_0200, 4, DESC_F_WRITE | DESC_F_NEXT, 200);
    f.ring.offer(&f.mem, 0);
    f.ring.offer(&f.mem, 2);
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), 2);
    let (id, len) = f.ring.used_elem(&f.mem, 0);
    assert_eq!(id, 0);
    assert!(len <= 4 * 8, "at most one pass over the table: {len}");
    assert_eq!(f.ring.used_elem(&f.mem, 1), (2, 4));
}

#[test]
fn requests_are_capped() {
    let mut f = active(8, false);
    f.ring
        .set_desc(&f.mem, 0, 0x2_0000, 0x2_0000, DESC_F_WRITE, 0);
    f.ring.offer(&f.mem, 0);
    f.serve();
    assert_eq!(f.ring.used_elem(&f.mem, 0), (0, MAX_REQUEST_BYTES as u32));
    let end = 0x2_0000 + MAX_REQUEST_BYTES as u64;
    assert_eq!(bytes(&f.mem, end - 2, 4), [0xfe, 0xff, 0, 0]);
}

#[test]
fn garbage_ring_indices_are_survived() {
    let mut f = active(8, false);
    // A head past the descriptor table.
    f.ring.offer(&f.mem, 100);
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), 0);
    // The next good request is still served.
    f.ring.set_desc(&f.mem, 1, 0x2_0000, 4, DESC_F_WRITE, 0);
    f.ring.offer(&f.mem, 1);
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), 1);
    assert_eq!(f.ring.used_elem(&f.mem, 0), (1, 4));
    // An available index further ahead than the queue is long.
    f.ring.set_avail_idx(&f.mem, 1000);
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), 1);
    // Notifies of a queue that does not exist.
    let mut rng = Rng::with_source(Box::new(CountingSource(0)));
    rng.queue_notify(1);
    rng.queue_notify(u16::MAX);
}

#[test]
fn one_pass_serves_a_bounded_number_of_requests() {
    let mut f = active(QUEUE_SIZE, false);
    for i in 0..QUEUE_SIZE {
        f.ring.set_desc(
            &f.mem,
            i,
            0x2_0000 + 0x10 * u64::from(i),
            4,
            DESC_F_WRITE,
            0,
        );
        f.ring.offer(&f.mem, i);
    }
    assert!(f.q.serve(), "more is pending after one pass");
    assert_eq!(f.ring.used_idx(&f.mem), MAX_REQUESTS_PER_PASS as u16);
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), QUEUE_SIZE, "nothing lost");
}

#[test]
fn event_idx_suppresses_interrupts_until_the_used_event() {
    let mut f = active(8, true);
    for i in 0..3 {
        f.ring.set_desc(
            &f.mem,
            i,
            0x2_0000 + 0x100 * u64::from(i),
            4,
            DESC_F_WRITE,
            0,
        );
    }
    f.ring.set_used_event(&f.mem, 5);
    f.ring.offer(&f.mem, 0);
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), 1);
    assert_eq!(
        f.irq.used(),
        0,
        "the driver wants an interrupt after entry 5"
    );
    // The device asks to be notified of the next request (avail_event = its next index),
    // or a driver using EVENT_IDX never notifies again (Linux's virtio-rng hung so).
    assert_eq!(f.ring.avail_event(&f.mem), 1);
    f.ring.set_used_event(&f.mem, 1);
    f.ring.offer(&f.mem, 1);
    f.serve();
    assert_eq!(f.irq.used(), 1, "used idx went past 1");
    assert_eq!(f.ring.avail_event(&f.mem), 2);
}

#[test]
fn without_event_idx_notifications_stay_enabled() {
    let mut f = active(8, false);
    f.ring.set_desc(&f.mem, 0, 0x2_0000, 4, DESC_F_WRITE, 0);
    f.ring.offer(&f.mem, 0);
    f.serve();
    let used_flags: [u8; 2] = f.mem.read_obj(GuestAddress(f.ring.used)).unwrap();
    assert_eq!(used_flags, [0, 0], "no VRING_USED_F_NO_NOTIFY");
    assert_eq!(f.irq.used(), 1);
}

#[test]
fn nothing_happens_before_activation_or_after_reset() {
    let mem = test_util::memory();
    let ring = DriverRing::new(&mem, 0x1_0000, 8);
    let irq = Arc::new(CountingInterrupt::default());
    let mut rng = Rng::with_source(Box::new(CountingSource(0)));
    ring.set_desc(&mem, 0, 0x2_0000, 4, DESC_F_WRITE, 0);
    ring.offer(&mem, 0);
    rng.queue_notify(0);
    assert_eq!(ring.used_idx(&mem), 0);
    assert!(matches!(
        rng.activate(mem.clone(), irq.clone(), vec![]),
        Err(ActivateError::QueueCount { got: 0, want: 1 })
    ));
    rng.set_driver_features(u64::MAX);
    assert_eq!(rng.driver_features(), rng.device_features());
    rng.activate(mem.clone(), irq.clone(), vec![ring.queue(QUEUE_SIZE)])
        .unwrap();
    rng.reset();
    assert_eq!(rng.driver_features(), 0);
    rng.queue_notify(0);
    assert_eq!(ring.used_idx(&mem), 0);
    assert_eq!(irq.used(), 0);
}

#[test]
fn host_urandom_fills_a_request() {
    let mem = test_util::memory();
    let ring = DriverRing::new(&mem, 0x1_0000, 8);
    let irq = Arc::new(CountingInterrupt::default());
    let mut rng = Rng::new().unwrap();
    rng.activate(mem.clone(), irq.clone(), vec![ring.queue(QUEUE_SIZE)])
        .unwrap();
    ring.set_desc(&mem, 0, 0x2_0000, 64, DESC_F_WRITE, 0);
    ring.offer(&mem, 0);
    rng.queue_notify(0);
    ring.wait_used(&mem, 1); // served by the worker thread
    assert_eq!(ring.used_elem(&mem, 0), (0, 64));
    assert_ne!(bytes(&mem, 0x2_0000, 64), vec![0; 64]);
}

/// An entropy source that blocks until the test lets it go (a slow host device).
struct Gate(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl std::io::Read for Gate {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (m, c) = &*self.0;
        let mut open = m.lock().unwrap();
        while !*open {
            open = c.wait(open).unwrap();
        }
        buf.fill(0x42);
        Ok(buf.len())
    }
}

#[test]
fn a_blocking_device_never_blocks_the_notifying_vcpu() {
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let mem = test_util::memory();
    let ring = DriverRing::new(&mem, 0x1_0000, 8);
    let irq = Arc::new(CountingInterrupt::default());
    let mut rng = Rng::with_source(Box::new(Gate(gate.clone())));
    assert_eq!(
        rng.queue_events().len(),
        1,
        "one ioeventfd for the request queue"
    );
    rng.activate(mem.clone(), irq.clone(), vec![ring.queue(QUEUE_SIZE)])
        .unwrap();
    ring.set_desc(&mem, 0, 0x2_0000, 16, DESC_F_WRITE, 0);
    ring.offer(&mem, 0);
    // What the vCPU thread does on a notify: returns at once, the device is blocked.
    let t0 = std::time::Instant::now();
    for _ in 0..100 {
        rng.queue_notify(0);
    }
    assert!(t0.elapsed() < std::time::Duration::from_millis(500));
    assert_eq!(
        ring.used_idx(&mem),
        0,
        "the worker is still waiting on the host"
    );
    // The device's own event (the ioeventfd KVM writes) wakes it as well.
    rng.queue_events()[0].write(1).unwrap();
    let (m, c) = &*gate;
    *m.lock().unwrap() = true;
    c.notify_all();
    ring.wait_used(&mem, 1);
    assert_eq!(bytes(&mem, 0x2_0000, 16), vec![0x42; 16]);
    rng.reset();
}
