// SPDX-License-Identifier: Apache-2.0
//! The host side of the guest's virtio devices: disk images, taps and the vsock socket,
//! opened once per run before any guest runs (so every bad `--disk`, `--net` or `--vsock`
//! is refused before the kernel is even opened) and held across every boot that
//! `--on-reset restart` makes; each boot gets fresh devices over the same host objects.
//! The management API adds to and removes from the same set (vmm/src/hotplug.rs).

use arch::{VirtioTransport, Vm};
use devices::virtio::VirtioDevice;

use crate::config::{Config, Field};
use crate::disks::OpenDisk;
use crate::machine::{io_err, Error};
use crate::nets::OpenNet;
use crate::vsock::OpenVsock;

/// What the virtio devices of a run are backed by on the host.
#[derive(Default)]
pub struct HostBackends {
    /// `--disk`, in flag order, opened and locked.
    pub disks: Vec<OpenDisk>,
    /// `--net`, in flag order, taps attached or created and configured.
    pub nets: Vec<OpenNet>,
    /// `--vsock`, its socket bound (removed when this is dropped).
    pub vsock: Option<OpenVsock>,
}

impl HostBackends {
    /// Open what `config` asks for, in the order of the flags' documentation.
    pub fn open(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            disks: crate::disks::open(&config.disks)?,
            nets: crate::nets::open(&config.nets)?,
            vsock: crate::vsock::open(config.vsock.as_ref())?,
        })
    }

    /// Attach one boot's virtio devices to `vm` (before `load`: the firmware tables
    /// describe them) and return the transports the VMM places on its buses. Disks come
    /// first, in flag order (on virtio-mmio the guest finds them in that order, `/dev/vda`
    /// first; s390x Linux probes subchannels in its own order), then the networks, the rng
    /// and the vsock.
    pub fn attach<V: Vm>(
        &self,
        vm: &mut V,
        config: &Config,
    ) -> Result<Vec<VirtioTransport>, Error> {
        let mut transports = Vec::new();
        for disk in &self.disks {
            transports.extend(attach(
                vm,
                Box::new(disk.device()),
                Field::Disk,
                "virtio-blk (no virtio transport on this architecture)",
                format!("{:?}", disk.config.path),
            )?);
        }
        for net in &self.nets {
            transports.extend(attach(
                vm,
                Box::new(net.device()),
                Field::Net,
                "virtio-net (no virtio transport on this architecture)",
                net.flag_value(),
            )?);
        }
        if config.rng {
            let rng = test_hook::rng().map_err(io_err("--rng: opening /dev/urandom"))?;
            transports.extend(attach(
                vm,
                Box::new(rng),
                Field::Rng,
                "virtio-rng (no virtio transport on this architecture)",
                "on".to_string(),
            )?);
        }
        if let Some(vsock) = &self.vsock {
            let device = vsock
                .device()
                .map_err(io_err("--vsock: setting up the device"))?;
            transports.extend(attach(
                vm,
                Box::new(device),
                Field::Vsock,
                "virtio-vsock (no virtio transport on this architecture)",
                format!("socket={:?}", vsock.config.socket),
            )?);
        }
        Ok(transports)
    }
}

/// Attach one virtio device for `field`: a backend without a virtio transport makes it
/// "not available" (`what` names the device and why); a full transport (its error says
/// how many devices fit) is the user's error about `value`.
fn attach<V: Vm>(
    vm: &mut V,
    device: Box<dyn VirtioDevice>,
    field: Field,
    what: &'static str,
    value: String,
) -> Result<Option<VirtioTransport>, Error> {
    match vm.add_virtio_device(device) {
        Ok(transport) => Ok(transport),
        Err(arch::Error::Unsupported { .. }) => Err(Error::NotYet { field, what }),
        Err(arch::Error::Config(why)) => Err(Error::Input {
            field,
            message: format!("{value}: {why}"),
        }),
        Err(e) => Err(Error::Backend(e)),
    }
}

/// A way for the tests to show that a blocked device never blocks the vCPU that notified
/// it (tests/tests/device_thread.rs): in debug builds only,
/// `POLYVISOR_TEST_RNG_STALL_MS=N` makes virtio-rng's entropy source sleep N ms (at most
/// 10 s) before each read, so every request stalls the device's worker thread that long.
/// Release builds have no such hook.
mod test_hook {
    use devices::virtio::Rng;

    #[cfg(debug_assertions)]
    pub fn rng() -> std::io::Result<Rng> {
        use std::io::Read;
        use std::time::Duration;

        struct Stalling(std::fs::File, Duration);
        impl Read for Stalling {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::thread::sleep(self.1);
                self.0.read(buf)
            }
        }

        let stall = std::env::var("POLYVISOR_TEST_RNG_STALL_MS")
            .ok()
            .and_then(|ms| ms.parse::<u64>().ok());
        match stall {
            Some(ms) => {
                let ms = ms.min(10_000);
                log::warn!("virtio-rng: test hook: every request stalls {ms} ms (POLYVISOR_TEST_RNG_STALL_MS)");
                let urandom = std::fs::File::open("/dev/urandom")?;
                let source = Stalling(urandom, Duration::from_millis(ms));
                Ok(Rng::with_source(Box::new(source)))
            }
            None => Rng::new(),
        }
    }

    #[cfg(not(debug_assertions))]
    pub fn rng() -> std::io::Result<Rng> {
        Rng::new()
    }
}
