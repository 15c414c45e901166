// SPDX-License-Identifier: Apache-2.0
//! The `--vsock` Unix socket: bound once per run, before any guest runs, held across every
//! boot `--on-reset restart` makes (each boot gets a fresh virtio-vsock device listening
//! on it), and removed when the run ends.

use std::io;
use std::os::unix::net::UnixListener;
use std::sync::Arc;

use devices::virtio::Vsock;

use crate::config::{Field, VsockConfig};
use crate::machine::Error;

/// The bound socket of a `--vsock`; dropping it removes the socket file.
pub struct OpenVsock {
    pub listener: Arc<UnixListener>,
    pub config: VsockConfig,
}

impl OpenVsock {
    /// A virtio-vsock device on this socket, for one boot.
    pub fn device(&self) -> io::Result<Vsock> {
        Vsock::new(
            self.config.cid,
            self.listener.clone(),
            self.config.socket.clone(),
            format!(
                "virtio-vsock {}",
                self.config.id.as_deref().unwrap_or("vsock0")
            ),
        )
    }
}

impl Drop for OpenVsock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config.socket);
    }
}

fn input(config: &VsockConfig, why: String) -> Error {
    Error::Input {
        field: Field::Vsock,
        message: format!("socket={:?}: {why}", config.socket),
    }
}

/// Bind the `--vsock` socket. Refuses, naming the path: a missing directory, a path that
/// exists and is not a socket, a socket another process listens on. A stale socket (nobody
/// listening) is removed and bound again, as Cloud Hypervisor does.
pub fn open(config: Option<&VsockConfig>) -> Result<Option<OpenVsock>, Error> {
    let Some(config) = config else {
        return Ok(None);
    };
    let listener =
        crate::unix_socket::bind(&config.socket, "--vsock").map_err(|e| input(config, e))?;
    Ok(Some(OpenVsock {
        listener: Arc::new(listener),
        config: config.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::path::Path;

    fn config(path: &Path) -> VsockConfig {
        VsockConfig {
            cid: 3,
            socket: path.to_path_buf(),
            id: None,
        }
    }

    fn message(r: Result<Option<OpenVsock>, Error>) -> String {
        let Err(e) = r else { panic!("accepted") };
        assert_eq!(e.exit_code(), 2);
        let line = e.to_string();
        assert!(line.starts_with("--vsock socket="), "{line}");
        assert!(!line.contains('\n'), "{line}");
        line
    }

    #[test]
    fn binds_replaces_stale_refuses_the_rest_and_cleans_up() {
        let dir = vmm_sys_util::tempdir::TempDir::new_with_prefix("/tmp/pv-vsock").unwrap();
        let path = dir.as_path().join("v.sock");
        assert!(open(None).unwrap().is_none());
        let open1 = open(Some(&config(&path))).unwrap().unwrap();
        assert!(path.exists());
        // In use by a listener (this one): refused.
        assert!(message(open(Some(&config(&path)))).contains("another process"));
        drop(open1);
        assert!(!path.exists(), "removed at the end");
        // Stale: a socket nobody listens on is replaced.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let again = open(Some(&config(&path))).unwrap().unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        drop(again);
        // A regular file, a missing directory.
        std::fs::write(&path, b"x").unwrap();
        assert!(message(open(Some(&config(&path)))).contains("not a socket"));
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
        let missing = dir.as_path().join("nope/v.sock");
        assert!(message(open(Some(&config(&missing)))).contains("does not exist"));
    }
}
