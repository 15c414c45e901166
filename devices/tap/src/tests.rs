// SPDX-License-Identifier: Apache-2.0
//! The wrappers against a datagram socket pair and, where the process may (root), real taps
//! in a network namespace of the test's own, so no host interface is touched.

use std::io::Read;
use std::os::unix::net::UnixDatagram;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::*;

fn mem() -> GuestMemoryMmap<()> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
}

#[test]
fn a_packet_is_gathered_from_several_slices_in_one_write() {
    let (a, b) = UnixDatagram::pair().unwrap();
    let m = mem();
    m.write_slice(b"hello ", GuestAddress(0x1000)).unwrap();
    m.write_slice(b"guest", GuestAddress(0x3000)).unwrap();
    let s1 = m.get_slice(GuestAddress(0x1000), 6).unwrap();
    let empty = m.get_slice(GuestAddress(0x2000), 0).unwrap();
    let s2 = m.get_slice(GuestAddress(0x3000), 5).unwrap();
    assert_eq!(write_packet(&a, &[s1, empty, s2]).unwrap(), 11);
    let mut got = [0u8; 64];
    assert_eq!(b.recv(&mut got).unwrap(), 11);
    assert_eq!(&got[..11], b"hello guest");
    // Too many buffers is refused before any call.
    let many = vec![s1; IOV_MAX + 1];
    let e = write_packet(&a, &many).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn names() {
    assert!(valid_name("tap0"));
    assert!(valid_name("a23456789012345"));
    for bad in [
        "",
        "a234567890123456",
        "tap%d",
        "a/b",
        "a b",
        ".",
        "..",
        "eth0:1",
    ] {
        assert!(!valid_name(bad), "{bad:?}");
        assert!(
            matches!(Tap::open(bad), Err(OpenError::BadName(_))),
            "{bad:?}"
        );
    }
    assert!(!interface_exists("pv-no-such-if"));
    assert!(interface_exists("lo"));
}

/// Run `f` on a thread of its own in a new network namespace (namespaces are per thread),
/// or say why not and return `None`.
fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    if !std::path::Path::new("/dev/net/tun").exists() {
        eprintln!("skipped: no /dev/net/tun");
        return None;
    }
    std::thread::spawn(move || {
        // SAFETY: unshare takes no pointers; it moves only this thread into a new network
        // namespace, which goes away with the thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            eprintln!(
                "skipped: no network namespace of our own ({}; needs root)",
                io::Error::last_os_error()
            );
            return None;
        }
        Some(f())
    })
    .join()
    .unwrap()
}

#[test]
fn creates_configures_and_reads_a_tap_in_its_own_namespace() {
    in_private_netns(|| {
        assert!(!interface_exists("pvtest0"));
        let tap = Tap::open("pvtest0").unwrap();
        assert!(tap.created());
        assert_eq!(tap.name(), "pvtest0");
        assert!(interface_exists("pvtest0"));
        // The same single-queue tap twice: busy.
        assert!(matches!(Tap::open("pvtest0"), Err(OpenError::Busy(_))));
        // An interface that is not a tap.
        assert!(matches!(Tap::open("lo"), Err(OpenError::NotATap(_))));
        tap.set_offload(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
            .unwrap();
        tap.set_offload(0).unwrap();
        assert_eq!(interface_flags("pvtest0").unwrap() & IFF_UP, 0);
        tap.set_ipv4(
            Ipv4Addr::new(192, 168, 77, 1),
            Ipv4Addr::new(255, 255, 255, 0),
        )
        .unwrap();
        tap.set_up().unwrap();
        assert_ne!(interface_flags("pvtest0").unwrap() & IFF_UP, 0);
        // Nothing queued yet: a non-blocking read says so.
        let mut buf = [0u8; 2048];
        let e = tap.file().read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // A frame written with a header of zeros goes out (the kernel takes it).
        let m = mem();
        let mut frame = vec![0u8; VNET_HDR_LEN];
        frame.extend_from_slice(&[0xff; 6]); // broadcast
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        frame.extend_from_slice(&[0x08, 0x06]); // ARP
        frame.extend_from_slice(&[0; 28]);
        m.write_slice(&frame, GuestAddress(0)).unwrap();
        let s = m.get_slice(GuestAddress(0), frame.len()).unwrap();
        assert_eq!(tap.write_packet(&[s]).unwrap(), frame.len());
        drop(tap);
        // Created here, so gone with the last descriptor.
        assert!(!interface_exists("pvtest0"));
    });
}
