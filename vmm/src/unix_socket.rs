// SPDX-License-Identifier: Apache-2.0
//! Binding the Unix sockets the VMM listens on (`--vsock`, `--api-socket`) the way Cloud
//! Hypervisor does: a stale socket (nobody listening) is replaced, anything else at the
//! path is refused.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Bind `path`. Refuses, with the reason: a missing directory, a path that exists and is
/// not a socket, a socket another process listens on. A stale socket is removed (logged
/// with `flag`) and bound again.
pub fn bind(path: &Path, flag: &str) -> Result<UnixListener, String> {
    let dir = match path.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => return Err("is not a file path".into()),
    };
    if !dir.is_dir() {
        return Err(format!("directory {dir:?} does not exist"));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err("another process listens on this socket".into()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                log::info!("{flag}: removing the stale socket {path:?}");
                std::fs::remove_file(path).map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        },
        Ok(_) => return Err("exists and is not a socket".into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.to_string()),
    }
    UnixListener::bind(path).map_err(|e| e.to_string())
}
