// SPDX-License-Identifier: Apache-2.0
//! A driver's whole conversation with the transport, register by register, as raw
//! little-endian bytes (so the same assertions hold on big-endian s390x).

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::interrupt::test_util::CountingLine;
use crate::virtio::test_util::{self, CountingSource, DriverRing, FakeDevice, Seen, DESC_F_WRITE};
use crate::virtio::{status, Rng};

mod race;

fn write32(t: &mut MmioTransport, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

fn read32(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

struct Fixture {
    transport: MmioTransport,
    seen: Arc<Mutex<Seen>>,
    line: Arc<CountingLine>,
    mem: GuestMemory,
}

fn fake(sizes: &[u16], refuse: bool) -> Fixture {
    let (device, seen) = FakeDevice::boxed(sizes, refuse);
    let line = Arc::new(CountingLine::default());
    let mem = test_util::memory();
    Fixture {
        transport: MmioTransport::new(device, mem.clone(), line.clone()),
        seen,
        line,
        mem,
    }
}

/// ACKNOWLEDGE, DRIVER, features (word 0 = `low`, word 1 = `high`), FEATURES_OK; returns
/// the status read back.
fn negotiate(t: &mut MmioTransport, low: u32, high: u32) -> u32 {
    write32(t, reg::STATUS, 0);
    write32(t, reg::STATUS, status::ACKNOWLEDGE.into());
    write32(
        t,
        reg::STATUS,
        (status::ACKNOWLEDGE | status::DRIVER).into(),
    );
    write32(t, reg::DRIVER_FEATURES_SEL, 0);
    write32(t, reg::DRIVER_FEATURES, low);
    write32(t, reg::DRIVER_FEATURES_SEL, 1);
    write32(t, reg::DRIVER_FEATURES, high);
    write32(
        t,
        reg::STATUS,
        (status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK).into(),
    );
    read32(t, reg::STATUS)
}

fn set_queue(t: &mut MmioTransport, index: u32, ring: &DriverRing) {
    write32(t, reg::QUEUE_SEL, index);
    write32(t, reg::QUEUE_NUM, ring.size.into());
    write32(t, reg::QUEUE_DESC_LOW, ring.desc as u32);
    write32(t, reg::QUEUE_DESC_HIGH, (ring.desc >> 32) as u32);
    write32(t, reg::QUEUE_DRIVER_LOW, ring.avail as u32);
    write32(t, reg::QUEUE_DRIVER_HIGH, (ring.avail >> 32) as u32);
    write32(t, reg::QUEUE_DEVICE_LOW, ring.used as u32);
    write32(t, reg::QUEUE_DEVICE_HIGH, (ring.used >> 32) as u32);
    write32(t, reg::QUEUE_READY, 1);
}

const ALL_OK: u32 =
    (status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK) as u32;

#[test]
fn identification_registers_are_little_endian_bytes() {
    let mut f = fake(&[16], false);
    let t = &mut f.transport;
    let mut b = [0u8; 4];
    t.read(reg::MAGIC_VALUE, &mut b);
    assert_eq!(&b, b"virt");
    t.read(reg::VERSION, &mut b);
    assert_eq!(b, [2, 0, 0, 0]);
    t.read(reg::DEVICE_ID, &mut b);
    assert_eq!(b, [42, 0, 0, 0]);
    t.read(reg::VENDOR_ID, &mut b);
    assert_eq!(&b, b"PLVS");
    // Features word 0: EVENT_IDX (bit 29) and bit 3; word 1: VERSION_1 (bit 32).
    t.read(reg::DEVICE_FEATURES, &mut b);
    assert_eq!(b, [0x08, 0, 0, 0x20]);
    write32(t, reg::DEVICE_FEATURES_SEL, 1);
    t.read(reg::DEVICE_FEATURES, &mut b);
    assert_eq!(b, [1, 0, 0, 0]);
    write32(t, reg::DEVICE_FEATURES_SEL, 2);
    assert_eq!(read32(t, reg::DEVICE_FEATURES), 0);
    assert_eq!(read32(t, reg::QUEUE_NUM_MAX), 16);
    write32(t, reg::QUEUE_SEL, 1);
    assert_eq!(read32(t, reg::QUEUE_NUM_MAX), 0, "no queue 1");
    assert_eq!(read32(t, reg::SHM_LEN_LOW), u32::MAX, "no shared memory");
    assert_eq!(read32(t, reg::SHM_LEN_HIGH), u32::MAX);
    assert_eq!(read32(t, reg::CONFIG_GENERATION), 0);
}

#[test]
fn driver_sequence_activates_with_64_bit_queue_addresses() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    // A second RAM region above 4 GiB for one queue, so the high halves matter.
    let mem = GuestMemory::from_ranges(&[
        (GuestAddress(0), 1 << 20),
        (GuestAddress(0x1_0000_0000), 1 << 16),
    ])
    .unwrap();
    let line = Arc::new(CountingLine::default());
    let device = FakeDevice {
        seen: seen.clone(),
        sizes: vec![8, 4],
        refuse: false,
    };
    let mut t = MmioTransport::new(Box::new(device), mem.clone(), line.clone());

    // Driver accepts VERSION_1 and EVENT_IDX, not bit 3.
    let st = negotiate(&mut t, 1 << 29, 1);
    assert_eq!(st, 0xb, "FEATURES_OK stays set");
    assert_eq!(seen.lock().unwrap().features, Some((1 << 32) | (1 << 29)));

    let q0 = DriverRing::new(&mem, 0x1_0000_0000, 8);
    let q1 = DriverRing::new(&mem, 0x4000, 4);
    set_queue(&mut t, 0, &q0);
    set_queue(&mut t, 1, &q1);
    write32(&mut t, reg::QUEUE_SEL, 0);
    assert_eq!(read32(&mut t, reg::QUEUE_READY), 1);
    assert!(
        seen.lock().unwrap().queues.is_empty(),
        "not before DRIVER_OK"
    );
    write32(&mut t, reg::STATUS, ALL_OK);
    assert_eq!(read32(&mut t, reg::STATUS), ALL_OK);
    assert_eq!(
        seen.lock().unwrap().queues,
        vec![
            (q0.desc, q0.avail, q0.used, 8, true),
            (q1.desc, q1.avail, q1.used, 4, true),
        ]
    );

    // Activation notified every queue once (buffers made available before DRIVER_OK).
    assert_eq!(seen.lock().unwrap().notifies, vec![0, 1]);
    write32(&mut t, reg::QUEUE_NOTIFY, 1);
    write32(&mut t, reg::QUEUE_NOTIFY, 0);
    write32(&mut t, reg::QUEUE_NOTIFY, 2); // no such queue: ignored
    assert_eq!(seen.lock().unwrap().notifies, vec![0, 1, 1, 0]);

    // The device signals; the driver reads the status and acknowledges.
    let interrupt = seen.lock().unwrap().interrupt.clone().unwrap();
    interrupt.signal_used_queue(0);
    assert_eq!(line.count(), 1);
    assert_eq!(read32(&mut t, reg::INTERRUPT_STATUS), INT_USED_RING);
    interrupt.signal_config_changed();
    assert_eq!(line.count(), 2);
    assert_eq!(
        read32(&mut t, reg::INTERRUPT_STATUS),
        INT_USED_RING | INT_CONFIG
    );
    assert_eq!(read32(&mut t, reg::CONFIG_GENERATION), 1);
    write32(&mut t, reg::INTERRUPT_ACK, INT_USED_RING);
    assert_eq!(read32(&mut t, reg::INTERRUPT_STATUS), INT_CONFIG);
    write32(&mut t, reg::INTERRUPT_ACK, INT_CONFIG);
    assert_eq!(read32(&mut t, reg::INTERRUPT_STATUS), 0);

    // Reset: the device forgets, the queues are unconfigured again.
    write32(&mut t, reg::STATUS, 0);
    assert_eq!(read32(&mut t, reg::STATUS), 0);
    assert_eq!(
        seen.lock().unwrap().resets,
        2,
        "negotiate's reset and this one"
    );
    assert_eq!(read32(&mut t, reg::QUEUE_READY), 0);
    write32(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_eq!(
        seen.lock().unwrap().notifies.len(),
        4,
        "no notify after reset"
    );
}

#[test]
fn features_without_version_1_are_refused_and_beyond_the_offer_masked() {
    let mut f = fake(&[16], false);
    // Legacy driver: no VERSION_1.
    let st = negotiate(&mut f.transport, 0, 0);
    assert_eq!(st, u32::from(status::ACKNOWLEDGE | status::DRIVER));
    assert_eq!(f.seen.lock().unwrap().features, None);
    // Bit 4 was never offered: masked off, as virtio-ccw, QEMU and Cloud Hypervisor do
    // (this transport refused FEATURES_OK for it before the transport core).
    let st = negotiate(&mut f.transport, 1 << 4 | 1 << 3, 1);
    assert_eq!(
        st,
        u32::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK)
    );
    assert_eq!(f.seen.lock().unwrap().features, Some(1 << 32 | 1 << 3));
    write32(&mut f.transport, reg::STATUS, 0);
    // DRIVER_OK without FEATURES_OK does not start the device.
    write32(&mut f.transport, reg::STATUS, 0x7);
    assert!(f.seen.lock().unwrap().interrupt.is_none());
    assert_ne!(
        read32(&mut f.transport, reg::STATUS) & 0x40,
        0,
        "needs reset"
    );
}

#[test]
fn writes_in_the_wrong_state_are_ignored() {
    let mut f = fake(&[16], false);
    let t = &mut f.transport;
    // Features before DRIVER is set.
    write32(t, reg::DRIVER_FEATURES, 0xffff_ffff);
    let ring = DriverRing::new(&f.mem, 0x8000, 16);
    negotiate(t, 0, 1);
    set_queue(t, 0, &ring);
    // Queue registers while the queue is ready.
    write32(t, reg::QUEUE_NUM, 2);
    write32(t, reg::QUEUE_DESC_LOW, 0x1230);
    // Notify before DRIVER_OK.
    write32(t, reg::QUEUE_NOTIFY, 0);
    // Features after FEATURES_OK.
    write32(t, reg::DRIVER_FEATURES_SEL, 0);
    write32(t, reg::DRIVER_FEATURES, 1 << 3);
    // A status that drops bits is no reset.
    write32(t, reg::STATUS, u32::from(status::ACKNOWLEDGE));
    assert_eq!(read32(t, reg::STATUS), 0xb);
    write32(t, reg::STATUS, ALL_OK);
    let seen = f.seen.lock().unwrap();
    assert_eq!(seen.features, Some(1 << 32));
    assert_eq!(
        seen.queues,
        vec![(ring.desc, ring.avail, ring.used, 16, false)]
    );
    // Only activation's own notify: the one before DRIVER_OK reached no device.
    assert_eq!(seen.notifies, [0]);
}

#[test]
fn bad_accesses_read_zero_and_change_nothing() {
    let mut f = fake(&[16], false);
    let t = &mut f.transport;
    let mut b2 = [0xaa; 2];
    t.read(reg::MAGIC_VALUE, &mut b2);
    assert_eq!(b2, [0, 0], "16-bit register read");
    let mut b8 = [0xaa; 8];
    t.read(reg::MAGIC_VALUE, &mut b8);
    assert_eq!(b8, [0; 8], "64-bit register read");
    let mut b4 = [0xaa; 4];
    t.read(reg::MAGIC_VALUE + 1, &mut b4);
    assert_eq!(b4, [0; 4], "unaligned");
    t.read(0x0f0, &mut b4);
    assert_eq!(b4, [0; 4], "reserved register");
    t.write(reg::STATUS, &[1]);
    t.write(reg::STATUS, &[1, 0]);
    t.write(0x0e8, &[1, 2, 3, 4]);
    t.write(reg::MAGIC_VALUE, &[1, 2, 3, 4]);
    write32(t, reg::STATUS, 0x1234);
    assert_eq!(read32(t, reg::STATUS), 0);
    assert_eq!(read32(t, reg::MAGIC_VALUE), MAGIC);
    // A bad queue size, an unaligned descriptor table, a ring outside memory.
    negotiate(t, 0, 1);
    write32(t, reg::QUEUE_NUM, 3);
    write32(t, reg::QUEUE_DESC_LOW, 0x1001);
    write32(t, reg::QUEUE_DRIVER_LOW, 0x2000);
    write32(t, reg::QUEUE_DEVICE_LOW, 0x3000);
    write32(t, reg::QUEUE_READY, 1);
    write32(t, reg::STATUS, ALL_OK);
    assert_eq!(
        read32(t, reg::STATUS),
        0x4b,
        "DEVICE_NEEDS_RESET, no DRIVER_OK"
    );
    assert_eq!(read32(t, reg::INTERRUPT_STATUS), INT_CONFIG);
    assert_eq!(f.line.count(), 1);
    write32(t, reg::STATUS, 0);
    negotiate(t, 0, 1);
    write32(t, reg::QUEUE_NUM, 16);
    write32(t, reg::QUEUE_DESC_LOW, 0xfff0_0000);
    write32(t, reg::QUEUE_READY, 1);
    write32(t, reg::STATUS, ALL_OK);
    assert_eq!(read32(t, reg::STATUS), 0x4b);
    // A queue the driver never readied.
    write32(t, reg::STATUS, 0);
    negotiate(t, 0, 1);
    write32(t, reg::STATUS, ALL_OK);
    assert_eq!(read32(t, reg::STATUS), 0x4b);
    assert!(f.seen.lock().unwrap().queues.is_empty());
}

#[test]
fn a_device_that_refuses_to_start_needs_a_reset() {
    let mut f = fake(&[16], true);
    let ring = DriverRing::new(&f.mem, 0x8000, 16);
    negotiate(&mut f.transport, 0, 1);
    set_queue(&mut f.transport, 0, &ring);
    write32(&mut f.transport, reg::STATUS, ALL_OK);
    assert_eq!(read32(&mut f.transport, reg::STATUS), 0x4b);
    write32(&mut f.transport, reg::QUEUE_NOTIFY, 0);
    assert!(f.seen.lock().unwrap().notifies.is_empty());
}

#[test]
fn config_space_passes_through_at_any_width() {
    let mut f = fake(&[16], false);
    let t = &mut f.transport;
    let mut b1 = [0u8; 1];
    t.read(reg::CONFIG + 3, &mut b1);
    assert_eq!(b1, [0xc3]);
    let mut b8 = [0u8; 8];
    t.read(reg::CONFIG, &mut b8);
    assert_eq!(b8, [0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7]);
    t.write(reg::CONFIG + 0x10, &[1, 2]);
    assert_eq!(
        f.seen.lock().unwrap().config_writes,
        vec![(0x10, vec![1, 2])]
    );
}

#[test]
fn rng_behind_the_transport_fills_the_driver_buffer() {
    let mem = test_util::memory();
    let line = Arc::new(CountingLine::default());
    let rng = Rng::with_source(Box::new(CountingSource(0x10)));
    let mut t = MmioTransport::new(Box::new(rng), mem.clone(), line.clone());
    assert_eq!(read32(&mut t, reg::DEVICE_ID), 4);
    assert_eq!(read32(&mut t, reg::QUEUE_NUM_MAX), 256);

    assert_eq!(negotiate(&mut t, 0, 1), 0xb);
    let ring = DriverRing::new(&mem, 0x1_0000, 8);
    set_queue(&mut t, 0, &ring);
    // Two requests: 16 bytes at 0x2_0000 (descriptor 0), 4 bytes at 0x2_1000 (3), both
    // available before DRIVER_OK. Activation kicks the worker at once (see transport.rs),
    // so a request offered after DRIVER_OK could be served by that first pass and the next
    // one by a second: two interrupts, correctly. Offered before, one pass sees both.
    ring.set_desc(&mem, 0, 0x2_0000, 16, DESC_F_WRITE, 0);
    ring.set_desc(&mem, 3, 0x2_1000, 4, DESC_F_WRITE, 0);
    ring.offer(&mem, 0);
    ring.offer(&mem, 3);
    write32(&mut t, reg::STATUS, ALL_OK);
    assert_eq!(read32(&mut t, reg::STATUS), ALL_OK);
    write32(&mut t, reg::QUEUE_NOTIFY, 0);

    ring.wait_used(&mem, 2);
    assert_eq!(ring.used_elem_bytes(&mem, 0), [0, 0, 0, 0, 16, 0, 0, 0]);
    assert_eq!(ring.used_elem_bytes(&mem, 1), [3, 0, 0, 0, 4, 0, 0, 0]);
    let mut buf = [0u8; 17];
    mem.read_slice(&mut buf, GuestAddress(0x2_0000)).unwrap();
    let want: Vec<u8> = (0x10..0x20).chain([0]).collect();
    assert_eq!(buf.to_vec(), want, "16 bytes, nothing past the buffer");
    let mut buf = [0u8; 4];
    mem.read_slice(&mut buf, GuestAddress(0x2_1000)).unwrap();
    assert_eq!(buf, [0x20, 0x21, 0x22, 0x23]);

    // The worker raises the interrupt after its pass has put both in the used ring.
    let start = std::time::Instant::now();
    while line.count() == 0 && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(line.count(), 1, "one interrupt for the batch");
    assert_eq!(read32(&mut t, reg::INTERRUPT_STATUS), INT_USED_RING);
    write32(&mut t, reg::INTERRUPT_ACK, INT_USED_RING);
    assert_eq!(read32(&mut t, reg::INTERRUPT_STATUS), 0);

    // A notify with nothing new available: no interrupt (give the worker time to look).
    write32(&mut t, reg::QUEUE_NOTIFY, 0);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(line.count(), 1);

    // Reset and set up again: the device starts over at ring index 0.
    write32(&mut t, reg::STATUS, 0);
    let ring = DriverRing::new(&mem, 0x1_0000, 8);
    negotiate(&mut t, 0, 1);
    set_queue(&mut t, 0, &ring);
    write32(&mut t, reg::STATUS, ALL_OK);
    ring.set_desc(&mem, 0, 0x2_0000, 16, DESC_F_WRITE, 0);
    ring.offer(&mem, 0);
    write32(&mut t, reg::QUEUE_NOTIFY, 0);
    ring.wait_used(&mem, 1);
    assert_eq!(ring.used_elem(&mem, 0), (0, 16));
}
