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
//! A device with a host backend that has file descriptors of its own (virtio-net's tap, vsock's Unix
//! sockets) gets a [`WorkerFds`] in [`QueueHandler::attach`] and adds, changes and removes
//! them with tokens of its choosing; when one is ready the worker calls
//! [`QueueHandler::ready`] and then a pass of [`QueueHandler::serve`], as for a kick. The
//! handler keeps the interest of each fd to what it can act on (no `IN` while it cannot
//! take more input), so a ready fd never makes the worker spin.
//!
//! Written here rather than with `event-manager`: one thread with a few event sources does
//! not need a subscriber registry, and this keeps the device crate free of `unsafe`.
//! The kick `EventFd` is what a later change binds to `KVM_IOEVENTFD`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Work a device does when its queues are notified.
pub trait QueueHandler: Send + 'static {
    /// Serve a bounded amount of the pending work; return `true` when more is pending.
    fn serve(&mut self) -> bool;

    /// Called once on the worker thread before the first pass: a handler with file
    /// descriptors of its own keeps `fds` to register them. The default ignores it.
    fn attach(&mut self, _fds: WorkerFds) {}

    /// A file descriptor registered through [`WorkerFds`] with `token` is ready
    /// (`events`); a pass of [`QueueHandler::serve`] follows. The default ignores it.
    fn ready(&mut self, _token: u64, _events: EventSet) {}

    /// Called on the worker thread when it is told to stop (device reset or drop), before
    /// it ends: a handler with host I/O in flight into guest memory waits for it here. The
    /// default does nothing.
    fn stop(&mut self) {}
}

/// A queue an activated device serves: the memory its rings are in, how to interrupt the
/// driver, the queue.
pub struct ActiveQueue {
    pub mem: super::GuestMemory,
    pub interrupt: Arc<dyn super::VirtioInterrupt>,
    pub queue: virtio_queue::Queue,
}

impl ActiveQueue {
    /// The one queue of a single-queue device, from what the transport hands to
    /// [`super::VirtioDevice::activate`].
    pub fn single(
        mem: super::GuestMemory,
        interrupt: Arc<dyn super::VirtioInterrupt>,
        queues: Vec<virtio_queue::Queue>,
    ) -> Result<Self, super::ActivateError> {
        let [queue] = super::take_queues(queues)?;
        Ok(Self {
            mem,
            interrupt,
            queue,
        })
    }

    /// What every pass over queue `index` ends with, once `used` buffers went to the used
    /// ring: interrupt the driver if it wants one (with `VIRTIO_F_EVENT_IDX`, only when
    /// its `used_event` was passed), and unless the pass ran `out_of_budget`, re-enable
    /// notifications (which writes `avail_event`, without which an EVENT_IDX driver stops
    /// notifying after its first request). Returns whether work is pending (the worker
    /// comes back for it); problems go to `warn`.
    pub fn end_pass(
        &mut self,
        index: u16,
        used: usize,
        out_of_budget: bool,
        warn: &mut dyn FnMut(std::fmt::Arguments),
    ) -> bool {
        use virtio_queue::QueueT;
        if used > 0 {
            match self.queue.needs_notification(&self.mem) {
                Ok(false) => {}
                Ok(true) => self.interrupt.signal_used_queue(index),
                Err(e) => {
                    warn(format_args!("reading the used event: {e}"));
                    self.interrupt.signal_used_queue(index);
                }
            }
        }
        if out_of_budget {
            return true;
        }
        // `true`: more arrived meanwhile.
        match self.queue.enable_notification(&self.mem) {
            Ok(more) => more && used > 0,
            Err(e) => {
                warn(format_args!("cannot re-enable notifications: {e}"));
                false
            }
        }
    }
}

const KICK: u64 = u64::MAX;
const STOP: u64 = u64::MAX - 1;
/// The largest token a handler may use (the worker keeps the two above).
pub const MAX_TOKEN: u64 = u64::MAX - 2;

/// The worker's epoll, as a handler sees it: add, change and remove the handler's own
/// file descriptors, each with a token (at most [`MAX_TOKEN`]) it gets back in
/// [`QueueHandler::ready`]. Level-triggered.
#[derive(Clone)]
pub struct WorkerFds {
    epoll: Arc<Epoll>,
}

impl WorkerFds {
    fn ctl(&self, op: ControlOperation, fd: RawFd, token: u64, events: EventSet) -> io::Result<()> {
        if token > MAX_TOKEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "worker token out of range",
            ));
        }
        self.epoll.ctl(op, fd, EpollEvent::new(events, token))
    }

    /// Wait on `fd` for `events` too.
    pub fn add(&self, fd: &impl AsRawFd, token: u64, events: EventSet) -> io::Result<()> {
        self.ctl(ControlOperation::Add, fd.as_raw_fd(), token, events)
    }

    /// Change what `fd` is waited on for (an empty set keeps it registered, silent).
    pub fn modify(&self, fd: &impl AsRawFd, token: u64, events: EventSet) -> io::Result<()> {
        self.ctl(ControlOperation::Modify, fd.as_raw_fd(), token, events)
    }

    /// Stop waiting on `fd` (closing it does that too).
    pub fn remove(&self, fd: &impl AsRawFd) -> io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Delete,
            fd.as_raw_fd(),
            EpollEvent::default(),
        )
    }
}

/// What every worker thread runs first, with its thread name, before it touches a queue:
/// the VMM puts the thread in its sandbox there (its seccomp filter), so this crate needs
/// neither `unsafe` nor per-architecture tables. An error ends the thread without serving.
pub type ThreadHook = fn(&str) -> io::Result<()>;

static THREAD_HOOK: RwLock<Option<ThreadHook>> = RwLock::new(None);

/// Set (or clear) the hook every worker started from now on runs first.
pub fn set_thread_hook(hook: Option<ThreadHook>) {
    *THREAD_HOOK.write().unwrap_or_else(|e| e.into_inner()) = hook;
}

fn run_thread_hook(name: &str) -> io::Result<()> {
    let hook = *THREAD_HOOK.read().unwrap_or_else(|e| e.into_inner());
    hook.map_or(Ok(()), |h| h(name))
}

/// How long [`Worker::stop`] waits for the thread before leaving it behind.
pub const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// A running worker thread serving one handler.
pub struct Worker<H: QueueHandler> {
    kick: Arc<EventFd>,
    stop: EventFd,
    thread: Option<JoinHandle<H>>,
    name: String,
    /// With the `fuzzing` feature: no thread; the handler and its epoll, served on the
    /// caller's thread by [`Worker::kick`] (see [`inline`]).
    #[cfg(feature = "fuzzing")]
    inline: Option<Box<inline::Inline<H>>>,
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
        // Fuzzing: no thread, the kick serves on the caller's thread (`inline`).
        #[cfg(feature = "fuzzing")]
        {
            Ok(inline::worker(name, kick, stop, Arc::new(epoll), handler))
        }
        #[cfg(not(feature = "fuzzing"))]
        {
            let thread_kick = kick.clone();
            let thread = std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || run(Arc::new(epoll), &thread_kick, handler))?;
            Ok(Self {
                kick,
                stop,
                thread: Some(thread),
                name: name.to_string(),
            })
        }
    }

    /// [`Worker::spawn_on`] `kick` when the device has one, else [`Worker::spawn`].
    pub fn start(name: &str, kick: Option<&Arc<EventFd>>, handler: H) -> io::Result<Self> {
        match kick {
            Some(kick) => Self::spawn_on(name, kick.clone(), handler),
            None => Self::spawn(name, handler),
        }
    }

    /// The driver notified: wake the worker. Never blocks.
    pub fn kick(&self) {
        // An eventfd write only fails when the counter would overflow, i.e. a kick is
        // already pending: nothing is lost.
        let _ = self.kick.write(1);
        #[cfg(feature = "fuzzing")]
        self.serve_inline();
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
        #[cfg(feature = "fuzzing")]
        if let Some(inline) = self.inline.take() {
            let mut handler = inline.into_inner().unwrap_or_else(|p| p.into_inner()).1;
            handler.stop();
            return Some(handler);
        }
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

#[cfg_attr(feature = "fuzzing", allow(dead_code))]
fn run<H: QueueHandler>(epoll: Arc<Epoll>, kick: &EventFd, mut handler: H) -> H {
    let name = std::thread::current()
        .name()
        .unwrap_or("worker")
        .to_string();
    if let Err(e) = run_thread_hook(&name) {
        log::error!("{name}: {e}; the device's worker does not start");
        return handler;
    }
    handler.attach(WorkerFds {
        epoll: epoll.clone(),
    });
    while step(&epoll, kick, &mut handler, -1) != Step::Stop {}
    // Requests in flight (io_uring) end before the queues and guest memory can go away.
    handler.stop();
    handler
}

/// What one wait of the worker's loop saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The stop event (or epoll failed): the loop ends.
    Stop,
    /// Events were served.
    Served,
    /// Nothing was ready (only with a zero timeout).
    Idle,
}

/// Wait up to `timeout_ms` (-1: forever) for the kick, the stop event or a handler's fd,
/// and serve one bounded pass for what came.
fn step<H: QueueHandler>(epoll: &Epoll, kick: &EventFd, handler: &mut H, timeout_ms: i32) -> Step {
    let mut events = [EpollEvent::default(); 32];
    let n = match epoll.wait(timeout_ms, &mut events) {
        Ok(0) => return Step::Idle,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Step::Served,
        Err(e) => {
            log::error!("device worker: epoll_wait failed: {e}; stopping");
            return Step::Stop;
        }
    };
    let mut kicked = false;
    let mut serve = false;
    for event in &events[..n] {
        match event.data() {
            STOP => return Step::Stop,
            KICK => kicked = true,
            token => {
                handler.ready(token, event.event_set());
                serve = true;
            }
        }
    }
    if kicked {
        // Reset the counter before serving, so a kick during the pass is not lost.
        let _ = kick.read();
    }
    // More pending: come back after looking at the stop event again.
    if (kicked || serve) && handler.serve() {
        let _ = kick.write(1);
    }
    Step::Served
}

#[cfg(feature = "fuzzing")]
mod inline;

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
    fn every_worker_runs_the_thread_hook_first_and_a_refusal_serves_nothing() {
        static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        fn hook(name: &str) -> io::Result<()> {
            SEEN.lock().unwrap().push(name.to_string());
            if name == "refused-worker" {
                Err(io::Error::other("no sandbox for it"))
            } else {
                Ok(())
            }
        }
        // Other tests' workers run it too (it lets them through); it is never cleared, as
        // they run in parallel.
        set_thread_hook(Some(hook));
        let pending = Arc::new(AtomicU64::new(5));
        let passes = Arc::new(AtomicU64::new(0));
        let counter = || Counter {
            pending: pending.clone(),
            passes: passes.clone(),
        };
        let refused = Worker::spawn("refused-worker", counter()).unwrap();
        refused.kick();
        wait_until(|| SEEN.lock().unwrap().iter().any(|n| n == "refused-worker"));
        // The thread ended without a pass and hands its handler back.
        assert!(refused.stop().is_some());
        assert_eq!(passes.load(Ordering::SeqCst), 0);
        assert_eq!(pending.load(Ordering::SeqCst), 5);
        let worker = Worker::spawn("hooked-worker", counter()).unwrap();
        worker.kick();
        wait_until(|| pending.load(Ordering::SeqCst) == 0);
        assert!(SEEN.lock().unwrap().iter().any(|n| n == "hooked-worker"));
        worker.stop().unwrap();
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

    #[cfg_attr(
        feature = "fuzzing",
        ignore = "a worker thread's timing; the fuzzing feature serves inline"
    )]
    #[test]
    fn a_handler_fd_wakes_the_worker_with_its_token() {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;

        struct Echo {
            sock: UnixStream,
            tokens: Arc<std::sync::Mutex<Vec<u64>>>,
            got: Arc<AtomicU64>,
        }
        impl QueueHandler for Echo {
            fn attach(&mut self, fds: WorkerFds) {
                assert!(fds.add(&self.sock, MAX_TOKEN + 1, EventSet::IN).is_err());
                fds.add(&self.sock, 7, EventSet::IN).unwrap();
            }
            fn ready(&mut self, token: u64, events: EventSet) {
                assert!(events.contains(EventSet::IN));
                self.tokens.lock().unwrap().push(token);
            }
            fn serve(&mut self) -> bool {
                let mut buf = [0u8; 16];
                if let Ok(n) = self.sock.read(&mut buf) {
                    self.got.fetch_add(n as u64, Ordering::SeqCst);
                }
                false
            }
        }
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
        let got = Arc::new(AtomicU64::new(0));
        let worker = Worker::spawn(
            "fd-worker",
            Echo {
                sock: a,
                tokens: tokens.clone(),
                got: got.clone(),
            },
        )
        .unwrap();
        b.write_all(b"abc").unwrap();
        wait_until(|| got.load(Ordering::SeqCst) == 3);
        assert_eq!(tokens.lock().unwrap()[0], 7);
        assert!(worker.stop().is_some());
    }
}
