// SPDX-License-Identifier: Apache-2.0
//! The queues of an activated virtio-vsock device and its host side, served on the
//! device's worker thread: guest packets from the tx queue, host connections on the
//! listening Unix socket (`CONNECT <port>\n`), connections to `PATH_<port>` for the
//! guest, and packets for the guest into the rx queue.
//!
//! A pass takes at most [`MAX_PACKETS_PER_PASS`] tx packets, writes at most
//! [`MAX_HOST_BYTES_PER_PASS`] bytes to host sockets, accepts at most
//! [`MAX_ACCEPTS_PER_PASS`] host connections and fills at most [`MAX_PACKETS_PER_PASS`] rx
//! buffers; what is left waits for the next pass, after the worker looked at its stop
//! event. RSTs the device owes the guest for packets that match no connection wait in a
//! queue of at most [`MAX_PENDING_RSTS`]; while it is full the device takes no tx packets,
//! so a guest that floods without giving rx buffers only stalls itself.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use super::conn::{Broken, Conn, Spare, State};
use super::packet::{self, op, Header, HOST_CID, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};
use crate::virtio::worker::{QueueHandler, WorkerFds};
use crate::virtio::{DriverWarnings, GuestMemory, VirtioInterrupt};

/// The most tx packets, and the most rx buffers, one pass uses.
pub const MAX_PACKETS_PER_PASS: usize = 64;
/// The most bytes one pass writes to host sockets.
pub const MAX_HOST_BYTES_PER_PASS: usize = 1 << 20;
/// The most host connections one pass accepts.
pub const MAX_ACCEPTS_PER_PASS: usize = 16;
/// Connections (and host connections still sending their `CONNECT` line) at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// RSTs for unknown connections waiting for rx buffers.
pub const MAX_PENDING_RSTS: usize = 256;
/// The longest `CONNECT <port>\n` line.
const MAX_LINE: usize = 32;
/// The first local port the device gives host-initiated connections.
const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// How long a host's `CONNECT` waits for the guest's answer before it is given up (RST to
/// the guest, the host connection closed), as Firecracker does.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const LISTENER_TOKEN: u64 = 0;
const TIMER_TOKEN: u64 = crate::virtio::worker::MAX_TOKEN;

pub(super) struct Active {
    pub mem: GuestMemory,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    pub rx: Queue,
    pub tx: Queue,
    /// Only `VIRTIO_VSOCK_EVENT_TRANSPORT_RESET` goes there, after a migration: held, unused.
    pub _event: Queue,
}

/// A host connection that has not sent its `CONNECT <port>\n` yet.
struct Pending {
    stream: UnixStream,
    line: Vec<u8>,
}

type Key = (u32, u32);

/// The device's worker-side state.
pub struct VsockQueues {
    active: Active,
    guest_cid: u64,
    listener: Arc<UnixListener>,
    path: PathBuf,
    fds: Option<WorkerFds>,
    /// Wakes the worker when the oldest unanswered `CONNECT` times out.
    timer: Option<TimerFd>,
    pending: BTreeMap<u64, Pending>,
    conns: BTreeMap<Key, Conn>,
    tokens: HashMap<u64, Key>,
    rsts: VecDeque<Header>,
    /// The stage a connection reads into when it holds none.
    spare: Spare,
    next_port: u32,
    next_token: u64,
    /// Where the next rx pass starts among the connections (fairness).
    cursor: Key,
    /// The last rx pass found no buffer: reading host sockets waits for the guest's kick.
    rx_starved: bool,
    /// The worker's epoll waits on the listening socket: passes accept only after it said
    /// the socket is ready (or a pass left connections to accept), not with an `accept`
    /// that fails each pass.
    listener_watched: bool,
    listener_ready: bool,
    name: String,
    warnings: DriverWarnings,
}

impl VsockQueues {
    pub(super) fn new(
        active: Active,
        guest_cid: u64,
        listener: Arc<UnixListener>,
        path: PathBuf,
        name: String,
    ) -> Self {
        Self {
            active,
            guest_cid,
            listener,
            path,
            fds: None,
            timer: None,
            pending: BTreeMap::new(),
            conns: BTreeMap::new(),
            tokens: HashMap::new(),
            rsts: VecDeque::new(),
            spare: None,
            next_port: FIRST_LOCAL_PORT,
            next_token: LISTENER_TOKEN + 1,
            cursor: (0, 0),
            rx_starved: false,
            listener_watched: false,
            listener_ready: true,
            name,
            warnings: DriverWarnings::default(),
        }
    }

    /// Connections open now (tests and logs).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Host bytes read for the guest and not sent yet, over all connections (tests).
    #[cfg(test)]
    pub fn staged(&self) -> usize {
        self.conns.values().map(Conn::staged).sum()
    }

    fn warn(&mut self, args: std::fmt::Arguments) {
        self.warnings.warn(&self.name, args);
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    fn register(&self, stream: &UnixStream, token: u64, events: EventSet) {
        if let Some(fds) = &self.fds {
            if let Err(e) = fds.add(stream, token, events) {
                log::error!("{}: cannot wait on a host socket: {e}", self.name);
            }
        }
    }

    /// Answer a guest packet that matches no connection with a RST (never a RST to a RST).
    fn reply_rst(&mut self, hdr: &Header) {
        if hdr.op == op::RST {
            return;
        }
        self.rsts.push_back(Header {
            src_cid: hdr.dst_cid,
            dst_cid: self.guest_cid,
            src_port: hdr.dst_port,
            dst_port: hdr.src_port,
            type_: hdr.type_,
            op: op::RST,
            ..Header::default()
        });
    }

    /// Forget a connection (closing its host socket) and tell the guest with a RST.
    fn reset(&mut self, key: Key, why: std::fmt::Arguments) {
        if let Some(mut conn) = self.conns.remove(&key) {
            log::debug!("{}: connection {}:{} reset: {why}", self.name, key.0, key.1);
            self.tokens.remove(&conn.token);
            // A connection the guest never heard of (its REQUEST not sent yet) needs no RST.
            if !conn.need_request {
                let rst = conn.header(self.guest_cid, op::RST, 0, 0);
                self.rsts.push_back(rst);
            }
        }
    }

    /// Forget a connection the guest reset or finished (no packet owed).
    fn close(&mut self, key: Key) {
        if let Some(conn) = self.conns.remove(&key) {
            self.tokens.remove(&conn.token);
        }
    }

    /// Take tx packets; returns how many, and whether some were left for the next pass
    /// (the pass budget ran out, or the RST queue is full: rx buffers drain it).
    fn process_tx(&mut self) -> (usize, bool) {
        let mem = self.active.mem.clone();
        let mut used = 0;
        while used < MAX_PACKETS_PER_PASS {
            if self.rsts.len() >= MAX_PENDING_RSTS {
                return (used, true);
            }
            let Some(chain) = self.active.tx.pop_descriptor_chain(&mem) else {
                return (used, false);
            };
            let head = chain.head_index();
            match packet::read_tx(&mem, chain) {
                Ok((hdr, data)) => self.guest_packet(hdr, &data),
                Err(e) => self.warn(format_args!("tx packet {head} dropped: {e}")),
            }
            if let Err(e) = self.active.tx.add_used(&mem, head, 0) {
                self.warn(format_args!("tx packet {head}: cannot return it: {e}"));
                continue;
            }
            used += 1;
        }
        (used, true)
    }

    fn guest_packet(&mut self, hdr: Header, data: &[u8]) {
        if hdr.src_cid != self.guest_cid {
            let cid = self.guest_cid;
            self.warn(format_args!(
                "packet from CID {} (the guest is {cid}) dropped",
                hdr.src_cid
            ));
            return;
        }
        if hdr.dst_cid != HOST_CID || hdr.type_ != TYPE_STREAM {
            log::debug!(
                "{}: packet to CID {} of type {}: RST",
                self.name,
                hdr.dst_cid,
                hdr.type_
            );
            self.reply_rst(&hdr);
            return;
        }
        let key = (hdr.dst_port, hdr.src_port);
        let Some(conn) = self.conns.get_mut(&key) else {
            if hdr.op == op::REQUEST {
                self.guest_connect(&hdr);
            } else {
                self.reply_rst(&hdr);
            }
            return;
        };
        conn.peer_credit_from(&hdr);
        match (hdr.op, conn.state) {
            (op::RST, _) => self.close(key),
            (op::RESPONSE, State::LocalInit) => {
                conn.state = State::Established;
                let line = format!("OK {}\n", conn.local_port);
                // A fresh socket's buffer takes a line; a host that is already gone is
                // seen on its next read or write.
                if let Err(e) = conn.stream.write_all(line.as_bytes()) {
                    self.reset(key, format_args!("host socket: {e}"));
                }
            }
            (op::RW, State::Established) if conn.guest_shut & SHUTDOWN_SEND == 0 => {
                if let Err(Broken::Overflow) = conn.push_from_guest(data) {
                    self.warn(format_args!(
                        "connection {}:{}: the guest sent past its credit; reset",
                        key.0, key.1
                    ));
                    self.reset(key, format_args!("credit overflow"));
                }
            }
            (op::CREDIT_UPDATE, _) => {}
            (op::CREDIT_REQUEST, _) => conn.need_credit_update = true,
            (op::SHUTDOWN, State::Established | State::Closing) => {
                conn.guest_shut |= hdr.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
                if conn.guest_shut == SHUTDOWN_RCV | SHUTDOWN_SEND {
                    conn.state = State::Closing;
                }
            }
            (other, state) => {
                log::debug!("{}: op {other} in state {state:?}", self.name);
                self.reset(key, format_args!("op {other} in state {state:?}"));
            }
        }
    }

    /// The guest connects to host port `dst_port`: the Unix socket `PATH_<port>`.
    fn guest_connect(&mut self, hdr: &Header) {
        if self.conns.len() + self.pending.len() >= MAX_CONNECTIONS {
            self.warn(format_args!(
                "{MAX_CONNECTIONS} connections open; refusing another"
            ));
            self.reply_rst(hdr);
            return;
        }
        let target = port_path(&self.path, hdr.dst_port);
        let stream =
            match UnixStream::connect(&target).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("{}: guest connect to {target:?}: {e}", self.name);
                    self.reply_rst(hdr);
                    return;
                }
            };
        let token = self.token();
        self.register(&stream, token, EventSet::empty());
        let key = (hdr.dst_port, hdr.src_port);
        let mut conn = Conn::new(stream, token, State::Established, key.0, key.1);
        conn.peer_credit_from(hdr);
        conn.need_response = true;
        self.tokens.insert(token, key);
        self.conns.insert(key, conn);
    }

    /// Accept host connections and read their `CONNECT` lines.
    fn serve_host(&mut self) -> bool {
        let mut more = false;
        let mut accepted = 0;
        while self.listener_ready || !self.listener_watched {
            if accepted == MAX_ACCEPTS_PER_PASS {
                more = true;
                break;
            }
            match self.listener.accept() {
                Ok((stream, _)) => {
                    accepted += 1;
                    if self.conns.len() + self.pending.len() >= MAX_CONNECTIONS
                        || stream.set_nonblocking(true).is_err()
                    {
                        self.warn(format_args!("host connection refused (too many)"));
                        continue;
                    }
                    let token = self.token();
                    self.register(&stream, token, EventSet::IN);
                    self.pending.insert(
                        token,
                        Pending {
                            stream,
                            line: Vec::new(),
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("{}: accept: {e}", self.name);
                    break;
                }
            }
        }
        let tokens: Vec<u64> = self.pending.keys().copied().collect();
        for token in tokens {
            self.read_line(token);
        }
        more
    }

    fn read_line(&mut self, token: u64) {
        let Some(p) = self.pending.get_mut(&token) else {
            return;
        };
        let mut byte = [0u8; 1];
        // One byte at a time: what follows the line belongs to the guest.
        let port = loop {
            match p.stream.read(&mut byte) {
                Ok(0) => break Err("closed before its CONNECT line".to_string()),
                Ok(_) if byte[0] == b'\n' => break parse_connect(&p.line),
                Ok(_) if p.line.len() >= MAX_LINE => break Err("line too long".to_string()),
                Ok(_) => p.line.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => break Err(e.to_string()),
            }
        };
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        let port = match port {
            Ok(port) => port,
            Err(e) => {
                log::debug!("{}: host connection closed: {e}", self.name);
                return;
            }
        };
        let Some(local) = self.local_port(port) else {
            log::debug!("{}: no local port left", self.name);
            return;
        };
        if let Some(fds) = &self.fds {
            let _ = fds.modify(&p.stream, token, EventSet::empty());
        }
        let key = (local, port);
        self.tokens.insert(token, key);
        self.conns.insert(
            key,
            Conn::new(p.stream, token, State::LocalInit, local, port),
        );
    }

    /// A local port for a host-initiated connection to guest port `peer`.
    fn local_port(&mut self, peer: u32) -> Option<u32> {
        for _ in 0..=MAX_CONNECTIONS {
            let p = self.next_port;
            self.next_port = p.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            if !self.conns.contains_key(&(p, peer)) {
                return Some(p);
            }
        }
        None
    }

    /// Give up host `CONNECT`s the guest left unanswered for [`CONNECT_TIMEOUT`]; arm the
    /// timer for the next one.
    fn expire_connects(&mut self) {
        let now = Instant::now();
        let waiting = || {
            self.conns
                .iter()
                .filter(|(_, c)| c.state == State::LocalInit)
        };
        let stale: Vec<Key> = waiting()
            .filter(|(_, c)| now.duration_since(c.created) >= CONNECT_TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        let next = waiting()
            .map(|(_, c)| c.created + CONNECT_TIMEOUT)
            .filter(|at| *at > now)
            .min();
        for key in stale {
            self.reset(
                key,
                format_args!("the guest did not answer the host's CONNECT"),
            );
        }
        if let (Some(timer), Some(at)) = (&mut self.timer, next) {
            let wait = at
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            if let Err(e) = timer.reset(wait, None) {
                log::error!("{}: cannot arm the CONNECT timer: {e}", self.name);
            }
        }
    }

    /// Write guest data to the host sockets; finish and reset connections.
    fn flush_host(&mut self) -> bool {
        let mut budget = MAX_HOST_BYTES_PER_PASS;
        let mut broken = Vec::new();
        let mut finished = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            if budget == 0 {
                return true;
            }
            if conn.has_host_bound() || conn.guest_shut != 0 {
                match conn.flush(budget) {
                    Ok(n) => budget -= n,
                    Err(e) => broken.push((*key, e)),
                }
            }
            if conn.finished() {
                finished.push(*key);
            }
        }
        for (key, e) in broken {
            self.reset(key, format_args!("host socket: {e:?}"));
        }
        for key in finished {
            self.reset(key, format_args!("finished"));
        }
        false
    }

    /// Fill rx buffers: RSTs first, then each connection's packets, starting after the
    /// connection the last pass ended with. Returns the buffers used and whether work is
    /// left for the next pass.
    fn fill_rx(&mut self) -> (usize, bool) {
        let mem = self.active.mem.clone();
        let mut used = 0;
        // One packet per connection in turn, starting after the one served last.
        let mut keys: Vec<Key> = self
            .conns
            .range((Bound::Excluded(self.cursor), Bound::Unbounded))
            .map(|(k, _)| *k)
            .collect();
        keys.extend(self.conns.range(..=self.cursor).map(|(k, _)| *k));
        let (mut at, mut idle) = (0usize, 0usize);
        while used < MAX_PACKETS_PER_PASS {
            // `idle`: connections asked in a row without a packet; all of them: done.
            if self.rsts.is_empty() && idle >= keys.len() {
                return (used, false);
            }
            let Some(chain) = self.active.rx.pop_descriptor_chain(&mem) else {
                self.rx_starved = true;
                return (used, false);
            };
            let head = chain.head_index();
            used += 1;
            let rx = match packet::RxChain::new(chain) {
                Ok(rx) => rx,
                Err(e) => {
                    self.warn(format_args!("rx buffer {head} unusable: {e}"));
                    self.return_rx(head, 0);
                    continue;
                }
            };
            // The packet written and how that went.
            let mut sent = None;
            if let Some(rst) = self.rsts.pop_front() {
                sent = Some((rst, rx.write(&mem, &rst, &[])));
            }
            while sent.is_none() && idle < keys.len() {
                let key = keys[at % keys.len()];
                at += 1;
                let Some(conn) = self.conns.get_mut(&key) else {
                    idle += 1;
                    continue;
                };
                match conn.next_packet(self.guest_cid, rx.room(), &mut self.spare) {
                    Ok(Some((hdr, data))) => {
                        sent = Some((hdr, rx.write(&mem, &hdr, data)));
                        idle = 0;
                        self.cursor = key;
                    }
                    Ok(None) => idle += 1,
                    Err(e) => {
                        self.reset(key, format_args!("host socket: {e:?}"));
                        idle += 1;
                    }
                }
            }
            if sent.is_none() {
                sent = self.rsts.pop_front().map(|r| (r, rx.write(&mem, &r, &[])));
            }
            match sent {
                Some((_, Ok(n))) => self.return_rx(head, n),
                Some((hdr, Err(e))) => {
                    // Only an rx buffer outside guest memory gets here (its size was
                    // checked): the packet is lost, its connection reset.
                    self.warn(format_args!("rx buffer {head}: {e}"));
                    self.return_rx(head, 0);
                    if hdr.op != op::RST {
                        self.reset(
                            (hdr.src_port, hdr.dst_port),
                            format_args!("rx buffer unusable"),
                        );
                    }
                }
                None => {
                    // Nothing to send after all: the buffer stays the guest's.
                    let back = self.active.rx.next_avail().wrapping_sub(1);
                    self.active.rx.set_next_avail(back);
                    return (used - 1, false);
                }
            }
        }
        (used, true)
    }

    fn return_rx(&mut self, head: u16, len: u32) {
        let mem = self.active.mem.clone();
        if let Err(e) = self.active.rx.add_used(&mem, head, len) {
            self.warn(format_args!("rx buffer {head}: cannot return it: {e}"));
        }
    }

    /// Make the worker wait on each socket for what the device can act on.
    fn update_interests(&mut self) {
        let Some(fds) = &self.fds else {
            return;
        };
        for conn in self.conns.values_mut() {
            let Some(now) = conn.interest else {
                continue;
            };
            let mut want = conn.wanted_events();
            if self.rx_starved {
                want.remove(EventSet::IN);
            }
            if want != now {
                if let Err(e) = fds.modify(&conn.stream, conn.token, want) {
                    log::debug!("{}: epoll modify: {e}", self.name);
                }
                conn.interest = Some(want);
            }
        }
    }

    fn signal(&mut self, queue: u16) {
        let q = if queue == 0 {
            &mut self.active.rx
        } else {
            &mut self.active.tx
        };
        match q.needs_notification(&self.active.mem) {
            Ok(false) => {}
            Ok(true) => self.active.interrupt.signal_used_queue(queue),
            Err(e) => {
                self.warn(format_args!("reading the used event: {e}"));
                self.active.interrupt.signal_used_queue(queue);
            }
        }
    }
}

/// Parse `CONNECT <port>` (a trailing `\r` is allowed).
fn parse_connect(line: &[u8]) -> Result<u32, String> {
    let text = std::str::from_utf8(line).map_err(|_| "CONNECT line is not text".to_string())?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    text.strip_prefix("CONNECT ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("expected CONNECT <port>, got {text:?}"))
}

impl QueueHandler for VsockQueues {
    fn attach(&mut self, fds: WorkerFds) {
        match fds.add(&*self.listener, LISTENER_TOKEN, EventSet::IN) {
            Ok(()) => self.listener_watched = true,
            Err(e) => log::error!("{}: cannot wait on {:?}: {e}", self.name, self.path),
        }
        match TimerFd::new() {
            Ok(timer) => {
                if let Err(e) = fds.add(&timer, TIMER_TOKEN, EventSet::IN) {
                    log::error!("{}: cannot wait on the CONNECT timer: {e}", self.name);
                }
                self.timer = Some(timer);
            }
            Err(e) => log::error!("{}: no CONNECT timer: {e}", self.name),
        }
        self.fds = Some(fds);
    }

    fn ready(&mut self, token: u64, events: EventSet) {
        if token == TIMER_TOKEN {
            // It expired (that is why it is ready): this read does not block.
            if let Some(timer) = &mut self.timer {
                let _ = timer.wait();
            }
            return;
        }
        if token == LISTENER_TOKEN {
            self.listener_ready = true;
            return;
        }
        if !events.intersects(EventSet::HANG_UP | EventSet::ERROR) {
            return;
        }
        // A hung-up socket stays ready: stop waiting on it (passes still read and write
        // it, and see its end).
        if let Some(conn) = self.tokens.get(&token).and_then(|k| self.conns.get_mut(k)) {
            if let Some(fds) = &self.fds {
                let _ = fds.remove(&conn.stream);
            }
            conn.interest = None;
        }
    }

    fn serve(&mut self) -> bool {
        self.rx_starved = false;
        let (tx_used, tx_more) = self.process_tx();
        let host_more = self.serve_host();
        self.expire_connects();
        let flush_more = self.flush_host();
        let (rx_used, rx_more) = self.fill_rx();
        // Tx stopped on a full RST queue goes on once rx buffers drained some of it;
        // without rx buffers the guest's rx kick brings the worker back.
        let tx_more = tx_more && self.rsts.len() < MAX_PENDING_RSTS;
        self.update_interests();
        if tx_used > 0 {
            self.signal(1);
        }
        if rx_used > 0 {
            self.signal(0);
        }
        tx_more || host_more || flush_more || rx_more
    }
}

/// Where a guest's connection to host port `port` goes: `PATH_<port>`.
pub fn port_path(path: &Path, port: u32) -> PathBuf {
    let mut target = path.to_path_buf().into_os_string();
    target.push(format!("_{port}"));
    PathBuf::from(target)
}
