// SPDX-License-Identifier: Apache-2.0
//! The ring against a real file and a pipe, where the host has io_uring; elsewhere, that
//! [`Ring::new`] says so.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;

/// A ring, or `None` where io_uring is missing (not built for the target; qemu-user and
/// kernels without it say ENOSYS, seccomp or the sysctl EPERM).
fn ring(capacity: u32) -> Option<Ring> {
    match Ring::new(capacity) {
        Ok(r) => Some(r),
        Err(e) => {
            let missing = e.kind() == std::io::ErrorKind::Unsupported
                || matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM));
            assert!(missing, "io_uring_setup: {e}");
            None
        }
    }
}

fn wait_for(ring: &mut Ring, n: usize) -> Vec<Completion> {
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < n {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out");
        ring.wait(Duration::from_millis(100));
        ring.reap(&mut out);
    }
    out
}

#[test]
fn reads_writes_and_syncs_into_guest_memory_out_of_the_callers_way() {
    let Some(mut ring) = ring(4) else { return };
    assert_eq!(ring.capacity(), 4);
    let path = std::env::temp_dir().join(format!("block-io-uring-{}", std::process::id()));
    let data: Vec<u8> = (0..8192).map(|i| (i * 5 + 1) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let file = Arc::new(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap(),
    );
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    // Two pieces of one read, and a write from elsewhere in memory.
    mem.write_slice(&[0xabu8; 512], GuestAddress(0x8000))
        .unwrap();
    ring.transfer(
        Direction::Read,
        &file,
        1024,
        &mem,
        &[(GuestAddress(0x1000), 100), (GuestAddress(0x3000), 412)],
        7,
    )
    .unwrap();
    ring.transfer(
        Direction::Write,
        &file,
        4096,
        &mem,
        &[(GuestAddress(0x8000), 512)],
        8,
    )
    .unwrap();
    assert_eq!(ring.in_flight(), 2);
    // Outside guest memory: refused before anything is queued.
    let e = ring
        .transfer(
            Direction::Read,
            &file,
            0,
            &mem,
            &[(GuestAddress(0xff00), 512)],
            9,
        )
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EFAULT));
    assert_eq!(ring.in_flight(), 2);
    ring.submit().unwrap();
    let mut done = wait_for(&mut ring, 2);
    done.sort_by_key(|c| c.tag);
    assert_eq!(done[0].tag, 7);
    assert_eq!(*done[0].result.as_ref().unwrap(), 512);
    assert_eq!(*done[1].result.as_ref().unwrap(), 512);
    let mut got = vec![0u8; 100];
    mem.read_slice(&mut got, GuestAddress(0x1000)).unwrap();
    assert_eq!(got, data[1024..1124]);
    let mut got = vec![0u8; 412];
    mem.read_slice(&mut got, GuestAddress(0x3000)).unwrap();
    assert_eq!(got, data[1124..1536]);
    assert_eq!(std::fs::read(&path).unwrap()[4096..4608], [0xab; 512]);
    ring.fdatasync(&file, 10).unwrap();
    ring.submit().unwrap();
    let done = wait_for(&mut ring, 1);
    assert_eq!((done[0].tag, done[0].result.as_ref().ok()), (10, Some(&0)));
    assert_eq!(ring.in_flight(), 0);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn the_capacity_bounds_what_is_in_flight_and_a_drain_cancels_what_waits() {
    let Some(mut ring) = ring(2) else { return };
    let (rx, mut tx) = std::io::pipe().unwrap();
    let rx = File::from(std::os::fd::OwnedFd::from(rx));
    let rx = Arc::new(rx);
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    // Pipe reads wait for data that never comes (offset -1: the pipe has no position).
    for tag in 0..2 {
        ring.transfer(
            Direction::Read,
            &rx,
            u64::MAX,
            &mem,
            &[(GuestAddress(0x1000), 16)],
            tag,
        )
        .unwrap();
    }
    let e = ring
        .transfer(
            Direction::Read,
            &rx,
            u64::MAX,
            &mem,
            &[(GuestAddress(0x1000), 16)],
            2,
        )
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "the bound");
    ring.submit().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mut out = Vec::new();
    ring.reap(&mut out);
    assert!(out.is_empty());
    assert_eq!(ring.in_flight(), 2);
    let t0 = Instant::now();
    let (done, left) = ring.drain(Duration::from_secs(5));
    assert_eq!(left, 0);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "cancelled, not waited out"
    );
    assert_eq!(done.len(), 2);
    for c in &done {
        assert_eq!(
            c.result.as_ref().unwrap_err().raw_os_error(),
            Some(libc::ECANCELED)
        );
    }
    assert_eq!(ring.in_flight(), 0);
    // Room again.
    ring.transfer(
        Direction::Read,
        &rx,
        u64::MAX,
        &mem,
        &[(GuestAddress(0x1000), 4)],
        3,
    )
    .unwrap();
    ring.submit().unwrap();
    tx.write_all(b"abcd").unwrap();
    let done = wait_for(&mut ring, 1);
    assert_eq!(*done[0].result.as_ref().unwrap(), 4);
    let mut got = [0u8; 4];
    mem.read_slice(&mut got, GuestAddress(0x1000)).unwrap();
    assert_eq!(&got, b"abcd");
}
