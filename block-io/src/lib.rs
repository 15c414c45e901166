// SPDX-License-Identifier: Apache-2.0
//! The few block I/O system calls Polyvisor's virtio-blk needs that have no safe wrapper in
//! std or vmm-sys-util: vectored positional I/O straight into guest memory (`preadv`,
//! `pwritev` on [`VolatileSlice`]s, no bounce buffer), `BLKDISCARD`/`BLKZEROOUT`/`BLKSSZGET`
//! on host block devices, whole-file open-file-description locks (`F_OFD_SETLK`), and an
//! io_uring ring ([`uring::Ring`]) that keeps reads, writes and `fdatasync`s in flight.
//!
//! Why a crate of its own: `devices` is `#![forbid(unsafe_code)]` and should stay so; these
//! calls take raw pointers or C structs, so each needs one `unsafe` block. They live here,
//! each behind a safe function whose arguments make the call sound (a [`VolatileSlice`]
//! is valid memory for its whole length while it is borrowed; the `ioctl`s get pointers to
//! locals of exactly the type the kernel reads or writes). `fallocate` (punch hole, zero
//! range) is already safe in vmm-sys-util and used from there.
//!
//! The `ioctl` numbers are those of the generic `_IO` encoding (x86_64, aarch64, s390x, the
//! hosts Polyvisor runs on).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::VolatileSlice;

/// `BLKDISCARD`: `_IO(0x12, 119)`; takes `u64[2]` = {offset, length} in bytes.
const BLKDISCARD: libc::Ioctl = 0x1277;
/// `BLKZEROOUT`: `_IO(0x12, 127)`; takes `u64[2]` = {offset, length} in bytes.
const BLKZEROOUT: libc::Ioctl = 0x127f;

/// The most buffers one `preadv`/`pwritev` takes (Linux's `IOV_MAX`); longer lists are
/// done in several calls.
pub const IOV_MAX: usize = 1024;

/// Which direction a vectored transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    /// File to memory.
    Read,
    /// Memory to file.
    Write,
}

/// Read from `file` at `offset` into `bufs`, in order, until every buffer is full.
/// A file that ends first is an `UnexpectedEof` error (what was read stays in the buffers).
pub fn read_all_at<B: BitmapSlice>(
    file: &File,
    offset: u64,
    bufs: &[VolatileSlice<'_, B>],
) -> io::Result<()> {
    transfer_all(file, offset, bufs, Dir::Read)
}

/// Write every byte of `bufs`, in order, to `file` at `offset`.
pub fn write_all_at<B: BitmapSlice>(
    file: &File,
    offset: u64,
    bufs: &[VolatileSlice<'_, B>],
) -> io::Result<()> {
    transfer_all(file, offset, bufs, Dir::Write)
}

fn transfer_all<B: BitmapSlice>(
    file: &File,
    mut offset: u64,
    bufs: &[VolatileSlice<'_, B>],
    dir: Dir,
) -> io::Result<()> {
    // (buffer index, bytes of it already done)
    let mut at = (0usize, 0usize);
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(bufs.len().min(IOV_MAX));
    loop {
        // Empty buffers need no call (and a call with nothing to do would return 0).
        while at.0 < bufs.len() && bufs[at.0].is_empty() {
            at = (at.0 + 1, 0);
        }
        if at.0 == bufs.len() {
            return Ok(());
        }
        iov.clear();
        let (first, skip) = at;
        for (i, buf) in bufs[first..].iter().take(IOV_MAX).enumerate() {
            let skip = if i == 0 { skip } else { 0 };
            let guard = buf.ptr_guard_mut();
            iov.push(libc::iovec {
                iov_base: guard.as_ptr().wrapping_add(skip).cast(),
                iov_len: buf.len() - skip,
            });
        }
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let n = match dir {
            // SAFETY: every iovec points into a VolatileSlice of `bufs`, which stays borrowed
            // (so mapped and valid for its whole length) for the call; `skip` is less than
            // the slice's length, so base + len stays inside it. The kernel writes at most
            // `iov_len` bytes to each. The count fits a c_int (at most IOV_MAX).
            Dir::Read => unsafe {
                libc::preadv(
                    file.as_raw_fd(),
                    iov.as_ptr(),
                    iov.len() as libc::c_int,
                    off,
                )
            },
            // SAFETY: as above; the kernel only reads the buffers.
            Dir::Write => unsafe {
                libc::pwritev(
                    file.as_raw_fd(),
                    iov.as_ptr(),
                    iov.len() as libc::c_int,
                    off,
                )
            },
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut n = n as usize;
        if n == 0 {
            return Err(match dir {
                Dir::Read => io::Error::new(io::ErrorKind::UnexpectedEof, "end of file"),
                Dir::Write => io::Error::new(io::ErrorKind::WriteZero, "wrote nothing"),
            });
        }
        offset += n as u64;
        // Advance past what was done, marking what was read into guest memory dirty.
        while n > 0 && at.0 < bufs.len() {
            let buf = &bufs[at.0];
            let step = (buf.len() - at.1).min(n);
            if dir == Dir::Read {
                buf.bitmap().mark_dirty(at.1, step);
            }
            n -= step;
            at.1 += step;
            if at.1 == buf.len() {
                at = (at.0 + 1, 0);
            }
        }
    }
}

fn range_ioctl(file: &File, request: libc::Ioctl, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKDISCARD and BLKZEROOUT read a `u64[2]` through the pointer, which points
    // to a local of exactly that type that lives across the call; they write nothing.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), request, range.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Discard (`BLKDISCARD`) `len` bytes at `offset` of the host block device `file`.
pub fn block_discard(file: &File, offset: u64, len: u64) -> io::Result<()> {
    range_ioctl(file, BLKDISCARD, offset, len)
}

/// Zero (`BLKZEROOUT`) `len` bytes at `offset` of the host block device `file`.
pub fn block_zeroout(file: &File, offset: u64, len: u64) -> io::Result<()> {
    range_ioctl(file, BLKZEROOUT, offset, len)
}

/// The logical block size (`BLKSSZGET`) of the host block device `file`.
pub fn block_logical_size(file: &File) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one `int` through the pointer, which points to a local
    // `c_int` that lives across the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::BLKSSZGET, &mut size) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// How a whole file is locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// Others may read-lock it too, nobody may write-lock it.
    Shared,
    /// Nobody else may lock any of it.
    Exclusive,
}

/// Lock all of `file` (present and future bytes) with an open-file-description lock
/// (`F_OFD_SETLK`), without waiting: held until every descriptor of this open file is
/// closed, shared by `dup`s and `try_clone`s, conflicting with locks of any other open file
/// description (other processes', and this one's other opens of the same file). A lock held
/// elsewhere is `WouldBlock`. An exclusive lock needs `file` open for writing.
pub fn lock_whole_file(file: &File, lock: Lock) -> io::Result<()> {
    let kind = match lock {
        Lock::Shared => libc::F_RDLCK,
        Lock::Exclusive => libc::F_WRLCK,
    };
    // SAFETY: all-zero bytes are a valid `flock` (integers only).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // to the end, however the file grows
    fl.l_pid = 0; // required by F_OFD_SETLK
                  // SAFETY: F_OFD_SETLK reads one `struct flock` through the pointer, which points to a
                  // local of that type that lives across the call.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r < 0 {
        let e = io::Error::last_os_error();
        // EAGAIN or EACCES: held by someone else.
        if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, e));
        }
        return Err(e);
    }
    Ok(())
}

/// Clear `O_NONBLOCK` on `file` (`F_SETFL`). A disk image is opened with it so that
/// opening a FIFO cannot block, but io_uring takes the flag at its word: a read or write of
/// a file marked non-blocking that would wait for the disk completes with `EAGAIN` instead
/// of waiting.
pub fn clear_nonblock(file: &File) -> io::Result<()> {
    // SAFETY: F_GETFL and F_SETFL take no pointers; the descriptor is open for the call.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The `open(2)` flag for direct I/O (`O_DIRECT`), for `OpenOptionsExt::custom_flags`.
pub const O_DIRECT: i32 = libc::O_DIRECT;
/// The `open(2)` flag that keeps opening a FIFO from blocking (`O_NONBLOCK`; regular files
/// and block devices ignore it).
pub const O_NONBLOCK: i32 = libc::O_NONBLOCK;
/// "Operation not supported" (`EOPNOTSUPP`), what `fallocate` says for a mode the
/// filesystem lacks.
pub const EOPNOTSUPP: i32 = libc::EOPNOTSUPP;

pub mod uring;

#[cfg(test)]
mod tests;
