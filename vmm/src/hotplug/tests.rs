// SPDX-License-Identifier: Apache-2.0
use std::path::Path;
use std::sync::{Arc, Mutex};

use arch::{Hotplugged, Vm};
use devices::virtio::VirtioDevice;

use super::*;
use crate::cli::{Cli, Command};
use crate::config::{DiskConfig, VsockConfig};
use crate::machine::tests::{unreached_vm_methods, NoVirtio};
use clap::Parser;

/// A backend that hotplugs (as s390x virtio-ccw does): it keeps the devices it was given,
/// by slot, and names them as CCW bus ids; `slots` is its transport's limit.
#[derive(Default)]
pub struct FakeVm {
    pub plugged: Mutex<Vec<(u32, Box<dyn VirtioDevice>)>>,
    /// Device types attached at boot (`add_virtio_device`).
    pub at_boot: Vec<u32>,
    pub next_slot: Mutex<u32>,
    pub slots: usize,
    /// Devices attached at boot can be unplugged too (as on s390x): they get slots.
    pub boot_slots: bool,
    pub attached: Vec<Option<u32>>,
}

impl FakeVm {
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            ..Default::default()
        }
    }

    pub fn plugged_types(&self) -> Vec<u32> {
        let plugged = self.plugged.lock().unwrap();
        plugged.iter().map(|(_, d)| d.device_type()).collect()
    }
}

impl Vm for FakeVm {
    unreached_vm_methods!();
    fn add_virtio_device(
        &mut self,
        device: Box<dyn VirtioDevice>,
    ) -> arch::Result<Option<arch::VirtioTransport>> {
        self.at_boot.push(device.device_type());
        if self.boot_slots {
            let mut next = self.next_slot.lock().unwrap();
            self.plugged.lock().unwrap().push((*next, device));
            self.attached.push(Some(*next));
            *next += 1;
        }
        Ok(None)
    }
    fn attached_slots(&self) -> Vec<Option<u32>> {
        self.attached.clone()
    }
    fn hotplug_virtio_device(&self, device: Box<dyn VirtioDevice>) -> arch::Result<Hotplugged> {
        let mut plugged = self.plugged.lock().unwrap();
        if plugged.len() >= self.slots {
            return Err(arch::Error::Config(format!(
                "all {} device slots are in use",
                self.slots
            )));
        }
        let mut next = self.next_slot.lock().unwrap();
        let slot = *next;
        *next += 1;
        plugged.push((slot, device));
        Ok(Hotplugged {
            slot,
            address: format!("0.0.{slot:04x}"),
        })
    }
    fn unplug_virtio_device(&self, slot: u32) -> arch::Result<()> {
        let mut plugged = self.plugged.lock().unwrap();
        let at = plugged
            .iter()
            .position(|(s, _)| *s == slot)
            .ok_or_else(|| arch::Error::Config(format!("no device in slot {slot}")))?;
        plugged.remove(at);
        Ok(())
    }
}

pub fn config(args: &[&str]) -> Config {
    let argv = ["polyvisor", "run", "--kernel", "/k"].iter().chain(args);
    let Some(Command::Run(run)) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not a run command")
    };
    run.into_config().unwrap()
}

pub fn image(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, [0u8; 4096]).unwrap();
    path
}

fn disk(path: &Path, id: Option<&str>) -> DeviceConfig {
    DeviceConfig::Disk(DiskConfig {
        path: path.to_path_buf(),
        id: id.map(String::from),
        ..Default::default()
    })
}

fn added(r: Result<Answer, CommandError>) -> Added {
    match r {
        Ok(Answer::Added(a)) => a,
        other => panic!("not added: {other:?}"),
    }
}

fn bad(r: Result<Answer, CommandError>) -> String {
    match r {
        Err(CommandError::BadDevice(m)) => {
            assert!(!m.contains('\n'), "{m}");
            m
        }
        other => panic!("not refused as a bad device: {other:?}"),
    }
}

/// Whether the image can be opened read-write (nobody holds its lock).
fn unlocked(path: &Path) -> bool {
    crate::disks::open_one(
        &DiskConfig {
            path: path.to_path_buf(),
            ..Default::default()
        },
        "probe".into(),
    )
    .is_ok()
}

#[test]
fn disks_plug_in_with_ids_join_the_configuration_and_leave_it() {
    let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/pv-hotplug").unwrap();
    let (boot, a, b) = (
        image(dir.as_path(), "boot.img"),
        image(dir.as_path(), "a.img"),
        image(dir.as_path(), "b.img"),
    );
    let mut cfg = config(&["--disk", &format!("path={}", boot.display())]);
    let mut backends = HostBackends::open(&cfg).unwrap();
    let vm = FakeVm::new(3);
    let mut hp = Hotplug::new(&mut cfg, &mut backends, None);

    // No id: Cloud Hypervisor's name after the boot disk (_disk0).
    let first = added(hp.add(&vm, disk(&a, None)));
    assert_eq!(
        (first.id.as_str(), first.bdf.as_str()),
        ("_disk1", "0.0.0000")
    );
    assert!(
        !unlocked(&a),
        "the image's lock is held while the device exists"
    );
    // An id another device has (the boot disk's implicit one, or a plugged one): refused.
    let line = bad(hp.add(&vm, disk(&b, Some("_disk0"))));
    assert_eq!(
        line,
        "--disk id=_disk0: another device of the VM has this id"
    );
    assert!(bad(hp.add(&vm, disk(&b, Some("_disk1")))).contains("id=_disk1"));
    // The same image again, read-write: refused before it is opened, naming both files.
    let line = bad(hp.add(&vm, disk(&a, Some("again"))));
    assert!(
        line.starts_with("--disk ") && line.contains("same image"),
        "{line}"
    );
    let second = added(hp.add(&vm, disk(&b, Some("data"))));
    assert_eq!(
        (second.id.as_str(), second.bdf.as_str()),
        ("data", "0.0.0001")
    );
    assert_eq!(vm.plugged_types(), vec![2, 2]);

    // Boot-time devices are not taken out where the backend cannot (virtio-mmio: it
    // reports no slots for them); unknown ids are not found.
    assert_eq!(
        hp.remove(&vm, "_disk0"),
        Err(CommandError::NotHotplugged("_disk0".into()))
    );
    assert_eq!(
        hp.remove(&vm, "nope"),
        Err(CommandError::NoSuchDevice("nope".into()))
    );
    assert_eq!(hp.remove(&vm, "_disk1"), Ok(Answer::Done));
    assert!(unlocked(&a), "the lock went with the device");
    assert_eq!(vm.plugged_types(), vec![2]);
    drop(hp);

    // The configuration (vm.info) and the host side (every later boot) hold what is
    // plugged in, with its id.
    let ids: Vec<_> = device_ids(&cfg).into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, ["_disk0", "data"]);
    assert_eq!(cfg.disks[1].path, b);
    assert_eq!(backends.disks.len(), 2);
    assert_eq!(backends.disks[1].config.id.as_deref(), Some("data"));
    let mut reboot = FakeVm::new(3);
    backends.attach(&mut reboot, &cfg).unwrap();
    assert_eq!(reboot.at_boot, vec![2, 2], "a reboot attaches both disks");
    // After that boot, the disk plugged in is a boot-time one.
    let mut hp = Hotplug::new(&mut cfg, &mut backends, None);
    assert_eq!(
        hp.remove(&reboot, "data"),
        Err(CommandError::NotHotplugged("data".into()))
    );
}

#[test]
fn a_full_transport_or_a_backend_without_hotplug_changes_nothing() {
    let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/pv-hotplug").unwrap();
    let a = image(dir.as_path(), "a.img");
    let mut cfg = config(&[]);
    let mut backends = HostBackends::default();
    let mut hp = Hotplug::new(&mut cfg, &mut backends, None);
    let line = bad(hp.add(&FakeVm::new(0), disk(&a, None)));
    assert_eq!(
        line,
        format!("--disk path={}: all 0 device slots are in use", a.display())
    );
    match hp.add(&NoVirtio, disk(&a, None)) {
        Err(CommandError::Unsupported(why)) => {
            assert!(why.contains("virtio-mmio cannot announce"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert!(unlocked(&a));
    // A missing image: the open's one-line error, naming it.
    let line = bad(hp.add(&FakeVm::new(1), disk(&dir.as_path().join("no.img"), None)));
    assert!(
        line.starts_with("--disk ") && line.contains("no.img"),
        "{line}"
    );
    drop(hp);
    assert_eq!(cfg, config(&[]));
    assert!(backends.disks.is_empty());
}

#[test]
fn one_vsock_its_socket_living_as_long_as_the_device() {
    let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/pv-hotplug").unwrap();
    let sock = dir.as_path().join("v.sock");
    let vsock = |path: &Path, cid| {
        DeviceConfig::Vsock(VsockConfig {
            cid,
            socket: path.to_path_buf(),
            id: None,
        })
    };
    let mut cfg = config(&[]);
    let mut backends = HostBackends::default();
    let vm = FakeVm::new(4);
    let mut hp = Hotplug::new(&mut cfg, &mut backends, None);
    let a = added(hp.add(&vm, vsock(&sock, 3)));
    assert_eq!(a.id, "_vsock0");
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    let line = bad(hp.add(&vm, vsock(&dir.as_path().join("w.sock"), 4)));
    assert!(line.contains("one per VM"), "{line}");
    assert_eq!(vm.plugged_types(), vec![19]);
    assert_eq!(hp.remove(&vm, "_vsock0"), Ok(Answer::Done));
    assert!(!sock.exists(), "the socket is removed with the device");
    drop(hp);
    assert!(cfg.vsock.is_none() && backends.vsock.is_none());
}

#[test]
fn ids_and_configuration_edits() {
    let mut cfg = config(&[
        "--disk",
        "path=/a,id=root",
        "--disk",
        "path=/b",
        "--net",
        "tap=t0",
        "--vsock",
        "cid=3,socket=/v",
    ]);
    let ids: Vec<_> = device_ids(&cfg).into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, ["root", "_disk1", "_net0", "_vsock0"]);
    let named = with_ids(&cfg);
    assert_eq!(named.disks[0].id.as_deref(), Some("root"));
    assert_eq!(named.disks[1].id.as_deref(), Some("_disk1"));
    assert_eq!(named.nets[0].id.as_deref(), Some("_net0"));
    assert_eq!(named.vsock.as_ref().unwrap().id.as_deref(), Some("_vsock0"));
    assert_eq!(device_ids(&named), device_ids(&cfg));
    assert_eq!(new_id(&cfg, None, Field::Disk, "disk").unwrap(), "_disk2");
    assert_eq!(new_id(&cfg, None, Field::Net, "net").unwrap(), "_net1");
    assert_eq!(new_id(&cfg, Some("x"), Field::Net, "net").unwrap(), "x");
    // A name taken by an explicit id is skipped.
    cfg.nets[0].id = Some("_net1".into());
    assert_eq!(new_id(&cfg, None, Field::Net, "net").unwrap(), "_net2");
    assert!(remove_from_config(&mut cfg, None, "_net1"));
    assert!(cfg.nets.is_empty());
    assert!(!remove_from_config(&mut cfg, None, "_net1"));
    assert!(remove_from_config(&mut cfg, None, "_vsock0"));
    assert!(cfg.vsock.is_none());
    assert!(remove_from_config(&mut cfg, None, "root"));
    assert_eq!(cfg.disks.len(), 1);
}

#[test]
fn changes_are_published_to_the_api_unless_the_vm_is_deleted() {
    let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/pv-hotplug").unwrap();
    let a = image(dir.as_path(), "a.img");
    let mut cfg = config(&[]);
    let shared: crate::run_control::SharedConfig = Arc::new(Mutex::new(Some(cfg.clone())));
    let rc = RunControl::new().unwrap().publishing_to(shared.clone());
    let mut backends = HostBackends::default();
    let vm = FakeVm::new(2);
    let mut hp = Hotplug::new(&mut cfg, &mut backends, Some(&rc));
    added(hp.add(&vm, disk(&a, Some("d"))));
    let seen = shared.lock().unwrap().clone().unwrap();
    assert_eq!(seen.disks[0].id.as_deref(), Some("d"));
    // vm.delete meanwhile: nothing is brought back.
    *shared.lock().unwrap() = None;
    assert_eq!(hp.remove(&vm, "d"), Ok(Answer::Done));
    assert!(shared.lock().unwrap().is_none());
}

#[test]
fn where_the_backend_can_devices_attached_at_boot_are_removed_too() {
    let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/pv-hotplug").unwrap();
    let (a, b) = (image(dir.as_path(), "a.img"), image(dir.as_path(), "b.img"));
    let sock = dir.as_path().join("v.sock");
    let mut cfg = config(&[
        "--disk",
        &format!("path={}", a.display()),
        "--disk",
        &format!("path={},id=data", b.display()),
        "--rng",
        "--vsock",
        &format!("cid=3,socket={}", sock.display()),
    ]);
    let mut backends = HostBackends::open(&cfg).unwrap();
    let mut vm = FakeVm {
        boot_slots: true,
        slots: 8,
        ..Default::default()
    };
    backends.attach(&mut vm, &cfg).unwrap();
    // Disks, then the rng, then the vsock, on slots 0..=3.
    assert_eq!(vm.plugged_types(), vec![2, 2, 4, 19]);
    assert_eq!(
        boot_devices(&cfg, true, &vm.attached_slots()),
        vec![
            ("_disk0".to_string(), 0),
            ("data".to_string(), 1),
            ("_vsock0".to_string(), 3)
        ]
    );
    let mut hp = Hotplug::new(&mut cfg, &mut backends, None);
    hp.adopt_boot_devices(&vm);
    assert!(!unlocked(&b));
    assert_eq!(hp.remove(&vm, "data"), Ok(Answer::Done));
    assert!(unlocked(&b), "the lock went with the device");
    assert_eq!(hp.remove(&vm, "_vsock0"), Ok(Answer::Done));
    assert!(!sock.exists(), "the socket went with the device");
    assert_eq!(
        vm.plugged_types(),
        vec![2, 4],
        "the rng stays (it has no id)"
    );
    assert_eq!(
        hp.remove(&vm, "data"),
        Err(CommandError::NoSuchDevice("data".into()))
    );
    // A device plugged in now takes a new slot and is removed by its id as well.
    let c = image(dir.as_path(), "c.img");
    let new = added(hp.add(&vm, disk(&c, None)));
    assert_eq!(new.id, "_disk1");
    // Ids stay with their devices: _disk1 is still the plugged one once _disk0 is gone.
    assert_eq!(hp.remove(&vm, "_disk0"), Ok(Answer::Done));
    assert_eq!(hp.config.disks[0].path, c);
    assert_eq!(hp.remove(&vm, "_disk1"), Ok(Answer::Done));
    assert_eq!(vm.plugged_types(), vec![4]);
    drop(hp);
    assert!(cfg.disks.is_empty() && cfg.vsock.is_none() && cfg.rng);
}
