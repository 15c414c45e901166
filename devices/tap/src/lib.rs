// SPDX-License-Identifier: Apache-2.0
//! The Linux TUN/TAP calls Polyvisor's virtio-net needs that have no safe wrapper in std or
//! vmm-sys-util: attaching to a tap (`TUNSETIFF` with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`,
//! creating it when it does not exist and the process may), the virtio-net header's size
//! and byte order (`TUNSETVNETHDRSZ`, `TUNSETVNETLE`), offloads (`TUNSETOFFLOAD`), the host
//! side's IPv4 address, netmask and link state (`SIOCSIFADDR`, `SIOCSIFNETMASK`,
//! `SIOCGIFFLAGS`/`SIOCSIFFLAGS` on an `AF_INET` socket), and `writev` of one packet
//! gathered straight from guest memory ([`VolatileSlice`]s, no bounce buffer).
//!
//! Why a crate of its own: `devices` is `#![forbid(unsafe_code)]` and should stay so; each
//! call here takes a pointer to a C struct, so each needs one `unsafe` block, behind a safe
//! function whose arguments make it sound. Reading a packet is `read(2)` on the tap's
//! [`File`], already safe in std.
//!
//! Chosen over a crates.io tap crate: `tun-rs` and `tun`/`tun-tap` are built around their own
//! buffers and async runtimes (no vectored write from guest memory, no `TUNSETVNETLE`),
//! and Cloud Hypervisor's `net_util` is not published. The ioctl numbers come from `libc`.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::VolatileSlice;

/// Bytes of the virtio 1.x network header (`struct virtio_net_hdr_v1`, with `num_buffers`)
/// the tap puts before every packet it gives and expects before every packet it takes.
pub const VNET_HDR_LEN: usize = 12;

/// `TUNSETOFFLOAD` flags: the tap may hand over packets with a partial checksum
/// ([`TUN_F_CSUM`]), TCP segments larger than the MTU over IPv4 and IPv6.
pub const TUN_F_CSUM: u32 = libc::TUN_F_CSUM;
pub const TUN_F_TSO4: u32 = libc::TUN_F_TSO4;
pub const TUN_F_TSO6: u32 = libc::TUN_F_TSO6;

/// The longest interface name Linux takes (`IFNAMSIZ` less the terminator).
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// Why a tap could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0:?} is not a valid interface name (1 to 15 bytes, no '/', '%', ':' or blanks)")]
    BadName(String),
    #[error("cannot open /dev/net/tun: {0}")]
    Tun(io::Error),
    #[error("no such device: there is no tap {0:?}, and creating one needs CAP_NET_ADMIN")]
    NoSuchDevice(String),
    #[error("no permission to attach to tap {0:?} (it belongs to another user or group; needs CAP_NET_ADMIN)")]
    NoPermission(String),
    #[error("tap {0:?} is busy: another process has it open")]
    Busy(String),
    #[error("{0:?} exists and is not a single-queue tap")]
    NotATap(String),
    #[error("attaching to tap {name:?}: {source}")]
    Other { name: String, source: io::Error },
}

/// An attached tap: a non-blocking file descriptor that reads and writes one Ethernet frame
/// per call, each after a [`VNET_HDR_LEN`]-byte little-endian virtio-net header.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    created: bool,
}

/// Whether `name` is one Linux accepts and that `TUNSETIFF` takes literally (`%` would
/// make the kernel pick a name of its own).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b'%' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// Whether a network interface called `name` exists in this thread's network namespace.
pub fn interface_exists(name: &str) -> bool {
    valid_name(name) && interface_flags(name).is_ok()
}

/// The flags (`IFF_UP`, ...) of the interface `name` (`SIOCGIFFLAGS`); `ENODEV` when there
/// is no such interface.
pub fn interface_flags(name: &str) -> io::Result<libc::c_short> {
    let sock = inet_socket()?;
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFFLAGS writes one `struct ifreq` through the pointer, which points
    // to a local `ifreq` living across the call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), sioc(libc::SIOCGIFFLAGS), &mut req) })?;
    // SAFETY: SIOCGIFFLAGS set the `ifru_flags` member; reading it is reading an
    // initialised `c_short`.
    Ok(unsafe { req.ifr_ifru.ifru_flags })
}

/// `IFF_UP` in [`interface_flags`].
pub const IFF_UP: libc::c_short = libc::IFF_UP as libc::c_short;

/// An all-zero `ifreq` naming `name` (which [`valid_name`] accepted).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is a name array and a union of integers, arrays and a pointer; all
    // zero bytes is a valid value of each (a null `ifru_data` is never dereferenced here).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// A socket ioctl's request number as `ioctl` takes it. `libc` gives the `SIOC*` numbers as
/// `c_ulong`, while `ioctl`'s request parameter is `libc::Ioctl`: `c_ulong` on glibc,
/// `c_int` on musl (the static release build). The numbers are below `0x9000`, so the
/// conversion is exact on both (and a no-op on glibc).
fn sioc(request: libc::c_ulong) -> libc::Ioctl {
    request as libc::Ioctl
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `ioctl(fd, request, &int)` for the tap requests that take an `int` by pointer.
fn ioctl_int(file: &File, request: libc::Ioctl, value: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ and TUNSETVNETLE read one `int` through the pointer, which
    // points to a local `c_int` living across the call; they write nothing.
    check(unsafe { libc::ioctl(file.as_raw_fd(), request, &value) })
}

impl Tap {
    /// Attach to the tap `name`, creating it when there is none and the process may
    /// (CAP_NET_ADMIN: a tap created here goes away when the last descriptor closes), with
    /// 12-byte little-endian virtio-net headers and no offloads.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        if !valid_name(name) {
            return Err(OpenError::BadName(name.to_string()));
        }
        let existed = interface_exists(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(OpenError::Tun)?;
        let mut req = ifreq(name);
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as _;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq` through the pointer, which
        // points to a local `ifreq` living across the call.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if let Err(e) = check(r) {
            let name = name.to_string();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) if existed => OpenError::NoPermission(name),
                Some(libc::EPERM) | Some(libc::EACCES) => OpenError::NoSuchDevice(name),
                Some(libc::EBUSY) => OpenError::Busy(name),
                Some(libc::EINVAL) if existed => OpenError::NotATap(name),
                _ => OpenError::Other { name, source: e },
            });
        }
        let other = |source| OpenError::Other {
            name: name.to_string(),
            source,
        };
        ioctl_int(&file, libc::TUNSETVNETHDRSZ, VNET_HDR_LEN as libc::c_int).map_err(other)?;
        // Virtio 1.x headers are little-endian on every host; without this a big-endian
        // host's tap would use its own byte order.
        ioctl_int(&file, libc::TUNSETVNETLE, 1).map_err(other)?;
        let tap = Self {
            file,
            name: name.to_string(),
            created: !existed,
        };
        tap.set_offload(0).map_err(other)?;
        Ok(tap)
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether [`Tap::open`] created the interface (it did not exist before).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The tap's file: `read(2)` gives one header and frame (`WouldBlock` when none is
    /// queued); poll it for readability.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Which offloads the tap may use towards the reader (`TUN_F_*`): with none, it hands
    /// over only whole, checksummed packets.
    pub fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long) and touches
        // no memory of ours.
        check(unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        })
    }

    /// Give the host side the IPv4 address `addr` with netmask `mask` (CAP_NET_ADMIN).
    pub fn set_ipv4(&self, addr: Ipv4Addr, mask: Ipv4Addr) -> io::Result<()> {
        let sock = inet_socket()?;
        for (request, value) in [(libc::SIOCSIFADDR, addr), (libc::SIOCSIFNETMASK, mask)] {
            let mut req = ifreq(&self.name);
            // A `sockaddr_in` in the union's `sockaddr`: family, port (0), address.
            let mut sa_data = [0 as libc::c_char; 14];
            for (dst, src) in sa_data[2..6].iter_mut().zip(value.octets()) {
                *dst = src as libc::c_char;
            }
            req.ifr_ifru.ifru_addr = libc::sockaddr {
                sa_family: libc::AF_INET as libc::sa_family_t,
                sa_data,
            };
            // SAFETY: SIOCSIFADDR and SIOCSIFNETMASK read one `struct ifreq` through the
            // pointer, which points to a local `ifreq` living across the call.
            check(unsafe { libc::ioctl(sock.as_raw_fd(), sioc(request), &req) })?;
        }
        Ok(())
    }

    /// Bring the interface up (`IFF_UP`; CAP_NET_ADMIN).
    pub fn set_up(&self) -> io::Result<()> {
        let flags = interface_flags(&self.name)?;
        let sock = inet_socket()?;
        let mut req = ifreq(&self.name);
        req.ifr_ifru.ifru_flags = flags | IFF_UP;
        // SAFETY: SIOCSIFFLAGS reads one `struct ifreq` through the pointer, as above.
        check(unsafe { libc::ioctl(sock.as_raw_fd(), sioc(libc::SIOCSIFFLAGS), &req) })
    }

    /// Write one packet (header and frame) gathered from `bufs`; see [`write_packet`].
    pub fn write_packet<B: BitmapSlice>(&self, bufs: &[VolatileSlice<'_, B>]) -> io::Result<usize> {
        write_packet(&self.file, bufs)
    }
}

/// A datagram socket to name interfaces in `SIOC*` requests.
fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; a non-negative result is a new descriptor that
    // nothing else owns, so `OwnedFd` may take it.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above: `fd` is a fresh, open descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The most buffers one packet may be gathered from (Linux's `IOV_MAX`).
pub const IOV_MAX: usize = 1024;

/// Write `bufs`, in order, as one packet with one `writev(2)` (a tap or a datagram socket
/// takes a packet per call, so it cannot be split); returns the bytes written. More than
/// [`IOV_MAX`] buffers is `InvalidInput`.
pub fn write_packet<F: AsRawFd, B: BitmapSlice>(
    fd: &F,
    bufs: &[VolatileSlice<'_, B>],
) -> io::Result<usize> {
    if bufs.len() > IOV_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} buffers in one packet (at most {IOV_MAX})", bufs.len()),
        ));
    }
    let guards: Vec<_> = bufs.iter().map(|b| b.ptr_guard()).collect();
    let iov: Vec<libc::iovec> = guards
        .iter()
        .zip(bufs)
        .map(|(g, b)| libc::iovec {
            iov_base: g.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    loop {
        // SAFETY: every iovec points into a VolatileSlice of `bufs`, borrowed (so mapped and
        // valid for its whole length) for the call, its guard held; the kernel only reads
        // them. The count is at most IOV_MAX, so it fits a c_int.
        let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests;
