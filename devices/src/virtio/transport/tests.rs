// SPDX-License-Identifier: Apache-2.0
//! The transport core on its own: the rules both virtio-mmio and virtio-ccw follow.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::*;
use crate::virtio::test_util::{self, CountingInterrupt, DriverRing, FakeDevice, Seen};

const OFFERED: u64 = features::VERSION_1 | features::RING_EVENT_IDX | 1 << 3;
const NEGOTIATING: u8 = status::ACKNOWLEDGE | status::DRIVER;
const FEATURES_DONE: u8 = NEGOTIATING | status::FEATURES_OK;
const ALL_OK: u8 = FEATURES_DONE | status::DRIVER_OK;

struct Fixture {
    core: TransportCore,
    seen: Arc<Mutex<Seen>>,
    irq: Arc<CountingInterrupt>,
    mem: GuestMemory,
}

fn core(sizes: &[u16], refuse: bool) -> Fixture {
    let (device, seen) = FakeDevice::boxed(sizes, refuse);
    let irq = Arc::new(CountingInterrupt::default());
    let mem = test_util::memory();
    Fixture {
        core: TransportCore::new("test", device, mem.clone(), irq.clone()),
        seen,
        irq,
        mem,
    }
}

/// Up to FEATURES_OK with VERSION_1 and `low` in word 0.
fn negotiate(c: &mut TransportCore, low: u32) {
    c.write_status(NEGOTIATING).unwrap();
    c.write_driver_features_word(0, low).unwrap();
    c.write_driver_features_word(1, 1).unwrap();
    c.write_status(FEATURES_DONE).unwrap();
}

fn set_up_queue(c: &mut TransportCore, index: u32, ring: &DriverRing) {
    c.set_queue_size(index, u32::from(ring.size)).unwrap();
    c.configure_queue(index, false, |q| {
        (q.desc, q.avail, q.used) = (ring.desc, ring.avail, ring.used)
    })
    .unwrap();
    c.configure_queue(index, true, |q| q.ready = true).unwrap();
}

#[test]
fn features_never_offered_are_masked_off_not_refused() {
    let mut f = core(&[16], false);
    assert_eq!(f.core.device_features_word(0), OFFERED as u32);
    assert_eq!(f.core.device_features_word(1), 1);
    assert_eq!(f.core.device_features_word(2), 0);
    // Bits 4 and 40 were never offered.
    f.core.write_status(NEGOTIATING).unwrap();
    f.core
        .write_driver_features_word(0, 1 << 4 | 1 << 3)
        .unwrap();
    f.core.write_driver_features_word(1, 1 | 1 << 8).unwrap();
    assert_eq!(f.core.driver_features(), features::VERSION_1 | 1 << 3);
    // The device learns them only at FEATURES_OK.
    assert_eq!(f.seen.lock().unwrap().features, None);
    f.core.write_status(FEATURES_DONE).unwrap();
    assert_eq!(f.core.status(), FEATURES_DONE);
    assert_eq!(
        f.seen.lock().unwrap().features,
        Some(features::VERSION_1 | 1 << 3)
    );
}

#[test]
fn features_ok_needs_version_1_and_features_have_their_window() {
    let mut f = core(&[16], false);
    // Before DRIVER.
    assert_eq!(
        f.core.write_driver_features_word(1, 1),
        Err(DriverError::FeaturesNotNegotiating(0))
    );
    f.core.write_status(NEGOTIATING).unwrap();
    f.core.write_driver_features_word(0, 1 << 3).unwrap();
    assert_eq!(
        f.core.write_status(FEATURES_DONE),
        Err(DriverError::NoVersion1(1 << 3))
    );
    assert_eq!(
        f.core.status(),
        NEGOTIATING,
        "a refused status changes nothing"
    );
    f.core.write_driver_features_word(1, 1).unwrap();
    f.core.write_status(FEATURES_DONE).unwrap();
    // After FEATURES_OK.
    assert_eq!(
        f.core.write_driver_features_word(0, 0),
        Err(DriverError::FeaturesNotNegotiating(FEATURES_DONE))
    );
    assert_eq!(f.core.driver_features(), features::VERSION_1 | 1 << 3);
    // Clearing bits without a reset is refused.
    assert_eq!(
        f.core.write_status(status::ACKNOWLEDGE),
        Err(DriverError::StatusClearsBits {
            old: FEATURES_DONE,
            new: status::ACKNOWLEDGE
        })
    );
    assert_eq!(f.core.status(), FEATURES_DONE);
}

#[test]
fn activation_builds_the_queues_then_notifies_each_once() {
    let mut f = core(&[16, 8], false);
    negotiate(&mut f.core, 1 << 29); // RING_EVENT_IDX
    let a = DriverRing::new(&f.mem, 0x8000, 16);
    let b = DriverRing::new(&f.mem, 0x10000, 8);
    set_up_queue(&mut f.core, 0, &a);
    set_up_queue(&mut f.core, 1, &b);
    // A notify before DRIVER_OK reaches no device.
    assert_eq!(f.core.notify(1), Err(DriverError::NotActive(1)));
    assert!(f.seen.lock().unwrap().notifies.is_empty());
    f.core.write_status(ALL_OK).unwrap();
    assert_eq!(f.core.status(), ALL_OK);
    assert!(f.core.is_active());
    {
        let seen = f.seen.lock().unwrap();
        assert_eq!(
            seen.queues,
            vec![
                (a.desc, a.avail, a.used, 16, true),
                (b.desc, b.avail, b.used, 8, true)
            ]
        );
        assert_eq!(seen.notifies, [0, 1], "every queue once after activation");
    }
    f.core.notify(1).unwrap();
    assert_eq!(f.core.notify(2), Err(DriverError::NoSuchQueue(2)));
    assert_eq!(f.seen.lock().unwrap().notifies, [0, 1, 1]);
    // The configuration is frozen while the device runs.
    assert_eq!(
        f.core.configure_queue(0, true, |q| q.ready = false),
        Err(DriverError::QueueInUse(0))
    );
    assert_eq!(f.irq.config.load(Ordering::SeqCst), 0);
}

#[test]
fn queue_configuration_is_checked_as_it_is_written() {
    let mut f = core(&[16], false);
    for size in [0, 17, 0x1_0010] {
        assert_eq!(
            f.core.set_queue_size(0, size),
            Err(DriverError::QueueSize {
                index: 0,
                size,
                max: 16
            })
        );
    }
    assert_eq!(f.core.queues()[0].size, 16, "refused sizes change nothing");
    assert_eq!(
        f.core.set_queue_size(1, 8),
        Err(DriverError::NoSuchQueue(1))
    );
    f.core.set_queue_size(0, 8).unwrap();
    f.core.configure_queue(0, true, |q| q.ready = true).unwrap();
    // Ready: only the ready flag may change.
    assert_eq!(
        f.core.configure_queue(0, false, |q| q.desc = 0x1000),
        Err(DriverError::QueueInUse(0))
    );
    f.core
        .configure_queue(0, true, |q| q.ready = false)
        .unwrap();
    f.core
        .configure_queue(0, false, |q| q.desc = 0x1000)
        .unwrap();
    assert_eq!(f.core.queues()[0].desc, 0x1000);
}

#[test]
fn a_device_that_cannot_start_needs_a_reset_and_says_so() {
    // The device refuses.
    let mut f = core(&[16], true);
    negotiate(&mut f.core, 0);
    let ring = DriverRing::new(&f.mem, 0x8000, 16);
    set_up_queue(&mut f.core, 0, &ring);
    f.core.write_status(ALL_OK).unwrap();
    assert_eq!(f.core.status(), FEATURES_DONE | status::DEVICE_NEEDS_RESET);
    assert!(!f.core.is_active());
    assert_eq!(f.irq.config.load(Ordering::SeqCst), 1);
    // A queue outside guest memory.
    let mut f = core(&[16], false);
    negotiate(&mut f.core, 0);
    f.core
        .configure_queue(0, false, |q| {
            (q.desc, q.avail, q.used, q.ready) = (0xfff_0000_0000, 0x1000, 0x2000, true)
        })
        .unwrap();
    f.core.write_status(ALL_OK).unwrap();
    assert_eq!(f.core.status(), FEATURES_DONE | status::DEVICE_NEEDS_RESET);
    assert!(f.seen.lock().unwrap().queues.is_empty());
    // DRIVER_OK without FEATURES_OK.
    let mut f = core(&[16], false);
    f.core
        .write_status(NEGOTIATING | status::DRIVER_OK)
        .unwrap();
    assert_eq!(f.core.status(), NEGOTIATING | status::DEVICE_NEEDS_RESET);
}

#[test]
fn status_zero_resets_everything() {
    let mut f = core(&[16], false);
    negotiate(&mut f.core, 1 << 3);
    let ring = DriverRing::new(&f.mem, 0x8000, 16);
    set_up_queue(&mut f.core, 0, &ring);
    f.core.write_status(ALL_OK).unwrap();
    f.core.write_status(0).unwrap();
    assert_eq!(f.core.status(), 0);
    assert!(!f.core.is_active());
    assert_eq!(f.core.driver_features(), 0);
    assert_eq!(f.core.queues()[0], QueueConfig::new(16));
    assert_eq!(f.seen.lock().unwrap().resets, 1);
    assert_eq!(f.core.notify(0), Err(DriverError::NotActive(0)));
}
