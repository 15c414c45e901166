// SPDX-License-Identifier: Apache-2.0
//! The `--disk` images: opened, checked and locked once per run, before any guest runs,
//! and held (with their locks) across every boot `--on-reset restart` makes; each boot
//! gets fresh virtio-blk devices over the same open images.

use std::sync::Arc;

use devices::virtio::block::{BlockOptions, DiskImage, FileIdentity, ImageOptions};
use devices::virtio::Block;

use crate::config::{DiskConfig, Field};
use crate::machine::Error;

/// One `--disk`, open and locked.
pub struct OpenDisk {
    pub image: Arc<DiskImage>,
    pub config: DiskConfig,
    /// How the VMM's messages name it: `id=` or `diskN` (N counted from 0 in flag order).
    pub name: String,
}

impl OpenDisk {
    /// A virtio-blk device over this image, for one boot.
    pub fn device(&self) -> Block {
        Block::new(
            self.image.clone(),
            BlockOptions {
                serial: self
                    .config
                    .serial
                    .as_deref()
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec(),
                name: format!("virtio-blk {}", self.name),
                block_device: self.image.is_block_device(),
            },
        )
    }
}

fn input(message: String) -> Error {
    Error::Input {
        field: Field::Disk,
        message,
    }
}

/// Open every `--disk` in order. Refuses, naming the file: what [`check`] refuses, and
/// whatever [`DiskImage::open`] refuses.
pub fn open(disks: &[DiskConfig]) -> Result<Vec<OpenDisk>, Error> {
    check(disks)?;
    disks
        .iter()
        .enumerate()
        .map(|(i, disk)| open_one(disk, disk.id.clone().unwrap_or_else(|| format!("disk{i}"))))
        .collect()
}

/// Check a VM's disks together before any is opened (the last one may be a disk to plug in
/// beside the others): one image given twice when either is read-write (the same file by
/// any path: device and inode, or the block device's number), two disks with one `id=`.
pub fn check(disks: &[DiskConfig]) -> Result<(), Error> {
    let mut seen: Vec<(FileIdentity, &DiskConfig)> = Vec::new();
    for (i, disk) in disks.iter().enumerate() {
        if let Some(id) = &disk.id {
            if disks[..i].iter().any(|d| d.id.as_ref() == Some(id)) {
                return Err(input(format!("id={id}: two disks have this id")));
            }
        }
        // A file that cannot be looked at is reported by the open.
        let Ok(identity) = FileIdentity::of_path(&disk.path) else {
            continue;
        };
        if let Some((_, first)) = seen
            .iter()
            .find(|(other, first)| *other == identity && !(first.readonly && disk.readonly))
        {
            return Err(input(format!(
                "{:?} is the same image as {:?}: one image can be attached twice only \
                 with readonly=on both times",
                disk.path, first.path
            )));
        }
        seen.push((identity, disk));
    }
    Ok(())
}

/// Open, check and lock one disk's image; `name` is how the VMM's messages name it.
pub fn open_one(disk: &DiskConfig, name: String) -> Result<OpenDisk, Error> {
    let image = DiskImage::open(
        &disk.path,
        &ImageOptions {
            readonly: disk.readonly,
            direct: disk.direct,
        },
    )
    .map_err(|e| input(e.to_string()))?;
    log::debug!(
        "--disk {:?}: {} bytes{}{}",
        disk.path,
        devices::virtio::block::IoBackend::capacity(&image),
        if disk.readonly { ", read-only" } else { "" },
        if disk.direct { ", O_DIRECT" } else { "" }
    );
    Ok(OpenDisk {
        image: Arc::new(image),
        config: disk.clone(),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(path: &std::path::Path, readonly: bool) -> DiskConfig {
        DiskConfig {
            path: path.to_path_buf(),
            readonly,
            ..Default::default()
        }
    }

    fn message(r: Result<Vec<OpenDisk>, Error>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2);
                let line = e.to_string();
                assert!(line.starts_with("--disk "), "{line}");
                assert!(!line.contains('\n'), "{line}");
                line
            }
        }
    }

    #[test]
    fn one_image_twice() {
        let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/pv-disks").unwrap();
        let a = dir.as_path().join("a.img");
        std::fs::write(&a, [0u8; 1024]).unwrap();
        let link = dir.as_path().join("b.img");
        std::fs::hard_link(&a, &link).unwrap();
        let line = message(open(&[disk(&a, false), disk(&link, true)]));
        assert!(
            line.contains("b.img") && line.contains("same image"),
            "{line}"
        );
        let line = message(open(&[disk(&a, true), disk(&link, false)]));
        assert!(line.contains("same image"), "{line}");
        // Read-only twice is fine, and the open images keep the lock.
        let open_ro = open(&[disk(&a, true), disk(&link, true)]).unwrap();
        assert_eq!(open_ro[1].name, "disk1");
        let line = message(open(&[disk(&a, false)]));
        assert!(line.contains("locked"), "{line}");
        drop(open_ro);
        let rw = open(&[DiskConfig {
            id: Some("root".into()),
            serial: Some("abc".into()),
            ..disk(&a, false)
        }])
        .unwrap();
        assert_eq!(rw[0].name, "root");
        use devices::virtio::VirtioDevice;
        assert_eq!(rw[0].device().device_type(), 2);
        let twice = DiskConfig {
            id: Some("x".into()),
            ..disk(&a, true)
        };
        let line = message(open(&[twice.clone(), twice]));
        assert!(line.contains("id=x"), "{line}");
    }
}
