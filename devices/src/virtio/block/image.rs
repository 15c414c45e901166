// SPDX-License-Identifier: Apache-2.0
//! A disk image: a raw regular file or host block device, opened, checked and locked once,
//! and the I/O the device does on it ([`IoBackend`]).
//!
//! Opening refuses what cannot be a disk before anything is opened (a directory, a FIFO, a
//! character device, a socket: opening a FIFO would block), then opens without blocking
//! (`O_NONBLOCK`, cleared once open: io_uring would answer `EAGAIN` on a non-blocking
//! file) and checks the type again on the open file. The size must be a whole number of 512-byte sectors.
//!
//! Locking: an open-file-description lock (`F_OFD_SETLK`) on the whole file, shared for a
//! read-only disk and exclusive otherwise, taken without waiting: a second Polyvisor (or
//! QEMU, whose file-posix locks bytes of the same file) cannot open the image for writing
//! behind this one's back, and read-only users can share it. The lock lives as long as any
//! clone of the image's file descriptors (the device's worker holds one).
//!
//! `direct=on` adds a second descriptor opened with `O_DIRECT`: reads and writes whose
//! offset, length and every guest buffer are aligned to [`DiskImage::direct_alignment`]
//! go through it, bypassing the host's page cache; anything else (an odd guest buffer)
//! goes through the ordinary descriptor rather than a bounce buffer. Linux keeps the two
//! coherent: direct I/O writes back and invalidates cached pages of its range first.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vm_memory::VolatileSlice;
use vmm_sys_util::fallocate::{fallocate, FallocateMode};

/// Bytes in a virtio-blk sector (always 512, whatever the logical block size).
pub const SECTOR_SIZE: u64 = 512;

/// Why a disk image cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path:?}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path:?} is a directory, not a disk image")]
    Directory { path: PathBuf },
    #[error("{path:?} is a {kind}, not a regular file or block device")]
    NotADisk { path: PathBuf, kind: &'static str },
    #[error("{path:?}: its size, {size} bytes, is not a whole number of 512-byte sectors")]
    Size { path: PathBuf, size: u64 },
    #[error("{path:?} is locked by another process (another VMM using the image?)")]
    Locked { path: PathBuf },
    #[error("{path:?}: direct=on: opening with O_DIRECT failed ({source}); does its filesystem support direct I/O? (tmpfs does not)")]
    Direct {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path:?}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// How to open an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageOptions {
    pub readonly: bool,
    /// Open with `O_DIRECT` too (see the module documentation).
    pub direct: bool,
}

/// What identifies a host file whatever path names it (hard links, symlinks, `..`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileIdentity {
    /// A regular file: its device and inode.
    File { dev: u64, ino: u64 },
    /// A block device: its device number (two nodes of one device are one disk).
    Block { rdev: u64 },
}

impl FileIdentity {
    fn of(meta: &std::fs::Metadata) -> Self {
        if meta.file_type().is_block_device() {
            Self::Block { rdev: meta.rdev() }
        } else {
            Self::File {
                dev: meta.dev(),
                ino: meta.ino(),
            }
        }
    }

    /// The identity of the file `path` names (following symlinks), without opening it.
    pub fn of_path(path: &Path) -> io::Result<Self> {
        std::fs::metadata(path).map(|m| Self::of(&m))
    }
}

/// The I/O a virtio-blk device does on its backing: done by these calls, one at a time, or,
/// where the backend names its files ([`IoBackend::queued_flush_file`]), submitted to an
/// io_uring and kept in flight (see the block module's `engine`).
pub trait IoBackend: Send + Sync {
    /// Size in bytes (a whole number of sectors).
    fn capacity(&self) -> u64;
    /// Whether writes are refused.
    fn readonly(&self) -> bool;
    /// Read `bufs.len()` buffers' worth at `offset` into guest memory.
    fn read_at(&self, offset: u64, bufs: &[VolatileSlice<'_, ()>]) -> io::Result<()>;
    /// Write the buffers at `offset`.
    fn write_at(&self, offset: u64, bufs: &[VolatileSlice<'_, ()>]) -> io::Result<()>;
    /// Make every completed write durable (`fdatasync`).
    fn flush(&self) -> io::Result<()>;
    /// Let the backing drop `len` bytes at `offset` (they read as zeros afterwards on a
    /// regular file; unspecified on a block device, as the specification allows).
    fn discard(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Make `len` bytes at `offset` read as zeros, deallocating them when `unmap`.
    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> io::Result<()>;
    /// The file a flush's `fdatasync` goes to when the device keeps requests in flight
    /// (io_uring); `None` (the default) when this backend wants them done one at a time
    /// with the calls above, and the device sets up no ring.
    fn queued_flush_file(&self) -> Option<Arc<File>> {
        None
    }
    /// The file a read or write of `bufs` at `offset` goes to when kept in flight; `None`
    /// (the default) to do it with [`IoBackend::read_at`] / [`IoBackend::write_at`].
    fn queued_file(&self, _offset: u64, _bufs: &[VolatileSlice<'_, ()>]) -> Option<Arc<File>> {
        None
    }
}

/// An opened, checked and locked raw image.
#[derive(Debug)]
pub struct DiskImage {
    path: PathBuf,
    file: Arc<File>,
    /// The `O_DIRECT` descriptor, with `direct=on`.
    direct: Option<Arc<File>>,
    direct_alignment: u64,
    identity: FileIdentity,
    block_device: bool,
    capacity: u64,
    readonly: bool,
}

fn kind_of(ft: &std::fs::FileType) -> Option<&'static str> {
    if ft.is_file() || ft.is_block_device() {
        None
    } else if ft.is_fifo() {
        Some("FIFO")
    } else if ft.is_char_device() {
        Some("character device")
    } else if ft.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    }
}

impl DiskImage {
    /// Open, check and lock the image at `path`.
    pub fn open(path: &Path, options: &ImageOptions) -> Result<Self, ImageError> {
        let p = || path.to_path_buf();
        let check = |meta: &std::fs::Metadata| -> Result<(), ImageError> {
            let ft = meta.file_type();
            if ft.is_dir() {
                return Err(ImageError::Directory { path: p() });
            }
            if let Some(kind) = kind_of(&ft) {
                return Err(ImageError::NotADisk { path: p(), kind });
            }
            Ok(())
        };
        let meta =
            std::fs::metadata(path).map_err(|source| ImageError::Open { path: p(), source })?;
        check(&meta)?;
        // O_NONBLOCK keeps the open from blocking on a FIFO swapped in after the check
        // above; it is cleared once the file is open (io_uring would answer EAGAIN).
        let open = |direct: bool| {
            let mut flags = block_io::O_NONBLOCK;
            if direct {
                flags |= block_io::O_DIRECT;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(!options.readonly)
                .custom_flags(flags)
                .open(path)?;
            block_io::clear_nonblock(&file)?;
            Ok::<File, io::Error>(file)
        };
        let mut file = open(false).map_err(|source| ImageError::Open { path: p(), source })?;
        // The path may have changed between the look and the open.
        let meta = file.metadata().map_err(|source| ImageError::Io {
            path: p(),
            what: "fstat",
            source,
        })?;
        check(&meta)?;
        let block_device = meta.file_type().is_block_device();
        let identity = FileIdentity::of(&meta);
        let capacity = if block_device {
            file.seek(SeekFrom::End(0))
                .map_err(|source| ImageError::Io {
                    path: p(),
                    what: "reading the block device's size",
                    source,
                })?
        } else {
            meta.len()
        };
        if capacity % SECTOR_SIZE != 0 {
            return Err(ImageError::Size {
                path: p(),
                size: capacity,
            });
        }
        let lock = if options.readonly {
            block_io::Lock::Shared
        } else {
            block_io::Lock::Exclusive
        };
        block_io::lock_whole_file(&file, lock).map_err(|source| {
            if source.kind() == io::ErrorKind::WouldBlock {
                ImageError::Locked { path: p() }
            } else {
                ImageError::Io {
                    path: p(),
                    what: "locking",
                    source,
                }
            }
        })?;
        let (direct, direct_alignment) = if options.direct {
            let direct = open(true).map_err(|source| ImageError::Direct { path: p(), source })?;
            let align = if block_device {
                block_io::block_logical_size(&direct)
                    .map(|s| u64::from(s).max(SECTOR_SIZE))
                    .unwrap_or(4096)
            } else {
                // The filesystem's device decides; 4 KiB covers every common one.
                4096
            };
            (Some(Arc::new(direct)), align)
        } else {
            (None, SECTOR_SIZE)
        };
        Ok(Self {
            path: p(),
            file: Arc::new(file),
            direct,
            direct_alignment,
            identity,
            block_device,
            capacity,
            readonly: options.readonly,
        })
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What identifies the file, to find one image given twice.
    pub fn identity(&self) -> FileIdentity {
        self.identity
    }

    /// Whether it is a host block device (else a regular file).
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// The alignment of offset, length and buffers that direct I/O needs (512 without
    /// `direct=on`).
    pub fn direct_alignment(&self) -> u64 {
        self.direct_alignment
    }

    /// The ordinary descriptor.
    #[cfg(test)]
    pub(super) fn file(&self) -> &Arc<File> {
        &self.file
    }

    fn direct_for(&self, offset: u64, bufs: &[VolatileSlice<'_, ()>]) -> Option<&Arc<File>> {
        let direct = self.direct.as_ref()?;
        let a = self.direct_alignment;
        let aligned = offset % a == 0
            && bufs.iter().all(|b| {
                (b.len() as u64) % a == 0 && (b.ptr_guard().as_ptr() as usize as u64) % a == 0
            });
        aligned.then_some(direct)
    }

    fn zero_fill(&self, mut offset: u64, mut len: u64) -> io::Result<()> {
        let zeros = vec![0u8; len.min(1 << 20) as usize];
        while len > 0 {
            let n = len.min(zeros.len() as u64);
            self.file.write_all_at(&zeros[..n as usize], offset)?;
            offset += n;
            len -= n;
        }
        Ok(())
    }
}

impl IoBackend for DiskImage {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn readonly(&self) -> bool {
        self.readonly
    }

    fn read_at(&self, offset: u64, bufs: &[VolatileSlice<'_, ()>]) -> io::Result<()> {
        let file = self.direct_for(offset, bufs).unwrap_or(&self.file);
        block_io::read_all_at(file, offset, bufs)
    }

    fn write_at(&self, offset: u64, bufs: &[VolatileSlice<'_, ()>]) -> io::Result<()> {
        if self.readonly {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let file = self.direct_for(offset, bufs).unwrap_or(&self.file);
        block_io::write_all_at(file, offset, bufs)
    }

    fn flush(&self) -> io::Result<()> {
        // fdatasync is per file, whichever descriptor wrote.
        self.file.sync_data()
    }

    /// `direct=on` images keep requests in flight: their reads and writes reach the host's
    /// disk, where that pays (docs/bench.md); page-cache hits do not gain from it.
    fn queued_flush_file(&self) -> Option<Arc<File>> {
        self.direct.as_ref().map(|_| self.file.clone())
    }

    fn queued_file(&self, offset: u64, bufs: &[VolatileSlice<'_, ()>]) -> Option<Arc<File>> {
        self.direct.as_ref()?;
        Some(self.direct_for(offset, bufs).unwrap_or(&self.file).clone())
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.readonly {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let result = if self.block_device {
            block_io::block_discard(&self.file, offset, len)
        } else {
            fallocate(&self.file, FallocateMode::PunchHole, true, offset, len)
                .map_err(|e| io::Error::from_raw_os_error(e.errno()))
        };
        match result {
            // Discarding is a hint: a backing that cannot is not an error.
            Err(e) if e.raw_os_error() == Some(block_io::EOPNOTSUPP) => Ok(()),
            other => other,
        }
    }

    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        if self.readonly {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        if self.block_device {
            return block_io::block_zeroout(&self.file, offset, len);
        }
        // A punched hole reads as zeros; a zeroed range stays allocated. Where the
        // filesystem has neither, write zeros.
        let mode = if unmap {
            FallocateMode::PunchHole
        } else {
            FallocateMode::ZeroRange
        };
        match fallocate(&self.file, mode, true, offset, len) {
            Ok(()) => Ok(()),
            Err(e) if e.errno() == block_io::EOPNOTSUPP => self.zero_fill(offset, len),
            Err(e) => Err(io::Error::from_raw_os_error(e.errno())),
        }
    }
}
