// SPDX-License-Identifier: Apache-2.0
//! The queues of an activated virtio-net device and what serves them on its worker thread:
//! each pass moves up to [`MAX_PACKETS_PER_PASS`] packets the guest sent, then up to as
//! many the tap has, and tells the worker whether to wait on the tap's readability.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;

use super::rx::RxState;
use super::{Backend, MAX_PACKETS_PER_PASS, RX, TX};
use crate::virtio::worker::{QueueHandler, WorkerFds};
use crate::virtio::{DriverWarnings, GuestMemory, VirtioInterrupt};

/// The tap's token in the worker's epoll.
const TAP: u64 = 0;

pub(super) struct Active {
    pub mem: GuestMemory,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    pub rx: Queue,
    pub tx: Queue,
}

/// What serves an activated device's receive and transmit queues.
pub struct NetQueues {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) features: u64,
    pub(super) active: Active,
    pub(super) rx: RxState,
    pub(super) name: String,
    warnings: DriverWarnings,
    /// The worker's epoll, once attached.
    fds: Option<WorkerFds>,
    /// What the worker waits for on the tap now; `None` once it is no longer registered
    /// (it reported an error or hang-up, or could not be registered).
    tap_interest: Option<EventSet>,
}

impl NetQueues {
    pub(super) fn new(
        backend: Arc<dyn Backend>,
        features: u64,
        active: Active,
        name: String,
    ) -> Self {
        Self {
            backend,
            features,
            active,
            rx: RxState::new(),
            name,
            warnings: DriverWarnings::default(),
            fds: None,
            tap_interest: None,
        }
    }

    pub(super) fn warn(&mut self, args: std::fmt::Arguments) {
        self.warnings.warn(&self.name, args);
    }

    /// What to wait for on the tap now: its readability only while no packet waits for
    /// receive buffers (level-triggered; the guest's rx notify brings it back).
    pub(super) fn tap_wanted(&self) -> EventSet {
        if self.rx.waiting_for_buffers() {
            EventSet::empty()
        } else {
            EventSet::IN
        }
    }

    /// Bring the tap's registration in line with [`NetQueues::tap_wanted`].
    fn update_tap_interest(&mut self) {
        let (Some(fds), Some(have)) = (&self.fds, self.tap_interest) else {
            return;
        };
        let want = self.tap_wanted();
        if want == have {
            return;
        }
        match fds.modify(&self.backend.fd(), TAP, want) {
            Ok(()) => self.tap_interest = Some(want),
            Err(e) => {
                let _ = fds.remove(&self.backend.fd());
                self.tap_interest = None;
                self.rx.tap_gone();
                self.warn(format_args!(
                    "cannot wait on the tap: {e}; no more receiving"
                ));
            }
        }
    }

    /// Interrupt the driver for queue `index` if it wants to be (`EVENT_IDX`).
    pub(super) fn signal_used(&mut self, index: u16) {
        let queue = if index == RX {
            &mut self.active.rx
        } else {
            &mut self.active.tx
        };
        match queue.needs_notification(&self.active.mem) {
            Ok(false) => {}
            Ok(true) => self.active.interrupt.signal_used_queue(index),
            Err(e) => {
                self.warn(format_args!("queue {index}: reading the used event: {e}"));
                self.active.interrupt.signal_used_queue(index);
            }
        }
    }
}

impl QueueHandler for NetQueues {
    fn serve(&mut self) -> bool {
        let (sent, tx_more) = self.serve_tx();
        if sent > 0 {
            self.signal_used(TX);
        }
        let (received, rx_more) = self.serve_rx();
        if received > 0 {
            self.signal_used(RX);
        }
        self.update_tap_interest();
        tx_more || rx_more
    }

    fn attach(&mut self, fds: WorkerFds) {
        let want = self.tap_wanted();
        match fds.add(&self.backend.fd(), TAP, want) {
            Ok(()) => self.tap_interest = Some(want),
            Err(e) => {
                self.rx.tap_gone();
                self.warn(format_args!("cannot wait on the tap: {e}; no receiving"));
            }
        }
        self.fds = Some(fds);
    }

    fn ready(&mut self, _token: u64, events: EventSet) {
        if events.intersects(EventSet::ERROR | EventSet::HANG_UP) {
            self.warn(format_args!(
                "the tap reported an error or hang-up ({events:?}); no more receiving"
            ));
            if let Some(fds) = &self.fds {
                let _ = fds.remove(&self.backend.fd());
            }
            self.tap_interest = None;
            self.rx.tap_gone();
        } else if events.contains(EventSet::IN) {
            self.rx.tap_readable();
        }
    }
}

/// Bound a pass: `true` when `n` packets used up the pass's budget.
pub(super) fn budget_spent(n: usize) -> bool {
    n >= MAX_PACKETS_PER_PASS
}
