// SPDX-License-Identifier: Apache-2.0
//! One vsock stream connection between the guest and a host Unix socket: its state, its
//! host-bound buffer and the credit accounting both ways (virtio 1.2 §5.10.6.3).
//!
//! Guest to host: the device announces `buf_alloc` = [`TX_BUF_SIZE`] and `fwd_cnt` = bytes
//! written to the host socket; data the host socket cannot take yet waits in `to_host`,
//! which a guest that keeps to its credit never overflows (one that does not is reset).
//! Host to guest: the device reads the host socket only as far as the guest's credit
//! (`buf_alloc - (tx_cnt - fwd_cnt)` from its last header) allows, at most [`RX_STAGE`]
//! bytes at a time, into the connection's stage, and splits what it read over as many rx
//! buffers as it takes (Linux posts 4 KiB ones: one `read` per 16 of them rather than one
//! each). The socket is read again only once the stage is empty, so bytes go out in the
//! order they came, the host's end of file follows the last of them, and a connection
//! never holds more than [`RX_STAGE`] bytes nor more than the guest has room for (what is
//! staged only waits for rx buffers, or for credit when a guest shrank its `buf_alloc`).
//! A RST, a reset or the guest's `SHUTDOWN` with `RCV` drops what is staged: the guest
//! takes no more data on that connection.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use vmm_sys_util::epoll::EventSet;

use super::packet::{op, Header, HOST_CID, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};

/// The host-bound buffer of one connection: the `buf_alloc` announced to the guest.
pub const TX_BUF_SIZE: u32 = 256 << 10;
/// The most host bytes one connection reads ahead for the guest (Linux's largest packet).
pub const RX_STAGE: usize = super::packet::MAX_PKT_LEN as usize;
/// The device's spare stage: a connection takes it (or a new one) to read its socket and
/// gives it back, or frees it when the spare is there already, when the read finds
/// nothing. So only connections with data coming hold [`RX_STAGE`] bytes, and a steady
/// stream reads into the same memory without allocating.
pub type Spare = Option<Box<[u8]>>;
/// Freed host-bound bytes that make the device send a credit update unasked.
const CREDIT_UPDATE_THRESHOLD: u32 = TX_BUF_SIZE / 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A host process asked for a guest port: the device's REQUEST is pending or sent, the
    /// guest's RESPONSE is awaited.
    LocalInit,
    Established,
    /// The guest shut down both directions: what it sent is flushed to the host, then the
    /// device answers RST and forgets the connection.
    Closing,
}

/// Why a connection is reset.
#[derive(Debug)]
pub enum Broken {
    /// The guest sent more than its credit allowed.
    Overflow,
    Host(io::Error),
}

pub struct Conn {
    pub stream: UnixStream,
    pub token: u64,
    pub state: State,
    pub local_port: u32,
    pub peer_port: u32,
    /// When the connection was made (a host's `CONNECT` the guest leaves unanswered
    /// times out from here).
    pub created: Instant,
    /// What the worker's epoll waits for (`None`: not registered any more).
    pub interest: Option<EventSet>,
    // Guest to host.
    to_host: VecDeque<u8>,
    fwd_cnt: u32,
    fwd_cnt_sent: u32,
    // Host to guest.
    tx_cnt: u32,
    /// Read from the host socket, not sent yet: `stage[stage_at..stage_end]`, in
    /// [`RX_STAGE`] bytes the connection holds while it has data coming (see [`Spare`]).
    stage: Option<Box<[u8]>>,
    stage_at: usize,
    stage_end: usize,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// The host socket reached end of file (or hung up).
    pub host_eof: bool,
    /// The guest will send no more / receive no more (its SHUTDOWN flags).
    pub guest_shut: u32,
    host_write_shut: bool,
    // Control packets owed to the guest.
    pub need_request: bool,
    pub need_response: bool,
    pub need_credit_update: bool,
    need_credit_request: bool,
    shutdown_sent: bool,
}

impl Conn {
    pub fn new(stream: UnixStream, token: u64, state: State, local: u32, peer: u32) -> Self {
        Self {
            stream,
            token,
            state,
            local_port: local,
            peer_port: peer,
            created: Instant::now(),
            interest: Some(EventSet::empty()),
            to_host: VecDeque::new(),
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            tx_cnt: 0,
            stage: None,
            stage_at: 0,
            stage_end: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            host_eof: false,
            guest_shut: 0,
            host_write_shut: false,
            need_request: state == State::LocalInit,
            need_response: false,
            need_credit_update: false,
            need_credit_request: false,
            shutdown_sent: false,
        }
    }

    /// A header from this connection's side of the device, to the guest.
    pub fn header(&mut self, guest_cid: u64, op: u16, len: u32, flags: u32) -> Header {
        self.fwd_cnt_sent = self.fwd_cnt;
        Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc: TX_BUF_SIZE,
            fwd_cnt: self.fwd_cnt,
        }
    }

    /// Take the guest's credit from any of its headers.
    pub fn peer_credit_from(&mut self, hdr: &Header) {
        self.peer_buf_alloc = hdr.buf_alloc;
        self.peer_fwd_cnt = hdr.fwd_cnt;
        self.need_credit_request = false;
    }

    /// Bytes the guest can take now. A guest claiming to have forwarded more than it was
    /// sent gets nothing until its count makes sense.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Data from the guest, for the host socket.
    pub fn push_from_guest(&mut self, data: &[u8]) -> Result<(), Broken> {
        if self.to_host.len() + data.len() > TX_BUF_SIZE as usize {
            return Err(Broken::Overflow);
        }
        self.to_host.extend(data);
        Ok(())
    }

    pub fn has_host_bound(&self) -> bool {
        !self.to_host.is_empty()
    }

    /// Write what waits for the host socket, up to `budget` bytes; returns the bytes
    /// written. Passes the guest's end of stream on once everything is written.
    pub fn flush(&mut self, budget: usize) -> Result<usize, Broken> {
        let mut done = 0;
        while done < budget && !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            let n = front.len().min(budget - done);
            match self.stream.write(&front[..n]) {
                Ok(0) => return Err(Broken::Host(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.to_host.drain(..n);
                    done += n;
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Broken::Host(e)),
            }
        }
        let freed = self.fwd_cnt.wrapping_sub(self.fwd_cnt_sent);
        if freed >= CREDIT_UPDATE_THRESHOLD || (self.to_host.is_empty() && freed > 0) {
            self.need_credit_update = true;
        }
        if self.to_host.is_empty() && self.guest_shut & SHUTDOWN_SEND != 0 && !self.host_write_shut
        {
            self.host_write_shut = true;
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(done)
    }

    /// Whether the guest takes data on this connection.
    fn may_send(&self) -> bool {
        self.state == State::Established && self.guest_shut & SHUTDOWN_RCV == 0
    }

    /// Whether the device may read the host socket for the guest now: the stage is
    /// empty and the guest has room.
    fn may_read(&self) -> bool {
        self.may_send() && !self.host_eof && self.staged() == 0 && self.peer_credit() > 0
    }

    /// Bytes read from the host socket that the guest has not been sent yet.
    pub fn staged(&self) -> usize {
        self.stage_end - self.stage_at
    }

    /// Whether the connection holds a stage (tests).
    #[cfg(test)]
    pub fn holds_stage(&self) -> bool {
        self.stage.is_some()
    }

    /// Read the host socket into the empty stage, up to the guest's credit and
    /// [`RX_STAGE`].
    fn fill_stage(&mut self, spare: &mut Spare) -> Result<(), Broken> {
        let want = (self.peer_credit() as usize).min(RX_STAGE);
        let mut stage = self
            .stage
            .take()
            .or_else(|| spare.take())
            .unwrap_or_else(|| vec![0u8; RX_STAGE].into_boxed_slice());
        (self.stage_at, self.stage_end) = (0, 0);
        let read = loop {
            match self.stream.read(&mut stage[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        match read {
            Ok(0) => self.host_eof = true,
            Ok(n) => {
                self.stage_end = n;
                self.stage = Some(stage);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Broken::Host(e)),
        }
        if spare.is_none() {
            *spare = Some(stage);
        }
        Ok(())
    }

    /// Forget what is staged (the guest takes no more).
    fn drop_stage(&mut self) {
        (self.stage, self.stage_at, self.stage_end) = (None, 0, 0);
    }

    /// The connection is over: both sides said they send no more and all is delivered.
    pub fn finished(&self) -> bool {
        self.to_host.is_empty()
            && (self.state == State::Closing
                || (self.shutdown_sent && self.guest_shut & SHUTDOWN_SEND != 0))
    }

    /// The next packet for the guest into an rx buffer with `room` payload bytes, and its
    /// payload: control packets first, then data from the stage (read from the host socket
    /// when empty, into `spare` if the connection holds no stage), then the end of stream.
    pub fn next_packet(
        &mut self,
        guest_cid: u64,
        room: u64,
        spare: &mut Spare,
    ) -> Result<Option<(Header, &[u8])>, Broken> {
        if self.need_request {
            self.need_request = false;
            return Ok(Some((self.header(guest_cid, op::REQUEST, 0, 0), &[][..])));
        }
        if self.need_response {
            self.need_response = false;
            return Ok(Some((self.header(guest_cid, op::RESPONSE, 0, 0), &[][..])));
        }
        if self.need_credit_update {
            self.need_credit_update = false;
            let h = self.header(guest_cid, op::CREDIT_UPDATE, 0, 0);
            return Ok(Some((h, &[][..])));
        }
        if self.need_credit_request {
            self.need_credit_request = false;
            let h = self.header(guest_cid, op::CREDIT_REQUEST, 0, 0);
            return Ok(Some((h, &[][..])));
        }
        if !self.may_send() && self.staged() > 0 {
            self.drop_stage();
        }
        if self.may_read() {
            self.fill_stage(spare)?;
        }
        let n = (self.staged() as u64)
            .min(u64::from(self.peer_credit()))
            .min(room)
            .min(u64::from(super::packet::MAX_PKT_LEN)) as u32;
        if n > 0 {
            self.tx_cnt = self.tx_cnt.wrapping_add(n);
            if self.peer_credit() == 0 {
                // Ask for more once the guest has read this.
                self.need_credit_request = true;
            }
            let h = self.header(guest_cid, op::RW, n, 0);
            let at = self.stage_at;
            self.stage_at += n as usize;
            return match self.stage.as_deref().and_then(|s| s.get(at..self.stage_at)) {
                Some(data) => Ok(Some((h, data))),
                None => Err(Broken::Host(io::Error::other("staged bytes out of range"))),
            };
        }
        if self.host_eof && !self.shutdown_sent && self.state == State::Established {
            self.shutdown_sent = true;
            let h = self.header(guest_cid, op::SHUTDOWN, 0, SHUTDOWN_SEND);
            return Ok(Some((h, &[][..])));
        }
        Ok(None)
    }

    /// What the worker should wait on this connection's socket for.
    pub fn wanted_events(&self) -> EventSet {
        let mut events = EventSet::empty();
        if self.may_read() {
            events |= EventSet::IN;
        }
        if !self.to_host.is_empty() {
            events |= EventSet::OUT;
        }
        events
    }
}
