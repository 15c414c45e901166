// SPDX-License-Identifier: Apache-2.0
//! Plugging devices into a running VM and taking them out (`vm.add-disk`, `vm.add-net`,
//! `vm.add-vsock`, `vm.remove-device`), on the main thread: the host side is opened as
//! `--disk`, `--net` and `--vsock` open theirs (the same checks and one-line errors), the
//! device is built as at boot and handed to the backend's
//! [`arch::Vm::hotplug_virtio_device`]. As in Cloud Hypervisor, a device plugged in is
//! part of the VM's configuration from then on: the run's [`Config`] and [`HostBackends`]
//! hold it, so a reboot boots the VM with it, and `vm.info` shows it.
//!
//! Devices are known by id: the configuration's `id=`, else Cloud Hypervisor's names by
//! kind and position (`_disk0`, `_net1`, `_vsock0`); a device plugged in without an id
//! gets the first free `_diskN` / `_netN` / `_vsockN` and keeps it in the configuration.

use arch::Vm;
use devices::virtio::VirtioDevice;

use crate::backends::HostBackends;
use crate::config::{Config, Field};
use crate::machine::Error;
use crate::run_control::{Added, Answer, CommandError, DeviceConfig, RunControl};

/// Every device's id in `config`, with the field it belongs to.
pub fn device_ids(config: &Config) -> Vec<(Field, String)> {
    let named = |id: &Option<String>, prefix: &str, i: usize| {
        id.clone().unwrap_or_else(|| format!("_{prefix}{i}"))
    };
    let mut ids: Vec<(Field, String)> = Vec::new();
    for (i, d) in config.disks.iter().enumerate() {
        ids.push((Field::Disk, named(&d.id, "disk", i)));
    }
    for (i, n) in config.nets.iter().enumerate() {
        ids.push((Field::Net, named(&n.id, "net", i)));
    }
    if let Some(v) = &config.vsock {
        ids.push((Field::Vsock, named(&v.id, "vsock", 0)));
    }
    ids
}

/// `config` with every device's id written in (as [`device_ids`] names them): what
/// `vm.info` shows, as Cloud Hypervisor's does.
pub fn with_ids(config: &Config) -> Config {
    let mut named = config.clone();
    let ids = device_ids(config);
    let mut ids = ids.into_iter().map(|(_, id)| Some(id));
    for d in &mut named.disks {
        d.id = ids.next().flatten();
    }
    for n in &mut named.nets {
        n.id = ids.next().flatten();
    }
    if let Some(v) = &mut named.vsock {
        v.id = ids.next().flatten();
    }
    named
}

/// The id a new device of `config` gets: `asked` if no other device has it (else the
/// error names it), otherwise the first free `_{prefix}N` from the number of devices of
/// its kind.
fn new_id(
    config: &Config,
    asked: Option<&str>,
    field: Field,
    prefix: &str,
) -> Result<String, CommandError> {
    let ids = device_ids(config);
    let taken = |id: &str| ids.iter().any(|(_, other)| other == id);
    if let Some(id) = asked {
        if taken(id) {
            return Err(CommandError::BadDevice(format!(
                "{} id={id}: another device of the VM has this id",
                field.flag()
            )));
        }
        return Ok(id.to_string());
    }
    let of_kind = ids.iter().filter(|(f, _)| *f == field).count();
    Ok((of_kind..)
        .map(|n| format!("_{prefix}{n}"))
        .find(|id| !taken(id))
        .unwrap_or_default())
}

/// Add `device` (its `id` set) to `config`: after the others of its kind.
fn add_to_config(config: &mut Config, device: &DeviceConfig) {
    match device {
        DeviceConfig::Disk(d) => config.disks.push(d.clone()),
        DeviceConfig::Net(n) => config.nets.push(n.clone()),
        DeviceConfig::Vsock(v) => config.vsock = Some(v.clone()),
    }
}

/// Take the device with id `id` (as [`device_ids`] names it) out of `config`, and out of
/// `backends` when given (which holds the same devices in the same order), dropping its
/// host side. Whether there was one.
pub fn remove_from_config(
    config: &mut Config,
    backends: Option<&mut HostBackends>,
    id: &str,
) -> bool {
    let Some(index) = device_ids(config).iter().position(|(_, d)| d == id) else {
        return false;
    };
    let (disks, nets) = (config.disks.len(), config.nets.len());
    if index < disks {
        config.disks.remove(index);
        if let Some(b) = backends {
            b.disks.remove(index);
        }
    } else if index < disks + nets {
        config.nets.remove(index - disks);
        if let Some(b) = backends {
            b.nets.remove(index - disks);
        }
    } else {
        config.vsock = None;
        if let Some(b) = backends {
            b.vsock = None;
        }
    }
    true
}

/// The devices a boot attached (in [`HostBackends::attach`]'s order: the disks, the
/// networks, the rng when `config.rng`, the vsock when `vsock`), paired with the slots
/// the backend reports for them (`slots`, in the same order): the ids and slots of those
/// it can unplug. The rng has no id (Cloud Hypervisor's cannot be removed either).
pub fn boot_devices(config: &Config, vsock: bool, slots: &[Option<u32>]) -> Vec<(String, u32)> {
    let ids = device_ids(config);
    let (disks, nets) = (config.disks.len(), config.nets.len());
    let mut slots = slots.iter().copied();
    let mut next = || slots.next().flatten();
    let mut out = Vec::new();
    let mut take = |id: &(Field, String), slot: Option<u32>| {
        if let Some(slot) = slot {
            out.push((id.1.clone(), slot));
        }
    };
    for id in &ids[..disks + nets] {
        take(id, next());
    }
    if config.rng {
        next();
    }
    if vsock {
        if let Some(id) = ids.get(disks + nets) {
            take(id, next());
        }
    }
    out
}

/// `device` as it joins `config`: its id given (the asked one if free, else the next
/// `_diskN`...) and checked against the VM's other devices (ids, the same image or tap
/// twice, one vsock per VM). Nothing is opened.
fn admit(config: &Config, device: DeviceConfig) -> Result<DeviceConfig, CommandError> {
    let bad = |e: Error| CommandError::BadDevice(e.to_string());
    Ok(match device {
        DeviceConfig::Disk(mut d) => {
            d.id = Some(new_id(config, d.id.as_deref(), Field::Disk, "disk")?);
            let mut all = config.disks.clone();
            all.push(d.clone());
            crate::disks::check(&all).map_err(bad)?;
            DeviceConfig::Disk(d)
        }
        DeviceConfig::Net(mut n) => {
            n.id = Some(new_id(config, n.id.as_deref(), Field::Net, "net")?);
            let mut all = config.nets.clone();
            all.push(n.clone());
            crate::nets::check(&all).map_err(bad)?;
            DeviceConfig::Net(n)
        }
        DeviceConfig::Vsock(mut v) => {
            if let Some(other) = &config.vsock {
                return Err(CommandError::BadDevice(format!(
                    "--vsock socket={}: the VM has a vsock device already (socket={}; one \
                     per VM)",
                    v.socket.display(),
                    other.socket.display()
                )));
            }
            v.id = Some(new_id(config, v.id.as_deref(), Field::Vsock, "vsock")?);
            DeviceConfig::Vsock(v)
        }
    })
}

/// `vm.add-*` on a VM created and not booted: as in Cloud Hypervisor, `device` joins the
/// configuration only ([`admit`]); its host side is opened at `vm.boot`, with the
/// one-line errors `--disk`, `--net`, `--vsock` give.
pub fn add_to_created(config: &mut Config, device: DeviceConfig) -> Result<Answer, CommandError> {
    *config = with_ids(config);
    let device = admit(config, device)?;
    add_to_config(config, &device);
    Ok(Answer::Done)
}

/// `vm.remove-device` on a VM created and not booted: the device leaves the configuration
/// (the others keep their ids).
pub fn remove_from_created(config: &mut Config, id: &str) -> Result<Answer, CommandError> {
    *config = with_ids(config);
    if remove_from_config(config, None, id) {
        Ok(Answer::Done)
    } else {
        Err(CommandError::NoSuchDevice(id.to_string()))
    }
}

/// The devices plugged into one boot of a VM, and the run's configuration and host side
/// they join; each change is published through `steering` (to `vm.info`, and to what
/// `vm.boot` boots after `vm.shutdown`).
pub struct Hotplug<'a> {
    config: &'a mut Config,
    backends: &'a mut HostBackends,
    steering: Option<&'a RunControl>,
    /// What this boot's backend can unplug (plugged in, or attached at boot where the
    /// backend can take those out): id and slot.
    plugged: Vec<(String, u32)>,
}

impl<'a> Hotplug<'a> {
    pub fn new(
        config: &'a mut Config,
        backends: &'a mut HostBackends,
        steering: Option<&'a RunControl>,
    ) -> Self {
        Self {
            config,
            backends,
            steering,
            plugged: Vec::new(),
        }
    }

    /// Take over the devices `vm` was booted with where its backend can unplug them
    /// ([`arch::Vm::attached_slots`]), so `vm.remove-device` takes them out as it takes
    /// out what was plugged in. Called once the machine is built from this configuration.
    /// Their ids are written into the configuration: a positional `_diskN` would name
    /// another disk once an earlier one is removed.
    pub fn adopt_boot_devices<V: Vm>(&mut self, vm: &V) {
        *self.config = with_ids(self.config);
        self.plugged = boot_devices(
            self.config,
            self.backends.vsock.is_some(),
            &vm.attached_slots(),
        );
    }

    fn publish(&self) {
        if let Some(s) = self.steering {
            s.publish(self.config);
        }
    }

    /// Open `device`'s host side, plug it into `vm` and make it part of the
    /// configuration. Nothing changes when it fails (what was opened is closed again).
    pub fn add<V: Vm>(&mut self, vm: &V, device: DeviceConfig) -> Result<Answer, CommandError> {
        let bad = |e: Error| CommandError::BadDevice(e.to_string());
        let device = admit(self.config, device)?;
        let (field, what, host) = match &device {
            DeviceConfig::Disk(d) => {
                let id = d.id.clone().unwrap_or_default();
                let open = crate::disks::open_one(d, id).map_err(bad)?;
                (
                    Field::Disk,
                    format!("path={}", d.path.display()),
                    Host::Disk(open),
                )
            }
            DeviceConfig::Net(n) => {
                let id = n.id.clone().unwrap_or_default();
                let open = crate::nets::open_one(n, id).map_err(bad)?;
                (Field::Net, open.flag_value(), Host::Net(open))
            }
            DeviceConfig::Vsock(v) => {
                let open = crate::vsock::open(Some(v)).map_err(bad)?;
                let open = open.ok_or_else(|| CommandError::Failed("no vsock opened".into()))?;
                let value = format!("socket={}", v.socket.display());
                (Field::Vsock, value, Host::Vsock(open))
            }
        };
        let virtio: Box<dyn VirtioDevice> = match &host {
            Host::Disk(d) => Box::new(d.device()),
            Host::Net(n) => Box::new(n.device()),
            Host::Vsock(v) => Box::new(v.device().map_err(|e| {
                CommandError::Failed(format!("--vsock: setting up the device: {e}"))
            })?),
        };
        let plugged = vm.hotplug_virtio_device(virtio).map_err(|e| match e {
            arch::Error::Unsupported { .. } => CommandError::Unsupported(e.to_string()),
            arch::Error::Config(why) => {
                CommandError::BadDevice(format!("{} {what}: {why}", field.flag()))
            }
            other => CommandError::Failed(other.to_string()),
        })?;
        let id = match &device {
            DeviceConfig::Disk(d) => d.id.clone(),
            DeviceConfig::Net(n) => n.id.clone(),
            DeviceConfig::Vsock(v) => v.id.clone(),
        }
        .unwrap_or_default();
        log::info!(
            "management API: plugged {} {what} in as {id:?} at {}",
            field.flag(),
            plugged.address
        );
        add_to_config(self.config, &device);
        match host {
            Host::Disk(d) => self.backends.disks.push(d),
            Host::Net(n) => self.backends.nets.push(n),
            Host::Vsock(v) => self.backends.vsock = Some(v),
        }
        self.plugged.push((id.clone(), plugged.slot));
        self.publish();
        Ok(Answer::Added(Added {
            id,
            bdf: plugged.address,
        }))
    }

    /// Unplug the device `id` from `vm` and take it out of the configuration, closing its
    /// host side (the image's lock released, the vsock socket removed). What the backend
    /// cannot unplug (a virtio-mmio device attached at boot) is refused.
    pub fn remove<V: Vm>(&mut self, vm: &V, id: &str) -> Result<Answer, CommandError> {
        let Some(at) = self.plugged.iter().position(|(p, _)| p == id) else {
            return Err(if device_ids(self.config).iter().any(|(_, d)| d == id) {
                CommandError::NotHotplugged(id.to_string())
            } else {
                CommandError::NoSuchDevice(id.to_string())
            });
        };
        vm.unplug_virtio_device(self.plugged[at].1)
            .map_err(|e| match e {
                arch::Error::Unsupported { .. } => CommandError::Unsupported(e.to_string()),
                other => CommandError::Failed(other.to_string()),
            })?;
        self.plugged.remove(at);
        remove_from_config(self.config, Some(self.backends), id);
        self.publish();
        log::info!("management API: unplugged {id:?}");
        Ok(Answer::Done)
    }
}

/// The host side of a device being plugged in.
enum Host {
    Disk(crate::disks::OpenDisk),
    Net(crate::nets::OpenNet),
    Vsock(crate::vsock::OpenVsock),
}

#[cfg(test)]
pub(crate) mod tests;
