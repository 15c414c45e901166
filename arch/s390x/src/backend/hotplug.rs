// SPDX-License-Identifier: Apache-2.0
//! Virtio-ccw devices on the channel subsystem: attached before boot, hotplugged and
//! unplugged while the guest runs (QEMU's virtio-ccw hotplug: the subchannel appears or
//! vanishes, a channel report word says which, a machine check says there is one).

use std::sync::Arc;

use arch::{Error, Hotplugged, Result};
use devices::css::SubchannelId;
use devices::virtio::ccw::VirtioCcw;
use devices::virtio::VirtioDevice;

use super::{bind_ccw_notifies, KvmS390Vm};

impl KvmS390Vm {
    /// Put `device` on the next free subchannel behind virtio-ccw, with its adapter routes
    /// and its notifications bound; `announce` it to a running guest (hotplug) or not
    /// (before boot: the guest finds it by its scan).
    pub(super) fn attach_ccw(
        &self,
        device: Box<dyn VirtioDevice>,
        announce: bool,
    ) -> Result<SubchannelId> {
        let kind = device.device_type();
        let queues = device.queue_max_sizes().len();
        let routes = self.adapter_routes(queues);
        let mem = self.memory.clone();
        let mut events = Vec::new();
        let make = |sch| -> Box<dyn devices::css::CcwDevice> {
            let ccw = VirtioCcw::new(device, mem, sch);
            events = ccw.queue_events();
            Box::new(match routes {
                Some(r) => ccw.with_adapter_routes(Box::new(r)),
                None => ccw,
            })
        };
        // A hotplugged device's notifications are bound just after the guest is told of
        // it; one that comes first reaches the DIAG 0x500 intercept, which kicks the same
        // EventFd.
        let id = if announce {
            self.css.plug(make)
        } else {
            self.css.add_device(make)
        }
        .ok_or_else(|| Error::Config("no free subchannel".into()))?;
        let notifies = bind_ccw_notifies(&self.vm, id, &events);
        self.queue_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.number, events);
        // Short lines: under Hercules they end up on a 3215 console that cuts long ones.
        log::info!(
            "virtio-ccw: device type {kind} on subchannel 0.{}.{:04x}{}",
            id.ssid,
            id.number,
            if announce { " (hotplug)" } else { "" }
        );
        log::info!("virtio-ccw: notifies {notifies}");
        Ok(id)
    }

    /// [`arch::Vm::hotplug_virtio_device`]: a new subchannel, announced.
    pub(super) fn hotplug(&self, device: Box<dyn VirtioDevice>) -> Result<Hotplugged> {
        if !self.started {
            return Err(Error::Config(
                "hotplug before the guest runs: attach the device at boot".into(),
            ));
        }
        if !self.css_support {
            return Err(Error::MissingCapability("KVM_CAP_S390_CSS_SUPPORT"));
        }
        let id = self.attach_ccw(device, true)?;
        Ok(Hotplugged {
            slot: u32::from(id.number),
            address: format!("0.{}.{:04x}", id.ssid, id.number),
        })
    }

    /// [`arch::Vm::unplug_virtio_device`]: the subchannel vanishes (announced), its
    /// notifications are unbound and the device dropped (its worker stops, what it had in
    /// flight finishes, its adapter routes and irqfds go).
    pub(super) fn unplug(&self, slot: u32) -> Result<()> {
        let number =
            u16::try_from(slot).map_err(|_| Error::Config(format!("no subchannel {slot:#x}")))?;
        let device = self
            .css
            .unplug(number)
            .ok_or_else(|| Error::Config(format!("no device on subchannel 0.0.{number:04x}")))?;
        let events = self
            .queue_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&number)
            .unwrap_or_default();
        let id = SubchannelId {
            cssid: devices::css::VIRTUAL_CSSID,
            ssid: 0,
            number,
        };
        unbind_ccw_notifies(&self.vm, id, &events);
        drop(device);
        log::info!("virtio-ccw: subchannel 0.0.{number:04x} unplugged");
        Ok(())
    }
}

/// Undo `bind_ccw_notifies` for the queues it bound (a queue that was never bound, where
/// notifies went through the DIAG 0x500 intercept, fails to unbind quietly).
fn unbind_ccw_notifies(
    vm: &crate::kvm::ioctls::VmFd,
    id: SubchannelId,
    events: &[Arc<vmm_sys_util::eventfd::EventFd>],
) {
    let forms = [SubchannelId { cssid: 0, ..id }.encode(), id.encode()];
    for (queue, event) in events.iter().enumerate() {
        let Ok(queue) = u16::try_from(queue) else {
            break;
        };
        for schid in forms {
            if let Err(e) = vm.unregister_ccw_ioeventfd(&**event, schid, queue) {
                log::debug!("KVM_IOEVENTFD deassign {schid:#010x} queue {queue}: {e}");
            }
        }
    }
}
