// SPDX-License-Identifier: Apache-2.0
//! `polyvisor remote`: a client of the management API in the style of Cloud Hypervisor's
//! `ch-remote`. One request per connection; the answer's JSON body is printed.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long the client waits for the VMM's answer.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read.
const MAX_ANSWER: u64 = 4 << 20;

/// The commands and the call each makes: (command, verb, endpoint).
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("ping", "GET", "vmm.ping"),
    ("info", "GET", "vm.info"),
    ("counters", "GET", "vm.counters"),
    ("create", "PUT", "vm.create"),
    ("boot", "PUT", "vm.boot"),
    ("pause", "PUT", "vm.pause"),
    ("resume", "PUT", "vm.resume"),
    ("power-button", "PUT", "vm.power-button"),
    ("shutdown", "PUT", "vm.shutdown"),
    ("reboot", "PUT", "vm.reboot"),
    ("delete", "PUT", "vm.delete"),
    ("shutdown-vmm", "PUT", "vmm.shutdown"),
    ("add-disk", "PUT", "vm.add-disk"),
    ("add-net", "PUT", "vm.add-net"),
    ("add-vsock", "PUT", "vm.add-vsock"),
    ("remove-device", "PUT", "vm.remove-device"),
];

/// The body `command` sends, from its argument (ch-remote's): `create FILE` sends the
/// `VmConfig` in FILE; `add-disk`, `add-net`, `add-vsock` take the `--disk`, `--net`,
/// `--vsock` syntax (parsed here, by the flags' parsers, and sent as Cloud Hypervisor's
/// `DiskConfig`, `NetConfig`, `VsockConfig`); `remove-device ID` sends `{"id": ID}`. The
/// other commands take no argument. A usage error is one line naming the argument.
pub fn body(command: &str, argument: Option<&str>) -> Result<Option<String>, String> {
    use crate::api::vm_config::{disk_json, net_json, vsock_json};
    use crate::config::{parse_disk, parse_net, parse_vsock};
    let needs = |what: &str| format!("needs {what}");
    let option = |flag: &str, value: &str, why: String| format!("{value:?} ({flag} syntax): {why}");
    let value = match (command, argument) {
        ("create", Some(file)) => {
            return std::fs::read_to_string(file)
                .map(Some)
                .map_err(|e| format!("{file:?}: {e}"))
        }
        ("create", None) => return Err(needs("FILE, a VmConfig JSON file")),
        ("add-disk", Some(v)) => disk_json(&parse_disk(v).map_err(|why| option("--disk", v, why))?),
        ("add-disk", None) => return Err(needs("path=IMAGE[,readonly=on,...] (--disk syntax)")),
        ("add-net", Some(v)) => net_json(&parse_net(v).map_err(|why| option("--net", v, why))?),
        ("add-net", None) => return Err(needs("tap=NAME[,mac=...,...] (--net syntax)")),
        ("add-vsock", Some(v)) => {
            vsock_json(&parse_vsock(v).map_err(|why| option("--vsock", v, why))?)
        }
        ("add-vsock", None) => return Err(needs("cid=N,socket=PATH (--vsock syntax)")),
        ("remove-device", Some(id)) => serde_json::json!({ "id": id }),
        ("remove-device", None) => return Err(needs("ID, the device's id")),
        (_, Some(extra)) => return Err(format!("takes no argument (got {extra:?})")),
        (_, None) => return Ok(None),
    };
    Ok(Some(value.to_string()))
}

/// Why a call failed: one line.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("--api-socket {path:?}: {source}")]
    Connect {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{endpoint}: {0}", endpoint = .1)]
    Io(std::io::Error, &'static str),
    #[error("{endpoint}: the answer is not HTTP: {0}", endpoint = .1)]
    Malformed(String, &'static str),
    #[error("{endpoint}: {status} {message}")]
    Refused {
        endpoint: &'static str,
        status: u16,
        message: String,
    },
}

/// The status and body of an answer.
fn parse_answer(raw: &[u8]) -> Result<(u16, String), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => Ok((
            resp.code.unwrap_or(0),
            String::from_utf8_lossy(&raw[n..]).into_owned(),
        )),
        Ok(httparse::Status::Partial) => Err("the answer ended early".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Make `command`'s call on the API socket `path`, with `body` (JSON) when given: the
/// JSON body of a successful answer (empty for 204), or the error.
pub fn call(path: &Path, command: &str, body: Option<&str>) -> Result<String, RemoteError> {
    let &(_, verb, endpoint) = COMMANDS
        .iter()
        .find(|(c, _, _)| *c == command)
        .expect("clap only passes known commands");
    let mut stream = UnixStream::connect(path).map_err(|source| RemoteError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    let io = |e| RemoteError::Io(e, endpoint);
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let mut request = format!(
        "{verb} /api/v1/{endpoint} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\
         Connection: close\r\n"
    );
    match body {
        Some(b) => request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => request.push_str("\r\n"),
    }
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    while (raw.len() as u64) < MAX_ANSWER {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The VMM closed after its answer with part of the request unread.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => return Err(io(e)),
        }
    }
    let (status, body) = parse_answer(&raw).map_err(|m| RemoteError::Malformed(m, endpoint))?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    // Cloud Hypervisor's error body: a JSON array of messages.
    let message = serde_json::from_str::<Vec<String>>(&body)
        .map(|m| m.join(": "))
        .unwrap_or_else(|_| body.trim().to_string());
    Err(RemoteError::Refused {
        endpoint,
        status,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_split_into_status_and_body() {
        let (s, b) = parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((s, b.as_str()), (200, "{}"));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_answer(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn arguments_become_bodies() {
        let json = |c: &str, a: &str| -> serde_json::Value {
            serde_json::from_str(&body(c, Some(a)).unwrap().unwrap()).unwrap()
        };
        assert_eq!(
            json("add-disk", "path=/x.img,readonly=on,id=d"),
            serde_json::json!({"path": "/x.img", "readonly": true, "direct": false, "id": "d"})
        );
        assert_eq!(
            json("add-net", "tap=t0,mac=02:00:00:00:00:01"),
            serde_json::json!({"tap": "t0", "mac": "02:00:00:00:00:01"})
        );
        assert_eq!(
            json("add-vsock", "cid=3,socket=/v"),
            serde_json::json!({"cid": 3, "socket": "/v"})
        );
        assert_eq!(
            json("remove-device", "_disk1"),
            serde_json::json!({"id": "_disk1"})
        );
        let e = body("add-disk", Some("readonly=on")).unwrap_err();
        assert_eq!(e, "\"readonly=on\" (--disk syntax): path= is required");
        assert!(body("add-net", None).unwrap_err().starts_with("needs tap="));
        assert!(body("remove-device", None).is_err());
        assert!(body("pause", Some("x"))
            .unwrap_err()
            .contains("takes no argument"));
        assert_eq!(body("pause", None), Ok(None));
    }

    #[test]
    fn every_command_calls_a_served_endpoint() {
        for (_, verb, endpoint) in COMMANDS {
            assert!(
                crate::api::routes::supported().any(|e| e == *endpoint),
                "{endpoint}"
            );
            assert!(*verb == "GET" || *verb == "PUT");
        }
    }
}
