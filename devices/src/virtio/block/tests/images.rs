// SPDX-License-Identifier: Apache-2.0
//! Opening images: what is refused, with which error, and how locks behave.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn rw() -> ImageOptions {
    ImageOptions::default()
}

fn ro() -> ImageOptions {
    ImageOptions {
        readonly: true,
        direct: false,
    }
}

#[test]
fn refuses_what_is_not_a_disk_naming_the_path() {
    let dir = TempDir::new_with_prefix("/tmp/pv-blk-img").unwrap();
    let missing = dir.as_path().join("missing.img");
    let e = DiskImage::open(&missing, &rw()).unwrap_err();
    assert!(matches!(e, ImageError::Open { .. }), "{e}");
    assert!(e.to_string().contains("missing.img"), "{e}");

    let e = DiskImage::open(dir.as_path(), &rw()).unwrap_err();
    assert!(matches!(e, ImageError::Directory { .. }), "{e}");
    assert!(e.to_string().contains("directory"), "{e}");

    let odd = dir.as_path().join("odd.img");
    std::fs::write(&odd, vec![0u8; 1000]).unwrap();
    let e = DiskImage::open(&odd, &rw()).unwrap_err();
    assert!(matches!(e, ImageError::Size { size: 1000, .. }), "{e}");
    assert!(e.to_string().contains("odd.img") && e.to_string().contains("512"));

    let e = DiskImage::open(std::path::Path::new("/dev/null"), &ro()).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::NotADisk {
                kind: "character device",
                ..
            }
        ),
        "{e}"
    );
    let fifo = dir.as_path().join("fifo");
    test_support::mkfifo(&fifo).unwrap();
    // Refused before opening, so this does not block.
    let e = DiskImage::open(&fifo, &rw()).unwrap_err();
    assert!(
        matches!(e, ImageError::NotADisk { kind: "FIFO", .. }),
        "{e}"
    );
}

#[test]
fn refuses_a_file_without_permission() {
    let dir = TempDir::new_with_prefix("/tmp/pv-blk-img").unwrap();
    let path = dir.as_path().join("ro.img");
    std::fs::write(&path, vec![0u8; 512]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    // Root may write anyway; only check what an ordinary user sees.
    if std::fs::OpenOptions::new().write(true).open(&path).is_err() {
        let e = DiskImage::open(&path, &rw()).unwrap_err();
        assert!(matches!(e, ImageError::Open { .. }), "{e}");
        assert!(e.to_string().contains("ermission"), "{e}");
    }
    // Read-only is fine.
    let image = DiskImage::open(&path, &ro()).unwrap();
    assert!(image.readonly());
    assert_eq!(image.capacity(), 512);
}

#[test]
fn locks_exclusive_for_writers_and_shared_for_readers() {
    let dir = TempDir::new_with_prefix("/tmp/pv-blk-img").unwrap();
    let path = image_file(&dir, &[0u8; 4096]);
    let writer = DiskImage::open(&path, &rw()).unwrap();
    for options in [rw(), ro()] {
        let e = DiskImage::open(&path, &options).unwrap_err();
        assert!(matches!(e, ImageError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("locked"), "{e}");
    }
    drop(writer);
    let r1 = DiskImage::open(&path, &ro()).unwrap();
    let r2 = DiskImage::open(&path, &ro()).unwrap();
    assert!(matches!(
        DiskImage::open(&path, &rw()).unwrap_err(),
        ImageError::Locked { .. }
    ));
    // Two paths to one file have one identity.
    let link = dir.as_path().join("link.img");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let r3 = DiskImage::open(&link, &ro()).unwrap();
    assert_eq!(r1.identity(), r3.identity());
    assert_eq!(r1.identity(), r2.identity());
    assert!(!r1.is_block_device());
    assert_eq!(r1.path(), path);
}

#[test]
fn direct_io_reads_and_writes_aligned_and_unaligned_buffers() {
    // O_DIRECT needs a filesystem that has it (tmpfs does not): use the target directory's.
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().unwrap());
    let dir = TempDir::new_in(&base).unwrap();
    let path = image_file(&dir, &pattern(IMAGE_LEN, 3));
    let options = ImageOptions {
        readonly: false,
        direct: true,
    };
    let image = match DiskImage::open(&path, &options) {
        Ok(image) => image,
        Err(e @ ImageError::Direct { .. }) => {
            eprintln!("skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(image.direct_alignment() % 512, 0);
    let mem = test_util::memory();
    use vm_memory::GuestMemoryBackend;
    // Aligned: the O_DIRECT descriptor; unaligned: the ordinary one. Both must be right.
    for addr in [0x4_0000u64, 0x4_0000 + 512 + 3] {
        let slice = mem.get_slice(GuestAddress(addr), 4096).unwrap();
        image.read_at(4096, &[slice]).unwrap();
        let mut got = vec![0; 4096];
        mem.read_slice(&mut got, GuestAddress(addr)).unwrap();
        assert_eq!(got, pattern(IMAGE_LEN, 3)[4096..8192], "{addr:#x}");
        mem.write_slice(&pattern(4096, addr as u8), GuestAddress(addr))
            .unwrap();
        image.write_at(8192, &[slice]).unwrap();
        image.flush().unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap()[8192..12288],
            pattern(4096, addr as u8)[..]
        );
    }
}
