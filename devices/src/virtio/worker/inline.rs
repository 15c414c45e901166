// SPDX-License-Identifier: Apache-2.0
//! The worker without a thread, for fuzzing only (cargo feature `fuzzing`, which the
//! `fuzz/` crate turns on and nothing else does): [`Worker::kick`] serves the handler on
//! the caller's thread, in the same bounded passes the thread would run, until nothing is
//! ready or [`MAX_PASSES`] passes ran. A fuzz input then runs the same way every time, and
//! whatever the queues' contents make a handler do happens before the next register access.

use std::sync::{Arc, Mutex};

use vmm_sys_util::epoll::Epoll;
use vmm_sys_util::eventfd::EventFd;

use super::{step, QueueHandler, Step, Worker, WorkerFds};

/// The handler and the epoll it registered its fds with.
pub(super) type Inline<H> = Mutex<(Arc<Epoll>, H)>;

/// The most passes one kick serves inline (a guest that keeps work pending is bounded
/// here as the thread bounds it between stop checks).
pub const MAX_PASSES: usize = 64;

/// A [`Worker`] whose handler runs on whoever kicks it.
pub(super) fn worker<H: QueueHandler>(
    name: &str,
    kick: Arc<EventFd>,
    stop: EventFd,
    epoll: Arc<Epoll>,
    mut handler: H,
) -> Worker<H> {
    handler.attach(WorkerFds {
        epoll: epoll.clone(),
    });
    Worker {
        kick,
        stop,
        thread: None,
        name: name.to_string(),
        inline: Some(Box::new(Mutex::new((epoll, handler)))),
    }
}

impl<H: QueueHandler> Worker<H> {
    /// Serve what is ready now, as the thread would, without waiting.
    pub(super) fn serve_inline(&self) {
        let Some(inline) = &self.inline else { return };
        let mut guard = inline.lock().unwrap_or_else(|p| p.into_inner());
        let (epoll, handler) = &mut *guard;
        for _ in 0..MAX_PASSES {
            if step(epoll, &self.kick, handler, 0) != Step::Served {
                break;
            }
        }
    }
}
