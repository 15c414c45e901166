// SPDX-License-Identifier: Apache-2.0
//! The queues of an activated virtio-net device and what serves them on its worker thread:
//! each pass moves up to [`MAX_PACKETS_PER_PASS`] packets the guest sent, then up to as
//! many the tap has, and tells the worker whether to wait on the tap's readability.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;

use super::rx::RxState;
use super::{Backend, MAX_PACKETS_PER_PASS, RX, TX, WARN_LIMIT};
use crate::virtio::worker::QueueHandler;
use crate::virtio::{GuestMemory, VirtioInterrupt};

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
    warnings: u32,
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
            warnings: 0,
        }
    }

    pub(super) fn warn(&mut self, args: std::fmt::Arguments) {
        if self.warnings < WARN_LIMIT {
            self.warnings += 1;
            log::warn!("{}: {args}", self.name);
        } else {
            log::debug!("{}: {args}", self.name);
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
        tx_more || rx_more
    }

    fn host_fds(&self) -> Vec<std::os::fd::RawFd> {
        vec![self.backend.fd()]
    }

    fn interest(&self, _index: usize) -> EventSet {
        // Read the tap only while no packet waits for receive buffers.
        if self.rx.waiting_for_buffers() {
            EventSet::empty()
        } else {
            EventSet::IN
        }
    }

    fn host_ready(&mut self, _index: usize, events: EventSet) {
        if events.intersects(EventSet::ERROR | EventSet::HANG_UP) {
            self.warn(format_args!(
                "the tap reported an error or hang-up ({events:?}); no more receiving"
            ));
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
