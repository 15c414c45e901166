// SPDX-License-Identifier: Apache-2.0
//! Host input for the guest's console, served on the main thread's event loop (as
//! Firecracker and Cloud Hypervisor do) instead of a thread of its own.
//!
//! [`StdinInput`] owns a non-blocking description of stdin and the console device's "room
//! again" `EventFd` (`devices::ConsoleInput::notify_room`). The loop waits on exactly one
//! of them ([`StdinInput::waits_for`]): on stdin while the device takes input, on the room
//! event while bytes read earlier wait for a guest that reads nothing (a full UART FIFO, a
//! full SCLP queue). Nothing is dropped, nothing spins, and a read never blocks the loop:
//! it reads at most [`READ_CHUNK`] bytes per wake-up from a descriptor in non-blocking
//! mode.

use std::io::{self, IsTerminal};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

use devices::{ConsoleInput, VmControl, VmExitReason};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::config::ConsoleMode;
use crate::terminal::RawModeGuard;

/// Ctrl-A, then `x`: leave the VM from a raw-mode terminal (as in QEMU).
const ESCAPE: u8 = 0x01;
const ESCAPE_QUIT: u8 = b'x';
/// The most stdin is read per wake-up of the loop (a flood is taken in bounded bites, the
/// loop's other sources served between them).
pub const READ_CHUNK: usize = 4096;

/// What the console input waits for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputWait {
    /// Stdin to be readable: the device took everything read so far.
    Stdin,
    /// The device to have room: bytes read from stdin wait for the guest.
    Room,
    /// Nothing: stdin ended (EOF, an error) or Ctrl-A x stopped the VM.
    Done,
}

/// What kind of stdin the VMM has.
#[derive(Debug, PartialEq, Eq)]
enum StdinKind {
    Terminal,
    Pipe,
    Other,
}

fn stdin_kind() -> StdinKind {
    if io::stdin().is_terminal() {
        return StdinKind::Terminal;
    }
    match std::fs::metadata(Path::new("/proc/self/fd/0")) {
        Ok(m) if m.file_type().is_fifo() || m.file_type().is_socket() => StdinKind::Pipe,
        _ => StdinKind::Other,
    }
}

/// Whether job control lets this process use the terminal on stdin: it is in the
/// terminal's foreground process group, or the terminal is not its controlling terminal
/// (`tcgetpgrp` fails with `ENOTTY`: no SIGTTIN or SIGTTOU is ever sent for it, e.g. a
/// console given to a process without a session's terminal).
fn in_foreground() -> bool {
    // SAFETY: tcgetpgrp and getpgrp only read process and terminal state.
    let (foreground, own) = unsafe { (libc::tcgetpgrp(libc::STDIN_FILENO), libc::getpgrp()) };
    foreground == own || foreground < 0
}

/// A non-blocking descriptor reading what fd 0 reads. A terminal or pipe is opened again
/// through `/proc/self/fd/0`: a description of its own, so `O_NONBLOCK` never reaches the
/// shell that shares fd 0. What cannot be opened that way (a socket) gets `O_NONBLOCK` on
/// fd 0's own description, and the flags to put back are returned.
fn nonblocking_stdin() -> io::Result<(OwnedFd, Option<libc::c_int>)> {
    let path = c"/proc/self/fd/0";
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: `path` is a valid NUL-terminated string; the flags create nothing.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd >= 0 {
        // SAFETY: `fd` was just returned by open and is owned by nobody else.
        return Ok((unsafe { OwnedFd::from_raw_fd(fd) }, None));
    }
    // SAFETY: dup of fd 0 creates a new descriptor, which we then own.
    let fd = unsafe { libc::fcntl(libc::STDIN_FILENO, libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by fcntl(F_DUPFD_CLOEXEC) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let old = set_nonblocking(fd.as_raw_fd())?;
    Ok((fd, Some(old)))
}

/// Set `O_NONBLOCK` on `fd`'s description; returns the flags it had.
fn set_nonblocking(fd: RawFd) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL only reads the flags of a descriptor we hold.
    let old = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if old < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL changes only the status flags of a descriptor we hold.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, old | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(old)
}

/// Stdin feeding the guest's console, driven by the main loop; dropping it puts stdin's
/// flags back (when they were changed) and restores the terminal (raw mode ends).
pub struct StdinInput {
    reader: OwnedFd,
    /// fd 0's description had its flags changed (a socket): these go back at the end.
    restore_flags: Option<libc::c_int>,
    /// A terminal in raw mode: Ctrl-A x is the escape.
    terminal: bool,
    device: Arc<dyn ConsoleInput>,
    room: EventFd,
    /// Bytes read from stdin the device has not taken yet (at most [`READ_CHUNK`] + 1).
    pending: Vec<u8>,
    escape_pending: bool,
    wait: InputWait,
    _raw: Option<RawModeGuard>,
}

impl Drop for StdinInput {
    fn drop(&mut self) {
        if let Some(flags) = self.restore_flags {
            // SAFETY: F_SETFL puts back the status flags the descriptor had.
            unsafe { libc::fcntl(self.reader.as_raw_fd(), libc::F_SETFL, flags) };
        }
        // `_raw` drops after this: the terminal is restored.
    }
}

impl StdinInput {
    /// Feed stdin to `device` when `mode` is `tty` and stdin is a terminal (in the
    /// foreground) or a pipe; `None` otherwise. A terminal goes into raw mode (restored
    /// when this drops). The stop-signal handlers must be installed first.
    pub fn start(mode: &ConsoleMode, device: Arc<dyn ConsoleInput>) -> io::Result<Option<Self>> {
        if *mode != ConsoleMode::Tty {
            return Ok(None);
        }
        let mut kind = stdin_kind();
        if kind == StdinKind::Terminal && !in_foreground() {
            // A job in the background (`polyvisor run ... &`): changing the terminal's
            // settings would stop the whole process with SIGTTOU, and reading it with
            // SIGTTIN.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                log::info!(
                    "stdin is a terminal this job is in the background of: console input off"
                );
            });
            kind = StdinKind::Other;
        }
        if kind == StdinKind::Other {
            return Ok(None);
        }
        let (reader, restore_flags) = nonblocking_stdin()?;
        let raw =
            match kind {
                StdinKind::Terminal => Some(RawModeGuard::enter().map_err(|e| {
                    io::Error::other(format!("setting the terminal to raw mode: {e}"))
                })?),
                _ => None,
            };
        let mut input = Self::new(reader, kind == StdinKind::Terminal, device)?;
        input.restore_flags = restore_flags;
        input._raw = raw;
        Ok(Some(input))
    }

    /// Feed what `reader` (non-blocking) reads to `device`; `terminal` turns on the
    /// Ctrl-A escape.
    pub(crate) fn new(
        reader: OwnedFd,
        terminal: bool,
        device: Arc<dyn ConsoleInput>,
    ) -> io::Result<Self> {
        let room = EventFd::new(EFD_NONBLOCK)?;
        device.notify_room(room.try_clone()?);
        Ok(Self {
            reader,
            restore_flags: None,
            terminal,
            device,
            room,
            pending: Vec::with_capacity(READ_CHUNK + 1),
            escape_pending: false,
            wait: InputWait::Stdin,
            _raw: None,
        })
    }

    /// The descriptor to wait on for [`InputWait::Stdin`].
    pub fn stdin_fd(&self) -> RawFd {
        self.reader.as_raw_fd()
    }

    /// The descriptor to wait on for [`InputWait::Room`] (written only after a refusal,
    /// so it may stay in the loop's set all along).
    pub fn room_fd(&self) -> RawFd {
        self.room.as_raw_fd()
    }

    /// What to wait for next.
    pub fn waits_for(&self) -> InputWait {
        self.wait
    }

    /// Stdin is readable (or at EOF, or broken): read one bounded bite and offer it to the
    /// device. Ctrl-A x asks `control` to end the VM.
    pub fn on_stdin(&mut self, control: &VmControl) {
        if self.wait != InputWait::Stdin {
            return;
        }
        let mut buf = [0u8; READ_CHUNK];
        // SAFETY: `buf` is valid for writes of its length; the descriptor is ours.
        let n = unsafe { libc::read(self.reader.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let n = match n {
            0 => {
                // EOF: the guest just gets no more input.
                log::debug!("console: stdin ended");
                self.wait = InputWait::Done;
                return;
            }
            n if n > 0 => n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) {
                    log::warn!("console: reading stdin: {e}; console input off");
                    self.wait = InputWait::Done;
                }
                return;
            }
        };
        for &b in &buf[..n] {
            if self.terminal && self.escape_pending {
                self.escape_pending = false;
                if b == ESCAPE_QUIT {
                    control.request_exit(VmExitReason::Error(
                        "stopped from the console (Ctrl-A x)".into(),
                    ));
                    self.wait = InputWait::Done;
                    self.pending.clear();
                    return;
                }
                self.pending.push(ESCAPE);
                if b == ESCAPE {
                    continue;
                }
            } else if self.terminal && b == ESCAPE {
                self.escape_pending = true;
                continue;
            }
            self.pending.push(b);
        }
        self.offer();
    }

    /// The device said it has room: offer what waits.
    pub fn on_room(&mut self) {
        let _ = self.room.read();
        if self.wait == InputWait::Room {
            self.offer();
        }
    }

    /// Give the device what it takes of `pending`; wait for room for the rest.
    fn offer(&mut self) {
        if self.pending.is_empty() {
            self.wait = InputWait::Stdin;
            return;
        }
        match self.device.enqueue_input(&self.pending) {
            Ok(took) => {
                self.pending.drain(..took.min(self.pending.len()));
                self.wait = if self.pending.is_empty() {
                    InputWait::Stdin
                } else {
                    InputWait::Room
                };
            }
            Err(e) => {
                log::warn!("console: {e}; console input off");
                self.pending.clear();
                self.wait = InputWait::Done;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A console device with a FIFO of `cap` bytes the test drains as the guest would.
    pub(crate) struct Fifo {
        cap: usize,
        held: Mutex<Vec<u8>>,
        room: devices::console_input::InputRoom,
    }

    impl Fifo {
        pub(crate) fn new(cap: usize) -> Arc<Self> {
            Arc::new(Self {
                cap,
                held: Mutex::new(Vec::new()),
                room: Default::default(),
            })
        }
        /// The guest reads everything.
        pub(crate) fn drain(&self) -> Vec<u8> {
            let out = std::mem::take(&mut *self.held.lock().unwrap());
            self.room.freed();
            out
        }
    }

    impl ConsoleInput for Fifo {
        fn enqueue_input(&self, bytes: &[u8]) -> io::Result<usize> {
            let mut held = self.held.lock().unwrap();
            let n = bytes.len().min(self.cap - held.len());
            held.extend_from_slice(&bytes[..n]);
            if n < bytes.len() {
                self.room.refused();
            }
            Ok(n)
        }
        fn notify_room(&self, event: EventFd) {
            self.room.set_event(event);
        }
    }

    pub(crate) fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 returns.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        assert_eq!(rc, 0);
        // SAFETY: both were just returned by pipe2 and are owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    pub(crate) fn write_all(fd: &OwnedFd, bytes: &[u8]) {
        // SAFETY: `bytes` is valid for reads of its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(n, bytes.len() as isize);
    }

    #[test]
    fn a_full_device_stops_reading_until_it_has_room() {
        let (r, w) = pipe();
        let fifo = Fifo::new(16);
        let control = VmControl::new();
        let mut input = StdinInput::new(r, false, fifo.clone()).unwrap();
        let data: Vec<u8> = (0..40u8).collect();
        write_all(&w, &data);
        input.on_stdin(&control);
        assert_eq!(input.waits_for(), InputWait::Room, "16 of 40 taken");
        // While it waits for room, stdin is not read (the loop stops watching it).
        input.on_stdin(&control);
        assert_eq!(input.pending.len(), 24);
        let mut got = fifo.drain();
        input.on_room();
        got.extend(fifo.drain());
        input.on_room();
        assert_eq!(input.waits_for(), InputWait::Stdin);
        got.extend(fifo.drain());
        assert_eq!(got, data, "nothing dropped, in order");
        // No room event without a refusal.
        input.on_room();
        assert_eq!(input.waits_for(), InputWait::Stdin);
        drop(w);
        input.on_stdin(&control);
        assert_eq!(input.waits_for(), InputWait::Done, "EOF");
        assert!(control.exit_reason().is_none());
    }

    #[test]
    fn the_room_event_is_written_once_per_refusal() {
        let (r, w) = pipe();
        let fifo = Fifo::new(4);
        let control = VmControl::new();
        let mut input = StdinInput::new(r, false, fifo.clone()).unwrap();
        write_all(&w, b"abcdef");
        input.on_stdin(&control);
        assert_eq!(input.room.read().ok(), None, "nothing freed yet");
        fifo.drain();
        fifo.drain();
        assert!(input.room.read().is_ok(), "room again");
    }

    #[test]
    fn ctrl_a_x_stops_and_ctrl_a_ctrl_a_is_one_ctrl_a() {
        let (r, w) = pipe();
        let fifo = Fifo::new(64);
        let control = VmControl::new();
        let mut input = StdinInput::new(r, true, fifo.clone()).unwrap();
        // Ctrl-A split across two reads still counts.
        write_all(&w, b"a\x01\x01b\x01");
        input.on_stdin(&control);
        write_all(&w, b"c\x01");
        input.on_stdin(&control);
        assert_eq!(fifo.drain(), b"a\x01b\x01c");
        write_all(&w, b"x");
        input.on_stdin(&control);
        assert_eq!(input.waits_for(), InputWait::Done);
        assert!(matches!(
            control.exit_reason(),
            Some(VmExitReason::Error(m)) if m.contains("Ctrl-A x")
        ));
        // A pipe has no escape.
        let (r, w) = pipe();
        let mut input = StdinInput::new(r, false, fifo.clone()).unwrap();
        let control = VmControl::new();
        write_all(&w, b"\x01x");
        input.on_stdin(&control);
        assert_eq!(fifo.drain(), b"\x01x");
        assert!(control.exit_reason().is_none());
    }

    #[test]
    fn a_flood_is_read_in_bounded_bites() {
        let (r, w) = pipe();
        let fifo = Fifo::new(1 << 20);
        let control = VmControl::new();
        let mut input = StdinInput::new(r, false, fifo.clone()).unwrap();
        write_all(&w, &vec![b'f'; 3 * READ_CHUNK]);
        input.on_stdin(&control);
        assert_eq!(fifo.drain().len(), READ_CHUNK);
        // Nothing there: a read that would block returns at once and changes nothing.
        let (r2, _w2) = pipe();
        let mut idle = StdinInput::new(r2, false, fifo.clone()).unwrap();
        idle.on_stdin(&control);
        assert_eq!(idle.waits_for(), InputWait::Stdin);
    }
}
