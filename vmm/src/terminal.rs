// SPDX-License-Identifier: Apache-2.0
//! The terminal polyvisor may run in: its settings are saved once, before raw mode, and put
//! back on every way out (the normal end, an error, every stop signal, a panic).
//!
//! Written on libc's termios calls rather than `vmm_sys_util::terminal`, whose methods take
//! the std stdin lock: console input must never hold a lock the exit path needs.

use std::io;
use std::sync::OnceLock;

/// The settings stdin's terminal had before polyvisor changed them.
static SAVED: OnceLock<libc::termios> = OnceLock::new();

const STDIN: libc::c_int = libc::STDIN_FILENO;

fn get(fd: libc::c_int) -> io::Result<libc::termios> {
    // SAFETY: termios is plain data; all-zero is a valid value that tcgetattr overwrites.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, writable termios for the duration of the call.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(t)
}

fn set(fd: libc::c_int, t: &libc::termios) -> io::Result<()> {
    // SAFETY: `t` points to a valid termios; tcsetattr only reads it.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Put stdin's terminal in raw mode (no line editing, no echo, no signals from keys: the
/// guest gets every key, Ctrl-C included), after saving its settings for [`restore`].
///
/// Install the stop-signal handlers first: a signal between this call and their
/// installation would end the process with the terminal left raw.
pub fn enter_raw_mode() -> io::Result<()> {
    let original = get(STDIN)?;
    let saved = *SAVED.get_or_init(|| original);
    let mut raw = saved;
    raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
    raw.c_iflag &= !(libc::IXON | libc::ICRNL);
    raw.c_cc[libc::VMIN] = 1;
    raw.c_cc[libc::VTIME] = 0;
    set(STDIN, &raw)
}

/// Put stdin's terminal back as it was before [`enter_raw_mode`]; does nothing when it was
/// never changed. Only async-signal-safe calls (an atomic load and `tcsetattr`), so a
/// panic hook or a signal handler may call it.
pub fn restore() {
    if let Some(saved) = SAVED.get() {
        let _ = set(STDIN, saved);
    }
}

/// Restores the terminal when dropped.
pub struct RawModeGuard(());

impl RawModeGuard {
    /// Enter raw mode; the guard puts the terminal back.
    pub fn enter() -> io::Result<Self> {
        enter_raw_mode()?;
        Ok(Self(()))
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        restore();
    }
}
