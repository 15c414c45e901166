//! The serial console's host side: where guest output goes, and the thread that feeds
//! host input to the guest.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::sync::Arc;
use std::time::Duration;

use devices::{ConsoleInput, VmControl, VmExitReason};
use vmm_sys_util::terminal::Terminal;

use crate::config::ConsoleMode;

/// Ctrl-A, then `x`: leave the VM from a raw-mode terminal (as in QEMU).
const ESCAPE: u8 = 0x01;
const ESCAPE_QUIT: u8 = b'x';

/// Writes every chunk straight through to stdout, so prompts without a newline show up.
struct FlushingStdout;

impl Write for FlushingStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = io::stdout().lock();
        out.write_all(buf)?;
        out.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}

/// Where the guest's console output goes for `mode`.
pub fn output(mode: &ConsoleMode) -> io::Result<Box<dyn Write + Send>> {
    Ok(match mode {
        ConsoleMode::Tty => Box::new(FlushingStdout),
        ConsoleMode::Off => Box::new(io::sink()),
        ConsoleMode::File(path) => Box::new(File::create(path)?),
    })
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
    match std::fs::metadata("/proc/self/fd/0") {
        Ok(m) if m.file_type().is_fifo() || m.file_type().is_socket() => StdinKind::Pipe,
        _ => StdinKind::Other,
    }
}

/// Puts the terminal back in canonical mode when dropped.
pub struct RawModeGuard;

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        let _ = io::stdin().lock().set_canon_mode();
    }
}

/// Start feeding stdin to `serial` when `mode` is `tty` and stdin is a terminal or a pipe.
/// A terminal is switched to raw mode (restored when the guard drops); Ctrl-A x stops the VM.
pub fn start_input(
    mode: &ConsoleMode,
    input: Arc<dyn ConsoleInput>,
    control: Arc<VmControl>,
) -> io::Result<Option<RawModeGuard>> {
    if *mode != ConsoleMode::Tty {
        return Ok(None);
    }
    let kind = stdin_kind();
    let guard = match kind {
        StdinKind::Other => return Ok(None),
        StdinKind::Terminal => {
            io::stdin()
                .lock()
                .set_raw_mode()
                .map_err(|e| io::Error::other(format!("setting the terminal to raw mode: {e}")))?;
            Some(RawModeGuard)
        }
        StdinKind::Pipe => None,
    };
    let terminal = kind == StdinKind::Terminal;
    std::thread::Builder::new()
        .name("console-in".into())
        .spawn(move || pump_input(terminal, &*input, &control))?;
    Ok(guard)
}

fn pump_input(terminal: bool, input: &dyn ConsoleInput, control: &VmControl) {
    let mut stdin = io::stdin();
    let mut buf = [0u8; 64];
    let mut escape_pending = false;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => return, // EOF: the guest just gets no more input
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("console: reading stdin: {e}");
                return;
            }
        };
        let mut bytes = Vec::with_capacity(n);
        for &b in &buf[..n] {
            if terminal && escape_pending {
                escape_pending = false;
                if b == ESCAPE_QUIT {
                    control.request_exit(VmExitReason::Error(
                        "stopped from the console (Ctrl-A x)".into(),
                    ));
                    return;
                }
                bytes.push(ESCAPE);
                if b == ESCAPE {
                    continue;
                }
            } else if terminal && b == ESCAPE {
                escape_pending = true;
                continue;
            }
            bytes.push(b);
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            if control.exit_reason().is_some() {
                return;
            }
            let taken = input.enqueue_input(rest);
            match taken {
                Ok(0) => std::thread::sleep(Duration::from_millis(2)),
                Ok(k) => rest = &rest[k..],
                Err(e) => {
                    log::warn!("console: {e}");
                    return;
                }
            }
        }
    }
}
