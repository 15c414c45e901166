// SPDX-License-Identifier: Apache-2.0
//! Putting each of the VMM's threads in its sandbox (`--seccomp`): the filters themselves
//! are the `sandbox` crate's, one per [`ThreadKind`], numbered for the architecture it is
//! built for.
//!
//! The main thread installs its filter once, before it starts the first vCPU thread; every
//! thread it starts then installs its own kind's filter as its first act (filters stack, so
//! each thread ends up with the stricter of the two), and [`spawn`] returns only once it
//! has. Virtio workers, which `devices` starts on the vCPU thread that activates their
//! device, install theirs through [`worker_hook`], which `devices` calls by thread name and
//! so stays free of `unsafe` and of architectures.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

pub use sandbox::{Mode, ThreadKind};

/// The mode of this process's run: `Off` until [`configure`] (so the library's unit tests
/// never sandbox their own threads).
static MODE: AtomicU8 = AtomicU8::new(MODE_OFF);
const MODE_OFF: u8 = 0;
const MODE_KILL: u8 = 1;
const MODE_LOG: u8 = 2;

/// Whether the main thread's filter is in place (it is installed once per process: a
/// restarted guest's machine is built under it).
static MAIN_DONE: AtomicBool = AtomicBool::new(false);

/// Set `no_new_privs` on the calling (main) thread, whatever `mode` is, and remember `mode`
/// for every thread started from now on. Call it before starting any thread.
pub fn configure(mode: Mode) -> Result<(), sandbox::Error> {
    sandbox::no_new_privs()?;
    let m = match mode {
        Mode::Off => MODE_OFF,
        Mode::Kill => MODE_KILL,
        Mode::Log => MODE_LOG,
    };
    MODE.store(m, Ordering::SeqCst);
    devices::virtio::worker::set_thread_hook(Some(worker_hook));
    Ok(())
}

/// The mode set by [`configure`].
pub fn mode() -> Mode {
    match MODE.load(Ordering::SeqCst) {
        MODE_KILL => Mode::Kill,
        MODE_LOG => Mode::Log,
        _ => Mode::Off,
    }
}

/// Install the main thread's filter, once per process (later calls do nothing).
pub fn enter_main() -> Result<(), sandbox::Error> {
    if MAIN_DONE.load(Ordering::SeqCst) {
        return Ok(());
    }
    sandbox::install(ThreadKind::Main, mode())?;
    MAIN_DONE.store(true, Ordering::SeqCst);
    if mode() != Mode::Off {
        log::debug!("seccomp filters on (--seccomp {})", mode());
    }
    Ok(())
}

/// Start a thread named `name` that installs `kind`'s filter and then runs `body`. Returns
/// once the filter is in place; if it cannot be installed, the thread ends without running
/// `body` and the error is returned.
pub fn spawn(
    name: String,
    kind: ThreadKind,
    body: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let mode = mode();
    let (tx, rx) = mpsc::sync_channel(1);
    let handle = std::thread::Builder::new().name(name).spawn(move || {
        let installed = sandbox::install(kind, mode);
        let ok = installed.is_ok();
        let _ = tx.send(installed);
        if ok {
            body();
        }
    })?;
    match rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(io::Error::other(e)),
        Err(_) => Err(io::Error::other(format!(
            "the {kind:?} thread ended before installing its seccomp filter"
        ))),
    }
}

/// What each virtio worker thread runs first (`devices::virtio::worker`): its device's
/// filter, found by the thread's name.
fn worker_hook(thread_name: &str) -> io::Result<()> {
    let mode = mode();
    if mode == Mode::Off {
        return Ok(());
    }
    let kind = ThreadKind::of_worker(thread_name).ok_or_else(|| {
        io::Error::other(format!(
            "no seccomp filter for a worker named {thread_name:?}"
        ))
    })?;
    sandbox::install(kind, mode).map_err(io::Error::other)
}

/// Keep guest RAM out of core dumps of this process (MADV_DONTDUMP on every region).
pub fn exclude_from_core_dumps(memory: &arch::GuestMemory) -> io::Result<()> {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
    for region in memory.iter() {
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(io::Error::other)?;
        let len = usize::try_from(region.len()).map_err(io::Error::other)?;
        // SAFETY: the region's mapping is owned by `memory` and lives for the call;
        // MADV_DONTDUMP only changes its core-dump flag, not its contents.
        unsafe { sandbox::dont_dump(host, len)? };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfigured_means_off_and_workers_pass() {
        // The library's tests never call configure: no thread of theirs is sandboxed.
        assert_eq!(mode(), Mode::Off);
        assert!(worker_hook("anything").is_ok());
    }

    #[test]
    fn spawn_runs_the_body_after_the_filter() {
        let (tx, rx) = mpsc::channel();
        let h = spawn("t".into(), ThreadKind::ConsoleOut, move || {
            tx.send(7).unwrap()
        })
        .unwrap();
        h.join().unwrap();
        assert_eq!(rx.recv().unwrap(), 7);
    }
}
