// SPDX-License-Identifier: Apache-2.0
//! Adapter interrupts for virtio-ccw through KVM's adapter routes, as QEMU sets them up
//! with its FLIC: the floating-interrupt controller device gets one I/O adapter per ISC
//! (`KVM_DEV_FLIC_ADAPTER_REGISTER`, indicator bits numbered from the most significant bit:
//! `swap`), each virtio queue gets a GSI with an irqfd, and when the driver names its
//! indicators (SET_IND_ADAPTER) the GSI's route (`KVM_IRQ_ROUTING_S390_ADAPTER`) says which
//! queue bit and summary bit KVM sets before it makes the adapter interruption pending. The
//! device thread then only writes the queue's `EventFd`. Where any of this is missing, the
//! device thread sets the bits itself and injects with `KVM_S390_INTERRUPT`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use devices::virtio::ccw::{AdapterIndicators, AdapterRoutes};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::adapter_route::route;
use crate::kvm::bindings::*;
use crate::kvm::ioctls::{DeviceFd, VmFd};

/// The VM's FLIC and its routing table.
pub(super) struct AdapterRouting {
    vm: Arc<VmFd>,
    _flic: DeviceFd,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    table: BTreeMap<u32, KvmIrqRoutingEntry>,
    next_gsi: u32,
}

impl AdapterRouting {
    /// The FLIC with an adapter for each ISC, or why KVM cannot route here.
    pub(super) fn new(vm: Arc<VmFd>) -> Result<Arc<Self>, String> {
        for (cap, name) in [
            (KVM_CAP_IRQFD, "KVM_CAP_IRQFD"),
            (KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"),
            (KVM_CAP_S390_IRQCHIP, "KVM_CAP_S390_IRQCHIP"),
            (KVM_CAP_DEVICE_CTRL, "KVM_CAP_DEVICE_CTRL"),
        ] {
            if vm.check_extension(cap) <= 0 {
                return Err(format!("no {name}"));
            }
        }
        let flic = vm.create_adapter_flic()?;
        Ok(Arc::new(Self {
            vm,
            _flic: flic,
            state: Mutex::new(State::default()),
        }))
    }

    /// GSIs with irqfds for a device's `queues` queues (routed once the driver asks).
    pub(super) fn device(self: &Arc<Self>, queues: usize) -> Result<DeviceRoutes, String> {
        let mut gsis = Vec::with_capacity(queues);
        let mut events = Vec::with_capacity(queues);
        for _ in 0..queues {
            let gsi = {
                let mut state = self.lock();
                let gsi = state.next_gsi;
                state.next_gsi += 1;
                gsi
            };
            let event = EventFd::new(EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
            self.vm
                .register_irqfd(&event, gsi)
                .map_err(|e| format!("KVM_IRQFD (GSI {gsi}): {e}"))?;
            gsis.push(gsi);
            events.push(Arc::new(event));
        }
        Ok(DeviceRoutes {
            routing: self.clone(),
            gsis,
            events,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the table with `change` and hand it to KVM; unchanged if KVM refuses it.
    fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<u32, KvmIrqRoutingEntry>),
    ) -> std::io::Result<()> {
        let mut state = self.lock();
        let mut table = state.table.clone();
        change(&mut table);
        let entries: Vec<_> = table.values().copied().collect();
        self.vm.set_gsi_routing(&entries)?;
        state.table = table;
        Ok(())
    }
}

/// One virtio-ccw device's GSIs and their irqfds.
pub(super) struct DeviceRoutes {
    routing: Arc<AdapterRouting>,
    gsis: Vec<u32>,
    events: Vec<Arc<EventFd>>,
}

impl AdapterRoutes for DeviceRoutes {
    fn set(&self, a: &AdapterIndicators, queues: u16) -> Result<Vec<Arc<EventFd>>, String> {
        let n = usize::from(queues).min(self.gsis.len());
        let entries = (0..n)
            .map(|i| route(self.gsis[i], a, i as u16).ok_or("indicator address overflows"))
            .collect::<Result<Vec<_>, _>>()?;
        self.routing
            .update(|table| {
                for e in entries {
                    table.insert(e.gsi, e);
                }
            })
            .map_err(|e| format!("KVM_SET_GSI_ROUTING: {e}"))?;
        Ok(self.events[..n].to_vec())
    }

    fn clear(&self) {
        if let Err(e) = self.routing.update(|table| {
            for gsi in &self.gsis {
                table.remove(gsi);
            }
        }) {
            log::warn!("virtio-ccw: removing adapter routes: KVM_SET_GSI_ROUTING: {e}");
        }
    }
}

impl Drop for DeviceRoutes {
    /// The device is gone (hot-unplugged, or the VM ends): its routes and irqfds go too,
    /// so a later device's GSIs are the only ones KVM knows.
    fn drop(&mut self) {
        self.clear();
        for (gsi, event) in self.gsis.iter().zip(&self.events) {
            if let Err(e) = self.routing.vm.unregister_irqfd(&**event, *gsi) {
                log::warn!("virtio-ccw: KVM_IRQFD deassign (GSI {gsi}): {e}");
            }
        }
    }
}
