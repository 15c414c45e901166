// SPDX-License-Identifier: Apache-2.0
//! The API thread: owns the listening socket and every client connection, all
//! non-blocking in one epoll set, so a slow or silent client never holds up another. Each
//! complete request is answered by [`super::routes::handle`], which asks the VMM's main
//! thread through the [`crate::RunControl`] queue when it must.
//!
//! Its system calls (for the seccomp filter of the `api` thread kind; measured with strace
//! on x86_64): at start epoll_create1 and getrandom (the connection map's hash seed); then
//! epoll_wait, epoll_ctl, accept4, recvfrom, sendto, ioctl(FIONBIO) (non-blocking on and
//! off around a bounded write), setsockopt(SO_SNDTIMEO), close, write (the request
//! `EventFd`, log lines), futex (the answer channel, the config lock, the log lock),
//! getpid (vmm.ping), clock_gettime (vDSO), mmap/munmap/madvise/mprotect (allocations),
//! and sigaltstack, rt_sigprocmask and exit when it ends. Debug builds add
//! fcntl(F_GETFD) when a stream is dropped.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::http::{self, Response};
use super::routes::Context;

/// How long a client may take to send a whole request (from its first byte, or from the
/// previous answer on a kept-alive connection) before it is answered 408 and closed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing one answer may block on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections served at once; one more is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;

const LISTENER: u64 = 0;
const STOP: u64 = 1;

struct Connection {
    stream: UnixStream,
    buf: Vec<u8>,
    deadline: Instant,
}

/// Write `response` to `stream`, blocking at most [`WRITE_TIMEOUT`]. Errors mean the client
/// is gone or stuck; the caller closes it either way.
fn send(stream: &mut UnixStream, response: &Response, close: bool) -> std::io::Result<()> {
    let bytes = response.encode(close);
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let result = stream.write_all(&bytes);
    stream.set_nonblocking(true)?;
    if close {
        // Take what the client already sent, so closing does not reset the connection
        // before it reads the answer.
        // (Bounded: a client that keeps sending is not waited for.)
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
    }
    result
}

/// Serve `listener` until `stop` is written.
pub fn serve(listener: UnixListener, stop: EventFd, ctx: Context) {
    if let Err(e) = serve_inner(&listener, &stop, &ctx) {
        log::error!("management API: {e}; the API socket no longer answers");
    }
}

fn serve_inner(listener: &UnixListener, stop: &EventFd, ctx: &Context) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    epoll.ctl(
        ControlOperation::Add,
        listener.as_raw_fd(),
        EpollEvent::new(EventSet::IN, LISTENER),
    )?;
    epoll.ctl(
        ControlOperation::Add,
        stop.as_raw_fd(),
        EpollEvent::new(EventSet::IN, STOP),
    )?;
    let mut connections: HashMap<u64, Connection> = HashMap::new();
    let mut next_id = STOP + 1;
    let mut events = vec![EpollEvent::default(); MAX_CONNECTIONS + 2];
    loop {
        let now = Instant::now();
        let timeout = connections
            .values()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
            .map_or(-1, |d| i32::try_from(d.as_millis() + 1).unwrap_or(i32::MAX));
        let n = match epoll.wait(timeout, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for e in &events[..n] {
            match e.data() {
                STOP => return Ok(()),
                LISTENER => accept_all(listener, &epoll, &mut connections, &mut next_id),
                id => {
                    let keep = match connections.get_mut(&id) {
                        Some(c) => serve_connection(c, ctx),
                        None => true,
                    };
                    if !keep {
                        // Dropping the stream closes it and takes it out of the epoll set.
                        connections.remove(&id);
                    }
                }
            }
        }
        expire(&mut connections);
    }
}

fn accept_all(
    listener: &UnixListener,
    epoll: &Epoll,
    connections: &mut HashMap<u64, Connection>,
    next_id: &mut u64,
) {
    loop {
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("management API: accept: {e}");
                return;
            }
        };
        if connections.len() >= MAX_CONNECTIONS {
            let busy = Response::error(
                503,
                &format!("too many connections (at most {MAX_CONNECTIONS} at once)"),
            );
            let _ = send(&mut stream, &busy, true);
            continue;
        }
        let id = *next_id;
        *next_id += 1;
        let added = stream.set_nonblocking(true).and_then(|()| {
            epoll.ctl(
                ControlOperation::Add,
                stream.as_raw_fd(),
                EpollEvent::new(EventSet::IN | EventSet::READ_HANG_UP, id),
            )
        });
        if let Err(e) = added {
            log::warn!("management API: cannot watch a connection: {e}");
            continue;
        }
        connections.insert(
            id,
            Connection {
                stream,
                buf: Vec::new(),
                deadline: Instant::now() + READ_TIMEOUT,
            },
        );
    }
}

/// Read what the client sent and answer every complete request in it. `false` when the
/// connection is to be closed.
fn serve_connection(c: &mut Connection, ctx: &Context) -> bool {
    let mut chunk = [0u8; 4096];
    let mut eof = false;
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => {
                if c.buf.is_empty() {
                    c.deadline = Instant::now() + READ_TIMEOUT;
                }
                c.buf.extend_from_slice(&chunk[..n]);
                if c.buf.len() > http::MAX_HEAD + http::MAX_BODY {
                    break; // parse refuses it below
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    loop {
        match http::parse(&c.buf) {
            Ok(Some((request, used))) => {
                c.buf.drain(..used);
                let response = super::routes::handle(&request, ctx);
                let close = request.close || eof;
                if send(&mut c.stream, &response, close).is_err() || close {
                    return false;
                }
                c.deadline = Instant::now() + READ_TIMEOUT;
            }
            Ok(None) => {
                // A client that went away mid-request: nothing to answer.
                return !eof;
            }
            Err(refusal) => {
                log::debug!(
                    "management API: refused a request: {} {}",
                    refusal.status,
                    refusal.message
                );
                let _ = send(
                    &mut c.stream,
                    &Response::error(refusal.status, &refusal.message),
                    true,
                );
                return false;
            }
        }
    }
}

/// Close the connections past their deadline: 408 to one in the middle of a request,
/// silently for an idle kept-alive one.
fn expire(connections: &mut HashMap<u64, Connection>) {
    let now = Instant::now();
    connections.retain(|_, c| {
        if c.deadline > now {
            return true;
        }
        if !c.buf.is_empty() {
            let late = Response::error(
                408,
                &format!(
                    "the request was not complete within {} s",
                    READ_TIMEOUT.as_secs()
                ),
            );
            let _ = send(&mut c.stream, &late, true);
        }
        false
    });
}
