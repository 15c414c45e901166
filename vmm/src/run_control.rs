// SPDX-License-Identifier: Apache-2.0
//! Steering a running VM from another thread (the management API's thread holds one of
//! these): requests go into a queue, an `EventFd` wakes the main thread's event loop, which
//! carries them out between other events and answers each one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::config::{Config, DiskConfig, NetConfig, VsockConfig};

/// A device to plug into a running VM (`vm.add-disk`, `vm.add-net`, `vm.add-vsock`): the
/// same configuration `--disk`, `--net` and `--vsock` give; its host side is opened by the
/// main thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceConfig {
    Disk(DiskConfig),
    Net(NetConfig),
    Vsock(VsockConfig),
}

/// What may be asked of a running VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmCommand {
    /// Stop every vCPU outside the guest (devices and timers go on).
    Pause,
    /// Let paused vCPUs run again.
    Resume,
    /// Press the guest's power button (as SIGTERM does, without the forced stop after
    /// `--shutdown-timeout`).
    PowerButton,
    /// The VM's state (answered with [`Answer::State`]).
    State,
    /// The VM's counters (answered with [`Answer::Counters`]).
    Counters,
    /// End the VM (and maybe more): answered at once, carried out as the loop ends.
    Stop(StopKind),
    /// Boot the configured VM (when none runs).
    Boot,
    /// Plug a device into the running (or paused) VM; answered with [`Answer::Added`].
    AddDevice(DeviceConfig),
    /// Unplug the device with this id from the running (or paused) VM.
    RemoveDevice(String),
}

/// How a [`VmCommand::Stop`] ends the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// Stop the guest at once; its configuration stays (it can be booted again).
    Shutdown,
    /// Stop the guest and boot it again as a fresh machine.
    Reboot,
    /// Stop the guest and forget its configuration.
    Delete,
    /// Stop the guest and end the VMM process.
    VmmShutdown,
}

/// The VM's state, with Cloud Hypervisor's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmState {
    Created,
    Running,
    Paused,
}

impl VmState {
    pub fn name(self) -> &'static str {
        match self {
            VmState::Created => "Created",
            VmState::Running => "Running",
            VmState::Paused => "Paused",
        }
    }
}

/// Counters by device, then by name (Cloud Hypervisor's `VmCounters`).
pub type Counters = BTreeMap<String, BTreeMap<String, u64>>;

/// What a carried-out request answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Done,
    State(VmState),
    Counters(Counters),
    Added(Added),
}

/// A device [`VmCommand::AddDevice`] plugged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    /// Its id (the one asked for, or `_diskN`, `_netN`, `_vsockN`).
    pub id: String,
    /// Where the backend put it, as the guest names it (s390x: the CCW bus id `0.0.0004`).
    pub bdf: String,
}

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("the VM is not running")]
    NotRunning,
    #[error("no VM is created")]
    NotCreated,
    #[error("this machine has no power button")]
    NoPowerButton,
    #[error("the VM is already {0}")]
    AlreadyIn(&'static str),
    #[error("vCPU thread(s) {0} did not pause in time")]
    DidNotPause(String),
    #[error("vCPU thread(s) {0} did not resume in time")]
    DidNotResume(String),
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
    /// A device that cannot be added as asked (a bad or busy file, tap or socket, an id
    /// taken, a full transport): the message names the flag and value.
    #[error("{0}")]
    BadDevice(String),
    /// The backend cannot do it (no hotplug on its transport): its reason.
    #[error("{0}")]
    Unsupported(String),
    #[error("the VM has no device with id {0:?}")]
    NoSuchDevice(String),
    #[error(
        "{0:?} was attached at boot and this architecture's transport cannot take it out \
         of a running guest (virtio-mmio has no unplug)"
    )]
    NotHotplugged(String),
    /// The VMM failed carrying it out.
    #[error("{0}")]
    Failed(String),
}

type Reply = Sender<Result<Answer, CommandError>>;

/// The VM's configuration as the management API shows it (`None`: no VM created).
pub type SharedConfig = Arc<Mutex<Option<Config>>>;

/// The queue of requests to a running VM and the `EventFd` that announces them.
pub struct RunControl {
    queue: Mutex<VecDeque<(VmCommand, Reply)>>,
    event: EventFd,
    /// Where the main thread publishes a configuration a request changed (hotplug).
    published: Option<SharedConfig>,
}

impl RunControl {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            queue: Mutex::new(VecDeque::new()),
            event: EventFd::new(EFD_NONBLOCK)?,
            published: None,
        })
    }

    /// Publish the VM's configuration to `shared` whenever a request changes it
    /// ([`RunControl::publish`]).
    pub fn publishing_to(mut self, shared: SharedConfig) -> Self {
        self.published = Some(shared);
        self
    }

    /// The main thread's side: the VM's configuration is now `config` (a device was plugged
    /// in or out). Published before the request is answered, so whoever asked sees it; a
    /// VM deleted meanwhile stays deleted.
    pub fn publish(&self, config: &Config) {
        if let Some(shared) = &self.published {
            if let Some(current) = shared.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                *current = config.clone();
            }
        }
    }

    /// Ask for `command` and wait (up to `timeout`) for the event loop's answer.
    pub fn request(&self, command: VmCommand, timeout: Duration) -> Result<Answer, CommandError> {
        let (tx, rx) = channel();
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((command, tx));
        let _ = self.event.write(1);
        rx.recv_timeout(timeout)
            .unwrap_or(Err(CommandError::NoAnswer(timeout)))
    }

    /// Pause the VM's vCPUs.
    pub fn pause(&self, timeout: Duration) -> Result<(), CommandError> {
        self.request(VmCommand::Pause, timeout).map(drop)
    }

    /// Resume the VM's vCPUs.
    pub fn resume(&self, timeout: Duration) -> Result<(), CommandError> {
        self.request(VmCommand::Resume, timeout).map(drop)
    }

    /// The `EventFd` the event loop waits on.
    pub fn event(&self) -> &EventFd {
        &self.event
    }

    /// Carry out the queued requests with `handle` (event loop side): all of them, or up to
    /// and including a [`VmCommand::Stop`] or [`VmCommand::Boot`].
    pub fn serve(&self, handle: &mut dyn FnMut(VmCommand) -> Result<Answer, CommandError>) {
        let _ = self.event.read();
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some((command, reply)) = next else {
                return;
            };
            let ends = matches!(command, VmCommand::Stop(_) | VmCommand::Boot);
            let _ = reply.send(handle(command));
            if ends {
                // What follows is for whatever serves next (the VM is ending, or about to
                // start): leave it queued, and announced.
                let _ = self.event.write(1);
                return;
            }
        }
    }

    /// Answer every queued request with `NotRunning` (the VM has ended).
    pub fn refuse_all(&self) {
        self.serve(&mut |_| Err(CommandError::NotRunning));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_answered_by_the_loop() {
        let rc = Arc::new(RunControl::new().unwrap());
        let asker = {
            let rc = rc.clone();
            std::thread::spawn(move || rc.pause(Duration::from_secs(10)))
        };
        let mut seen = Vec::new();
        while seen.is_empty() {
            rc.serve(&mut |c| {
                seen.push(c);
                Ok(Answer::Done)
            });
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(asker.join().unwrap(), Ok(()));
        assert_eq!(seen, vec![VmCommand::Pause]);
        // Nobody serving: the request times out.
        assert_eq!(
            rc.resume(Duration::from_millis(10)),
            Err(CommandError::NoAnswer(Duration::from_millis(10)))
        );
    }
}
