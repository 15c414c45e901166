// SPDX-License-Identifier: Apache-2.0
//! A device's worker thread: the place a virtio device's queue work runs, off the vCPU
//! threads.
//!
//! The transport turns a driver's notification into [`Worker::kick`] (an `EventFd` write:
//! the vCPU thread never runs device code and never waits on the device). The worker waits
//! with epoll on its kick and stop `EventFd`s and calls [`QueueHandler::serve`], which does
//! a bounded amount of work per call. When work is left over, the worker kicks itself and
//! goes back to epoll, so a stop request is seen between two bounded passes however fast a
//! guest keeps adding requests: nothing is lost, nothing is unbounded.
//!
//! A device with a host backend (virtio-net's tap) also names host file descriptors
//! ([`QueueHandler::host_fds`]) and says after each pass what to wait for on each
//! ([`QueueHandler::interest`], level-triggered; nothing while it cannot take the data, so
//! a full guest queue never makes the worker spin); their readiness reaches the handler
//! ([`QueueHandler::host_ready`]) and is followed by a pass, like a kick.
//!
//! Written here rather than with `event-manager`: one thread with a few event sources does
//! not need a subscriber registry, and this keeps the device crate free of `unsafe`.
//! The kick `EventFd` is what a later change binds to `KVM_IOEVENTFD`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Work a device does when its queues are notified.
pub trait QueueHandler: Send + 'static {
    /// Serve a bounded amount of the pending work; return `true` when more is pending.
    fn serve(&mut self) -> bool;

    /// Host file descriptors the worker also waits on for this handler (a tap, a socket),
    /// in a fixed order for the handler's life; none by default. The worker asks
    /// [`QueueHandler::interest`] what to wait for on each after every pass.
    fn host_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }

    /// What to wait for on host fd `index` now (level-triggered; empty: nothing, e.g. no
    /// reading while the guest has no buffers to read into). Errors and hang-ups are
    /// always reported.
    fn interest(&self, _index: usize) -> EventSet {
        EventSet::empty()
    }

    /// Host fd `index` reported `events`; [`QueueHandler::serve`] is called next. After an
    /// error or a hang-up (`EPOLLERR`, `EPOLLHUP`) the worker stops waiting on that fd.
    fn host_ready(&mut self, _index: usize, _events: EventSet) {}
}

const KICK: u64 = 1;
const STOP: u64 = 2;

/// How long [`Worker::stop`] waits for the thread before leaving it behind.
pub const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// A running worker thread serving one handler.
pub struct Worker<H: QueueHandler> {
    kick: Arc<EventFd>,
    stop: EventFd,
    thread: Option<JoinHandle<H>>,
    name: String,
}

impl<H: QueueHandler> Worker<H> {
    /// Start a thread named `name` that serves `handler` on every kick.
    pub fn spawn(name: &str, handler: H) -> io::Result<Self> {
        Self::spawn_on(name, Arc::new(EventFd::new(EFD_NONBLOCK)?), handler)
    }

    /// [`Worker::spawn`] woken by `kick`, an `EventFd` the device keeps across activations
    /// (the one bound as its ioeventfd).
    pub fn spawn_on(name: &str, kick: Arc<EventFd>, handler: H) -> io::Result<Self> {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            kick.as_raw_fd(),
            EpollEvent::new(EventSet::IN, KICK),
        )?;
        epoll.ctl(
            ControlOperation::Add,
            stop.as_raw_fd(),
            EpollEvent::new(EventSet::IN, STOP),
        )?;
        let host = HostFds::register(&epoll, &handler)?;
        let thread_kick = kick.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(epoll, &thread_kick, host, handler))?;
        Ok(Self {
            kick,
            stop,
            thread: Some(thread),
            name: name.to_string(),
        })
    }

    /// The driver notified: wake the worker. Never blocks.
    pub fn kick(&self) {
        // An eventfd write only fails when the counter would overflow, i.e. a kick is
        // already pending: nothing is lost.
        let _ = self.kick.write(1);
    }

    /// The `EventFd` that wakes the worker (for binding as an ioeventfd).
    pub fn kick_event(&self) -> &EventFd {
        &self.kick
    }

    /// Stop the thread and take the handler back; `None` when the thread panicked or did
    /// not stop within [`STOP_DEADLINE`] (it is then left behind, with a log line).
    pub fn stop(mut self) -> Option<H> {
        self.stop_within(STOP_DEADLINE)
    }

    fn stop_within(&mut self, deadline: Duration) -> Option<H> {
        let thread = self.thread.take()?;
        let _ = self.stop.write(1);
        let start = Instant::now();
        while !thread.is_finished() {
            if start.elapsed() >= deadline {
                log::error!(
                    "{}: worker thread did not stop within {:.1} s; leaving it behind",
                    self.name,
                    deadline.as_secs_f64()
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        match thread.join() {
            Ok(handler) => Some(handler),
            Err(_) => {
                log::error!("{}: worker thread panicked", self.name);
                None
            }
        }
    }
}

impl<H: QueueHandler> Drop for Worker<H> {
    fn drop(&mut self) {
        self.stop_within(STOP_DEADLINE);
    }
}

/// The handler's host fds as registered: what each waits for now, `None` once dropped.
struct HostFds {
    fds: Vec<(RawFd, Option<EventSet>)>,
}

/// Event data of host fd `index`: after the kick and stop tokens.
const HOST_BASE: u64 = 16;

impl HostFds {
    fn register<H: QueueHandler>(epoll: &Epoll, handler: &H) -> io::Result<Self> {
        let mut fds = Vec::new();
        for (i, fd) in handler.host_fds().into_iter().enumerate() {
            let want = handler.interest(i);
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(want, HOST_BASE + i as u64),
            )?;
            fds.push((fd, Some(want)));
        }
        Ok(Self { fds })
    }

    /// Bring each fd's registration in line with what the handler wants now.
    fn update<H: QueueHandler>(&mut self, epoll: &Epoll, handler: &H) {
        for (i, (fd, current)) in self.fds.iter_mut().enumerate() {
            let Some(have) = *current else { continue };
            let want = handler.interest(i);
            if want == have {
                continue;
            }
            match epoll.ctl(
                ControlOperation::Modify,
                *fd,
                EpollEvent::new(want, HOST_BASE + i as u64),
            ) {
                Ok(()) => *current = Some(want),
                Err(e) => {
                    log::error!("device worker: epoll_ctl on host fd {fd}: {e}; not waiting on it");
                    let _ = epoll.ctl(ControlOperation::Delete, *fd, EpollEvent::default());
                    *current = None;
                }
            }
        }
    }

    /// Stop waiting on fd `index` (it reported an error or hang-up).
    fn drop_fd(&mut self, epoll: &Epoll, index: usize) {
        if let Some((fd, current)) = self.fds.get_mut(index) {
            if current.take().is_some() {
                let _ = epoll.ctl(ControlOperation::Delete, *fd, EpollEvent::default());
            }
        }
    }
}

fn run<H: QueueHandler>(epoll: Epoll, kick: &EventFd, mut host: HostFds, mut handler: H) -> H {
    let mut events = vec![EpollEvent::default(); 2 + host.fds.len()];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("device worker: epoll_wait failed: {e}; stopping");
                return handler;
            }
        };
        let mut kicked = false;
        let mut woken = false;
        for event in &events[..n] {
            match event.data() {
                STOP => return handler,
                KICK => kicked = true,
                data if data >= HOST_BASE => {
                    let index = (data - HOST_BASE) as usize;
                    let set = event.event_set();
                    handler.host_ready(index, set);
                    if set.intersects(EventSet::ERROR | EventSet::HANG_UP) {
                        host.drop_fd(&epoll, index);
                    }
                    woken = true;
                }
                _ => {}
            }
        }
        if kicked {
            // Reset the counter before serving, so a kick during the pass is not lost.
            let _ = kick.read();
        }
        if kicked || woken {
            if handler.serve() {
                // More is pending: come back after looking at the stop event again.
                let _ = kick.write(1);
            }
            host.update(&epoll, &handler);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Pretends to have `pending` units of work and serves at most 3 per pass.
    struct Counter {
        pending: Arc<AtomicU64>,
        passes: Arc<AtomicU64>,
    }

    impl QueueHandler for Counter {
        fn serve(&mut self) -> bool {
            self.passes.fetch_add(1, Ordering::SeqCst);
            let left = self.pending.load(Ordering::SeqCst);
            let now = left.saturating_sub(3);
            self.pending.store(now, Ordering::SeqCst);
            now > 0
        }
    }

    fn wait_until(what: impl Fn() -> bool) {
        let start = Instant::now();
        while !what() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn serves_in_bounded_passes_until_nothing_is_left() {
        let pending = Arc::new(AtomicU64::new(10));
        let passes = Arc::new(AtomicU64::new(0));
        let worker = Worker::spawn(
            "test-worker",
            Counter {
                pending: pending.clone(),
                passes: passes.clone(),
            },
        )
        .unwrap();
        worker.kick();
        wait_until(|| pending.load(Ordering::SeqCst) == 0);
        // 10 units at 3 per pass: 4 passes, each one bounded.
        assert_eq!(passes.load(Ordering::SeqCst), 4);
        let handler = worker.stop().expect("worker stopped");
        assert_eq!(handler.pending.load(Ordering::SeqCst), 0);
    }

    /// Reads a datagram socket while `open`, counting passes and messages.
    struct Reader {
        sock: std::os::unix::net::UnixDatagram,
        open: Arc<std::sync::atomic::AtomicBool>,
        passes: Arc<AtomicU64>,
        read: Arc<AtomicU64>,
    }

    impl QueueHandler for Reader {
        fn serve(&mut self) -> bool {
            self.passes.fetch_add(1, Ordering::SeqCst);
            if self.open.load(Ordering::SeqCst) {
                while self.sock.recv(&mut [0u8; 16]).is_ok() {
                    self.read.fetch_add(1, Ordering::SeqCst);
                }
            }
            false
        }
        fn host_fds(&self) -> Vec<RawFd> {
            vec![self.sock.as_raw_fd()]
        }
        fn interest(&self, _index: usize) -> EventSet {
            if self.open.load(Ordering::SeqCst) {
                EventSet::IN
            } else {
                EventSet::empty()
            }
        }
    }

    #[test]
    fn host_fds_wake_the_worker_only_while_it_wants_them() {
        let (sock, peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
        sock.set_nonblocking(true).unwrap();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let passes = Arc::new(AtomicU64::new(0));
        let read = Arc::new(AtomicU64::new(0));
        let worker = Worker::spawn(
            "reader",
            Reader {
                sock,
                open: open.clone(),
                passes: passes.clone(),
                read: read.clone(),
            },
        )
        .unwrap();
        peer.send(b"a").unwrap();
        wait_until(|| read.load(Ordering::SeqCst) == 1);
        // Closed: after one more pass (which reads the new interest), unread data does not
        // wake the worker again and again.
        open.store(false, Ordering::SeqCst);
        peer.send(b"b").unwrap();
        wait_until(|| passes.load(Ordering::SeqCst) >= 2);
        std::thread::sleep(Duration::from_millis(50));
        let settled = passes.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(passes.load(Ordering::SeqCst), settled, "no spinning");
        assert_eq!(read.load(Ordering::SeqCst), 1);
        // Open again and kick (as a guest's notify does): the data is read.
        open.store(true, Ordering::SeqCst);
        worker.kick();
        wait_until(|| read.load(Ordering::SeqCst) == 2);
        assert!(worker.stop().is_some());
    }

    #[test]
    fn stops_promptly_while_work_never_runs_out() {
        struct Endless;
        impl QueueHandler for Endless {
            fn serve(&mut self) -> bool {
                true
            }
        }
        let worker = Worker::spawn("endless", Endless).unwrap();
        worker.kick();
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        assert!(worker.stop().is_some());
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
