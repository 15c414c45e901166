// SPDX-License-Identifier: Apache-2.0
//! Opening the boot payload a user names: the kernel image (recognised by its first bytes,
//! so a wrong file is refused before any VM exists; a backend that boots raw images, s390x,
//! opens it with [`open_kernel_or_raw`]), the initrd and the command line.
//!
//! Placing the payload in guest memory is each backend's job (linux-loader's bzImage and ELF
//! loaders are x86-only, so they live in `arch-x86_64`); this crate is portable.
#![forbid(unsafe_code)]

mod format;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use arch::boot::{BootRequest, InitrdFile, KernelFile, KernelFormat};
pub use format::detect_format;

/// `O_NONBLOCK` (0o4000 on every Linux architecture we build for: x86_64, aarch64, s390x;
/// spelled out because this crate does not depend on libc).
const NONBLOCK: i32 = 0o4000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path:?}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path:?}: file is empty")]
    Empty { path: PathBuf },
    #[error("{path:?}: not a kernel image this VMM can boot (expected a bzImage, an ELF64 vmlinux, an arm64 Image or a gzip-compressed Image)")]
    UnknownFormat { path: PathBuf },
    #[error("command line contains a NUL byte")]
    CmdlineNul,
}

/// Open a regular, non-empty file and return it with its size. What is not a regular file
/// (a FIFO, a device, a directory) is refused before it is opened: opening a FIFO for
/// reading would wait for a writer. The open itself is non-blocking and checked again, so
/// a file swapped in between cannot hang it either.
fn open_nonempty(path: &Path) -> Result<(File, u64), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let open_err = |source| Error::Open {
        path: path.to_path_buf(),
        source,
    };
    let not_a_file = || Error::NotAFile {
        path: path.to_path_buf(),
    };
    if !std::fs::metadata(path).map_err(open_err)?.is_file() {
        return Err(not_a_file());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(NONBLOCK)
        .open(path)
        .map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if !meta.is_file() {
        return Err(not_a_file());
    }
    if meta.len() == 0 {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok((file, meta.len()))
}

/// Open a kernel image and recognise its format; a file in no known format is refused.
pub fn open_kernel(path: &Path) -> Result<KernelFile, Error> {
    open(path, false)
}

/// Open a kernel image for a backend that boots raw images (s390x): a file in no known
/// format is [`KernelFormat::Raw`]; only a non-ELF64 ELF file is refused.
pub fn open_kernel_or_raw(path: &Path) -> Result<KernelFile, Error> {
    open(path, true)
}

fn open(path: &Path, raw: bool) -> Result<KernelFile, Error> {
    let (mut file, size) = open_nonempty(path)?;
    let mut head = vec![0u8; 0x240];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(source) => {
                return Err(Error::Open {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    head.truncate(filled);
    let format = match detect_format(&head) {
        Some(format) => format,
        None if raw && !head.starts_with(format::ELF_MAGIC) => KernelFormat::Raw,
        None => {
            return Err(Error::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    };
    Ok(KernelFile {
        path: path.to_path_buf(),
        file,
        size,
        format,
    })
}

/// Open an initrd.
pub fn open_initrd(path: &Path) -> Result<InitrdFile, Error> {
    let (file, size) = open_nonempty(path)?;
    Ok(InitrdFile {
        path: path.to_path_buf(),
        file,
        size,
    })
}

/// Check a command line; returns it unchanged.
pub fn check_cmdline(cmdline: &str) -> Result<String, Error> {
    if cmdline.contains('\0') {
        return Err(Error::CmdlineNul);
    }
    Ok(cmdline.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pv-boot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    #[test]
    fn missing_empty_garbage_and_directory_are_refused_by_name() {
        let missing = Path::new("/nonexistent/polyvisor-kernel");
        let e = open_kernel(missing).unwrap_err();
        assert!(matches!(e, Error::Open { .. }));
        assert!(e
            .to_string()
            .starts_with("\"/nonexistent/polyvisor-kernel\": "));

        let empty = temp_file("empty", b"");
        assert!(matches!(open_kernel(&empty), Err(Error::Empty { .. })));
        let garbage = temp_file("garbage", &[0x5a; 4096]);
        let e = open_kernel(&garbage).unwrap_err();
        assert!(matches!(e, Error::UnknownFormat { .. }));
        assert!(e.to_string().contains("garbage"));
        assert!(matches!(
            open_initrd(&std::env::temp_dir()),
            Err(Error::NotAFile { .. })
        ));
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = std::env::temp_dir().join(format!("pv-boot-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("kernel");
        let _ = std::fs::remove_file(&fifo);
        test_support::mkfifo(&fifo).unwrap();
        let e = open_kernel(&fifo).unwrap_err();
        assert!(matches!(e, Error::NotAFile { .. }), "{e}");
        assert!(matches!(open_initrd(&fifo), Err(Error::NotAFile { .. })));
        std::fs::remove_file(&fifo).unwrap();
    }

    #[test]
    fn a_path_with_a_newline_stays_on_one_line() {
        let e = open_kernel(Path::new("/nonexistent/a\nb")).unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(e.to_string().contains("a\\nb"), "{e}");
    }

    #[test]
    fn opens_elf_and_initrd() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        let p = temp_file("elf", &elf);
        let k = open_kernel(&p).unwrap();
        assert_eq!(k.format, KernelFormat::Elf64);
        assert_eq!(k.size, 64);
        let i = open_initrd(&p).unwrap();
        assert_eq!(i.size, 64);
    }

    #[test]
    fn raw_images_only_where_the_backend_takes_them() {
        let garbage = temp_file("raw", &[0x5a; 4096]);
        assert!(matches!(
            open_kernel(&garbage),
            Err(Error::UnknownFormat { .. })
        ));
        let k = open_kernel_or_raw(&garbage).unwrap();
        assert_eq!((k.format, k.size), (KernelFormat::Raw, 4096));
        // Short files too (s390x takes any size), but an ELF32 file is refused.
        let tiny = temp_file("tiny", &[0u8; 3]);
        assert_eq!(open_kernel_or_raw(&tiny).unwrap().format, KernelFormat::Raw);
        let elf32 = temp_file("elf32", b"\x7fELF\x01\x02\x01\0");
        assert!(matches!(
            open_kernel_or_raw(&elf32),
            Err(Error::UnknownFormat { .. })
        ));
        // Recognised formats stay what they are.
        let mut elf = vec![0u8; 64];
        elf[..5].copy_from_slice(b"\x7fELF\x02");
        let p = temp_file("elf64", &elf);
        assert_eq!(open_kernel_or_raw(&p).unwrap().format, KernelFormat::Elf64);
        // Still refused on every backend: empty files and non-files.
        let empty = temp_file("empty-raw", b"");
        assert!(matches!(
            open_kernel_or_raw(&empty),
            Err(Error::Empty { .. })
        ));
        assert!(matches!(
            open_kernel_or_raw(&std::env::temp_dir()),
            Err(Error::NotAFile { .. }) | Err(Error::Open { .. })
        ));
    }

    #[test]
    fn cmdline_with_nul_is_refused() {
        assert_eq!(check_cmdline("console=ttyS0").unwrap(), "console=ttyS0");
        assert!(check_cmdline("a\0b").is_err());
    }
}
