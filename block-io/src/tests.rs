// SPDX-License-Identifier: Apache-2.0
//! The wrappers against real files in the temporary directory.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::*;

fn temp(name: &str, contents: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("block-io-{}-{name}", std::process::id()));
    let mut f = File::create(&path).unwrap();
    f.write_all(contents).unwrap();
    path
}

fn mem() -> GuestMemoryMmap<()> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn reads_into_several_slices_at_an_offset() {
    let data = pattern(4096);
    let path = temp("read", &data);
    let file = File::open(&path).unwrap();
    let m = mem();
    let a = m.get_slice(GuestAddress(0x1000), 100).unwrap();
    let b = m.get_slice(GuestAddress(0x3000), 0).unwrap();
    let c = m.get_slice(GuestAddress(0x2000), 412).unwrap();
    read_all_at(&file, 512, &[a, b, c]).unwrap();
    let mut got = vec![0; 100];
    m.read_slice(&mut got, GuestAddress(0x1000)).unwrap();
    assert_eq!(got, data[512..612]);
    let mut got = vec![0; 412];
    m.read_slice(&mut got, GuestAddress(0x2000)).unwrap();
    assert_eq!(got, data[612..1024]);
    // Nothing to do, and only empty buffers: no call.
    read_all_at::<()>(&file, 0, &[]).unwrap();
    read_all_at(&file, 0, &[m.get_slice(GuestAddress(0), 0).unwrap()]).unwrap();
    // Past the end of the file: an error, not a silent short read.
    let d = m.get_slice(GuestAddress(0x4000), 1024).unwrap();
    let e = read_all_at(&file, 3584, &[d]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn writes_from_several_slices_and_more_than_iov_max() {
    let path = temp("write", &[0u8; 8192]);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let m = mem();
    let data = pattern(2048);
    m.write_slice(&data, GuestAddress(0x1000)).unwrap();
    // 2048 one-byte slices: more than one pwritev.
    let slices: Vec<_> = (0..2048)
        .map(|i| m.get_slice(GuestAddress(0x1000 + i), 1).unwrap())
        .collect();
    write_all_at(&file, 1000, &slices).unwrap();
    let back = std::fs::read(&path).unwrap();
    assert_eq!(back[1000..3048], data[..]);
    assert!(back[..1000].iter().all(|&b| b == 0));
    assert!(back[3048..].iter().all(|&b| b == 0));
    std::fs::remove_file(path).unwrap();
}

#[test]
fn ofd_locks_conflict_between_opens_and_are_shared_by_clones() {
    let path = temp("lock", &[0u8; 512]);
    let rw = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap()
    };
    let first = rw();
    lock_whole_file(&first, Lock::Exclusive).unwrap();
    // Another open of the same file, even in this process, is refused.
    let second = rw();
    let e = lock_whole_file(&second, Lock::Shared).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    // A clone shares the open file description and so the lock.
    let clone = first.try_clone().unwrap();
    drop(first);
    assert_eq!(
        lock_whole_file(&second, Lock::Exclusive)
            .unwrap_err()
            .kind(),
        io::ErrorKind::WouldBlock
    );
    drop(clone);
    // Shared locks coexist; an exclusive one then cannot be taken.
    lock_whole_file(&second, Lock::Shared).unwrap();
    let third = File::open(&path).unwrap();
    lock_whole_file(&third, Lock::Shared).unwrap();
    let fourth = rw();
    assert_eq!(
        lock_whole_file(&fourth, Lock::Exclusive)
            .unwrap_err()
            .kind(),
        io::ErrorKind::WouldBlock
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn block_ioctls_on_a_regular_file_fail_cleanly() {
    let path = temp("ioctl", &[0u8; 4096]);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    assert!(block_discard(&file, 0, 512).is_err());
    assert!(block_zeroout(&file, 0, 512).is_err());
    assert!(block_logical_size(&file).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), vec![0u8; 4096]);
    std::fs::remove_file(path).unwrap();
}
