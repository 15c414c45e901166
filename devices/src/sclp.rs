// SPDX-License-Identifier: Apache-2.0
//! The Service-Call Logical Processor: what a guest's `SERVC` asks for, answered in its
//! service-call control block (SCCB). All fields are big-endian.
//!
//! SCCB header (8 bytes): length u16, function code u8, control mask 3 bytes, response code
//! u16. Served here: READ SCP INFO (memory size as increments, the CPU list), READ CPU INFO,
//! WRITE EVENT MASK, WRITE EVENT DATA (the VT220 and line-mode consoles: text to a `Write`
//! sink), READ EVENT DATA (the signal-quiesce event the VMM queues to ask the guest to shut
//! down, see [`Sclp::request_quiesce`], and VT220 console input, see [`Sclp::queue_input`]).
//! Layouts as Linux reads them
//! (`drivers/s390/char/sclp*.h`, `arch/s390/include/asm/sclp.h`).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _};

use crate::console_input::InputRoom;
use crate::log_limit::LogLimit;
use crate::virtio::GuestMemory;

pub mod ebcdic;

/// SCLP command words (the register named by SERVC's R1).
pub mod command {
    pub const READ_CPU_INFO: u32 = 0x0001_0001;
    pub const READ_SCP_INFO: u32 = 0x0002_0001;
    pub const READ_SCP_INFO_FORCED: u32 = 0x0012_0001;
    pub const WRITE_EVENT_DATA: u32 = 0x0076_0005;
    pub const READ_EVENT_DATA: u32 = 0x0077_0005;
    pub const WRITE_EVENT_MASK: u32 = 0x0078_0005;
    /// The bits that name the command (the rest address a resource).
    pub const CODE_MASK: u32 = 0xffff_00ff;
}

/// SCCB response codes.
pub mod response {
    pub const NORMAL_READ_COMPLETION: u16 = 0x0010;
    pub const NORMAL_COMPLETION: u16 = 0x0020;
    pub const SCCB_BOUNDARY_VIOLATION: u16 = 0x0100;
    pub const INVALID_COMMAND: u16 = 0x01f0;
    pub const INSUFFICIENT_SCCB_LENGTH: u16 = 0x0300;
    pub const INVALID_FUNCTION: u16 = 0x40f0;
    pub const NO_EVENT_BUFFERS_STORED: u16 = 0x60f0;
    pub const INVALID_SELECTION_MASK: u16 = 0x70f0;
    pub const EVENT_BUFFER_SYNTAX_ERROR: u16 = 0x73f0;
    pub const INVALID_MASK_LENGTH: u16 = 0x74f0;
}

/// Event types and their bits in a 32-bit event mask (type n is bit n-1 from the left).
pub mod event {
    pub const OPERATOR_COMMAND: u8 = 0x01;
    pub const MESSAGE: u8 = 0x02;
    pub const VT220: u8 = 0x1a;
    pub const SIGNAL_QUIESCE: u8 = 0x1d;

    pub const fn mask(event_type: u8) -> u32 {
        1 << (32 - event_type as u32)
    }

    /// Set in an event buffer's flags when the SCLP took it.
    pub const BUFFER_ACCEPTED: u8 = 0x80;
}

/// The largest SCCB (one page).
pub const SCCB_MAX: usize = 4096;
const HEADER_LEN: usize = 8;
/// Where READ SCP INFO puts the CPU entries (the fixed offset older kernels assume).
const SCP_INFO_CPU_OFFSET: usize = 128;
const CPU_ENTRY_LEN: usize = 16;
const READ_CPU_INFO_OFFSET: usize = 16;
/// READ SCP INFO facility bit: READ CPU INFO is available.
const FACILITY_CPU_INFO: u64 = 0x0800_0000_0000_0000;
/// At most this many storage increments; the increment grows (a power of two of MiB) until
/// the memory fits.
const MAX_STORAGE_INCREMENTS: u64 = 1020;

/// A SERVC the guest must get a program interruption for instead of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceError {
    /// The SCCB address is not 8-byte aligned below 2 GiB, or the header is too short.
    Specification,
    /// The SCCB is outside guest memory.
    Addressing,
}

impl ServiceError {
    /// The program-interruption code.
    pub fn program_code(self) -> u16 {
        match self {
            ServiceError::Specification => crate::css::pgm::SPECIFICATION,
            ServiceError::Addressing => crate::css::pgm::ADDRESSING,
        }
    }
}

/// Which console event the SCLP offers the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SclpConsole {
    /// The ASCII VT220 console (`console=ttysclp0`).
    Vt220,
    /// The EBCDIC line-mode operator console.
    LineMode,
}

/// The SCLP of one machine.
#[derive(Debug)]
pub struct Sclp {
    ram_bytes: u64,
    cpus: u16,
    console: SclpConsole,
    /// Event types the guest said it can receive / send (its cp masks).
    guest_receive_mask: u32,
    guest_send_mask: u32,
    /// A signal-quiesce event waits for the guest's READ EVENT DATA.
    quiesce_pending: bool,
    /// Console input waiting for the guest's READ EVENT DATA (VT220 events).
    input: VecDeque<u8>,
    /// Says when `input` has room again after refusing some.
    room: InputRoom,
    /// Console output the sink refused.
    output_errors: LogLimit,
}

/// Console input held for the guest at most (the VMM's input waits for room when it is
/// full, see [`Sclp::input_room`]).
pub const INPUT_MAX: usize = 4096;
/// An event buffer's header: length u16, type u8, flags u8, reserved u16.
const EVBUF_HEADER_LEN: usize = 6;
/// The first data byte of a VT220 input event: "session data follows" (Linux's
/// `SCLP_VT220_SESSION_DATA`).
const VT220_SESSION_DATA: u8 = 0x00;

/// The signal-quiesce event buffer: header (length u16, type u8, flags u8, reserved u16),
/// then the timeout u16 and its unit u8 (0: no timeout given).
const QUIESCE_EVENT_LEN: usize = 9;
/// Third control-mask byte of the SCCB header: the guest takes a variable-length answer.
const VARIABLE_LENGTH_RESPONSE: u8 = 0x80;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn set_response(sccb: &mut [u8], code: u16) {
    put16(sccb, 6, code);
}

impl Sclp {
    pub fn new(ram_bytes: u64, cpus: u16, console: SclpConsole) -> Self {
        Self {
            ram_bytes,
            cpus,
            console,
            guest_receive_mask: 0,
            guest_send_mask: 0,
            quiesce_pending: false,
            input: VecDeque::new(),
            room: InputRoom::default(),
            output_errors: LogLimit::new("SCLP console output"),
        }
    }

    /// Queue a signal-quiesce event: how an IBM Z operator asks the guest to shut down.
    /// Linux's `sclp_quiesce` answers it with `ctrl_alt_del()` and ends in a disabled wait
    /// (the backend's poweroff). Returns whether the guest registered for the event; the
    /// caller then raises a service signal with [`Sclp::event_pending`] set.
    pub fn request_quiesce(&mut self) -> bool {
        self.quiesce_pending = true;
        self.event_pending()
    }

    /// An event waits for a guest that asked for it (bit 0 of the service-signal parameter).
    pub fn event_pending(&self) -> bool {
        (self.quiesce_pending && self.guest_receives(event::SIGNAL_QUIESCE))
            || (!self.input.is_empty() && self.guest_receives(event::VT220))
    }

    fn guest_receives(&self, event_type: u8) -> bool {
        self.guest_receive_mask & event::mask(event_type) != 0
    }

    /// Queue console input for the guest (VT220 input events); returns how many bytes fit.
    /// The caller raises a service signal when [`Sclp::event_pending`] says the guest can
    /// take them; input that arrives before the guest registered for VT220 events waits.
    pub fn queue_input(&mut self, bytes: &[u8]) -> usize {
        if self.console != SclpConsole::Vt220 {
            return 0;
        }
        let n = bytes.len().min(INPUT_MAX - self.input.len());
        self.input.extend(&bytes[..n]);
        if n < bytes.len() {
            self.room.refused();
        }
        n
    }

    /// Says when console input has room again after [`Sclp::queue_input`] refused some:
    /// when the guest has read events.
    pub fn input_room(&self) -> &InputRoom {
        &self.room
    }

    /// Events the SCLP accepts from the guest.
    pub fn receive_mask(&self) -> u32 {
        match self.console {
            SclpConsole::Vt220 => event::mask(event::VT220),
            SclpConsole::LineMode => event::mask(event::MESSAGE),
        }
    }

    /// Events the SCLP may send the guest.
    pub fn send_mask(&self) -> u32 {
        let console = match self.console {
            SclpConsole::Vt220 => event::mask(event::VT220),
            SclpConsole::LineMode => event::mask(event::OPERATOR_COMMAND),
        };
        console | event::mask(event::SIGNAL_QUIESCE)
    }

    /// The event masks the guest registered: (receive, send).
    pub fn guest_masks(&self) -> (u32, u32) {
        (self.guest_receive_mask, self.guest_send_mask)
    }

    /// Execute a `SERVC`: read the SCCB at `sccb_addr`, run `command`, write the answer back.
    /// Returns the service-signal parameter to deliver with condition code 0.
    pub fn service_call(
        &mut self,
        mem: &GuestMemory,
        command: u32,
        sccb_addr: u64,
        out: &mut dyn Write,
    ) -> Result<u32, ServiceError> {
        if sccb_addr & !0x7fff_fff8 != 0 {
            return Err(ServiceError::Specification);
        }
        let mut header = [0u8; HEADER_LEN];
        if sccb_addr + HEADER_LEN as u64 > mem.last_addr().0 + 1 {
            return Err(ServiceError::Addressing);
        }
        mem.read_slice(&mut header, GuestAddress(sccb_addr))
            .map_err(|_| ServiceError::Addressing)?;
        let len = be16(&header, 0) as usize;
        if len < HEADER_LEN {
            return Err(ServiceError::Specification);
        }
        let page_end = (sccb_addr | 0xfff) + 1;
        let mut sccb;
        if len > SCCB_MAX || sccb_addr + len as u64 > page_end {
            // Answer in the header only.
            sccb = header.to_vec();
            set_response(&mut sccb, response::SCCB_BOUNDARY_VIOLATION);
        } else {
            sccb = vec![0u8; len];
            mem.read_slice(&mut sccb, GuestAddress(sccb_addr))
                .map_err(|_| ServiceError::Addressing)?;
            self.execute(command, &mut sccb, out);
        }
        mem.write_slice(&sccb, GuestAddress(sccb_addr))
            .map_err(|_| ServiceError::Addressing)?;
        // Bit 0 of the parameter: an event waits to be read.
        Ok((sccb_addr as u32) & !3 | u32::from(self.event_pending()))
    }

    /// Run `command` on an SCCB already copied out of guest memory (`sccb.len()` is the
    /// header's length, at least 8).
    pub fn execute(&mut self, command: u32, sccb: &mut [u8], out: &mut dyn Write) {
        match command & command::CODE_MASK {
            command::READ_SCP_INFO | command::READ_SCP_INFO_FORCED => self.read_scp_info(sccb),
            command::READ_CPU_INFO => self.read_cpu_info(sccb),
            command::WRITE_EVENT_MASK => self.write_event_mask(sccb),
            command::WRITE_EVENT_DATA => self.write_event_data(sccb, out),
            command::READ_EVENT_DATA => self.read_event_data(sccb),
            other => {
                log::debug!("SCLP: command {other:#010x} is not served");
                set_response(sccb, response::INVALID_COMMAND);
            }
        }
    }

    /// Storage increment size in MiB and number of increments.
    pub fn storage_increments(&self) -> (u64, u64) {
        let mib = self.ram_bytes >> 20;
        let mut inc = 1u64;
        while mib / inc > MAX_STORAGE_INCREMENTS {
            inc *= 2;
        }
        (inc, mib / inc)
    }

    fn cpu_entries(&self, sccb: &mut [u8], at: usize) {
        for cpu in 0..self.cpus as usize {
            let e = &mut sccb[at + cpu * CPU_ENTRY_LEN..][..CPU_ENTRY_LEN];
            e.fill(0);
            e[0] = cpu as u8; // CPU address; type (byte 14) 0 = CP
        }
    }

    fn read_scp_info(&self, sccb: &mut [u8]) {
        let needed = SCP_INFO_CPU_OFFSET + CPU_ENTRY_LEN * self.cpus as usize;
        if sccb.len() < needed {
            set_response(sccb, response::INSUFFICIENT_SCCB_LENGTH);
            return;
        }
        sccb[HEADER_LEN..needed].fill(0);
        let (inc, count) = self.storage_increments();
        put16(sccb, 8, count as u16); // rnmax
        sccb[10] = if inc < 256 { inc as u8 } else { 0 }; // rnsize (MiB), 0: see rnsize2
        put16(sccb, 16, self.cpus); // CPU entries
        put16(sccb, 18, SCP_INFO_CPU_OFFSET as u16); // their offset
        put64(sccb, 48, FACILITY_CPU_INFO);
        put32(sccb, 100, inc as u32); // rnsize2
        put64(sccb, 104, count); // rnmax2
        put16(sccb, 120, self.cpus.saturating_sub(1)); // highest CPU address
        self.cpu_entries(sccb, SCP_INFO_CPU_OFFSET);
        set_response(sccb, response::NORMAL_READ_COMPLETION);
    }

    fn read_cpu_info(&self, sccb: &mut [u8]) {
        let needed = READ_CPU_INFO_OFFSET + CPU_ENTRY_LEN * self.cpus as usize;
        if sccb.len() < needed {
            set_response(sccb, response::INSUFFICIENT_SCCB_LENGTH);
            return;
        }
        sccb[HEADER_LEN..needed].fill(0);
        put16(sccb, 8, self.cpus); // configured
        put16(sccb, 10, READ_CPU_INFO_OFFSET as u16);
        put16(sccb, 12, 0); // standby
        put16(sccb, 14, needed as u16);
        self.cpu_entries(sccb, READ_CPU_INFO_OFFSET);
        set_response(sccb, response::NORMAL_READ_COMPLETION);
    }

    /// Layout: reserved u16 at 8, mask length u16 at 10, then four masks of that length from
    /// 12: the guest's receive and send masks (in), the SCLP's receive and send masks (out).
    fn write_event_mask(&mut self, sccb: &mut [u8]) {
        if sccb.len() < 12 {
            set_response(sccb, response::INSUFFICIENT_SCCB_LENGTH);
            return;
        }
        let mask_len = be16(sccb, 10) as usize;
        if mask_len != 4 {
            set_response(sccb, response::INVALID_MASK_LENGTH);
            return;
        }
        if sccb.len() < 12 + 4 * mask_len {
            set_response(sccb, response::INSUFFICIENT_SCCB_LENGTH);
            return;
        }
        let m = |at: usize| u32::from_be_bytes(sccb[at..at + 4].try_into().unwrap());
        self.guest_receive_mask = m(12);
        self.guest_send_mask = m(16);
        put32(sccb, 20, self.receive_mask());
        put32(sccb, 24, self.send_mask());
        set_response(sccb, response::NORMAL_COMPLETION);
    }

    /// Event buffers from offset 8 to the end: length u16, type u8, flags u8, reserved u16,
    /// then the event's data.
    fn write_event_data(&mut self, sccb: &mut [u8], out: &mut dyn Write) {
        if sccb[2] != 0 {
            set_response(sccb, response::INVALID_FUNCTION);
            return;
        }
        let mut rc = response::NORMAL_COMPLETION;
        let mut at = HEADER_LEN;
        while at < sccb.len() {
            if sccb.len() - at < 6 {
                rc = response::EVENT_BUFFER_SYNTAX_ERROR;
                break;
            }
            let len = be16(sccb, at) as usize;
            if len < 6 || len > sccb.len() - at {
                rc = response::EVENT_BUFFER_SYNTAX_ERROR;
                break;
            }
            let data = &sccb[at + 6..at + len];
            let text = match sccb[at + 2] {
                event::VT220 => Some(data.to_vec()),
                event::MESSAGE => Some(line_mode_text(data)),
                other => {
                    log::debug!("SCLP: event type {other:#x} written, not served");
                    None
                }
            };
            match text {
                Some(text) => {
                    if let Err(e) = out.write_all(&text).and_then(|()| out.flush()) {
                        self.output_errors.warn(format_args!("{e}"));
                    }
                    sccb[at + 3] |= event::BUFFER_ACCEPTED;
                }
                None => rc = response::INVALID_FUNCTION,
            }
            at += len;
        }
        set_response(sccb, rc);
    }

    /// Function code 0 reads unconditionally (what Linux's `sclp_read_cb` asks), 1 the events
    /// selected by the mask at 8. Bit 0x80 of the third control-mask byte asks for a
    /// variable-length answer; it is cleared, as the architecture suggests, and the length
    /// always tells how far the events go.
    fn read_event_data(&mut self, sccb: &mut [u8]) {
        let selection = match sccb[2] {
            0x00 => u32::MAX,
            0x01 => {
                if sccb.len() < 12 {
                    set_response(sccb, response::INSUFFICIENT_SCCB_LENGTH);
                    return;
                }
                let sel = u32::from_be_bytes(sccb[8..12].try_into().unwrap());
                if sel == 0 || sel & !self.send_mask() != 0 {
                    set_response(sccb, response::INVALID_SELECTION_MASK);
                    return;
                }
                sel
            }
            _ => {
                set_response(sccb, response::INVALID_FUNCTION);
                return;
            }
        };
        // The events go one after the other from offset 8; the guest walks them up to the
        // SCCB's length, which then ends after the last.
        let mut at = HEADER_LEN;
        let selected = |t: u8| selection & event::mask(t) != 0;
        let (quiesce, vt220) = (
            self.guest_receives(event::SIGNAL_QUIESCE) && selected(event::SIGNAL_QUIESCE),
            self.guest_receives(event::VT220) && selected(event::VT220),
        );
        let mut too_small = false;
        if self.quiesce_pending && quiesce {
            let end = at + QUIESCE_EVENT_LEN;
            if end <= sccb.len() {
                sccb[at..end].fill(0);
                put16(sccb, at, QUIESCE_EVENT_LEN as u16);
                sccb[at + 2] = event::SIGNAL_QUIESCE;
                at = end;
                self.quiesce_pending = false;
                log::debug!("SCLP: signal-quiesce event delivered");
            } else {
                too_small = true;
            }
        }
        if !self.input.is_empty() && vt220 {
            let room = sccb.len().saturating_sub(at + EVBUF_HEADER_LEN + 1);
            let n = room.min(self.input.len());
            if n > 0 {
                let len = EVBUF_HEADER_LEN + 1 + n;
                sccb[at..at + EVBUF_HEADER_LEN + 1].fill(0);
                put16(sccb, at, len as u16);
                sccb[at + 2] = event::VT220;
                sccb[at + EVBUF_HEADER_LEN] = VT220_SESSION_DATA;
                for (dst, src) in sccb[at + EVBUF_HEADER_LEN + 1..at + len]
                    .iter_mut()
                    .zip(self.input.drain(..n))
                {
                    *dst = src;
                }
                self.room.freed();
                at += len;
            } else {
                too_small = true;
            }
        }
        if at > HEADER_LEN {
            put16(sccb, 0, at as u16);
            sccb[5] &= !VARIABLE_LENGTH_RESPONSE;
            set_response(sccb, response::NORMAL_COMPLETION);
            return;
        }
        if too_small {
            set_response(sccb, response::INSUFFICIENT_SCCB_LENGTH);
            return;
        }
        set_response(sccb, response::NO_EVENT_BUFFERS_STORED);
    }
}

/// How long the power button waits for a busy SCLP.
pub const PRESS_WAIT: Duration = Duration::from_secs(1);

/// Lock `m` if that takes at most about `wait` (polling; a poisoned lock is taken as it
/// is): for callers on a stop path, which must not wait for a guest.
pub fn lock_within<T>(m: &Mutex<T>, wait: Duration) -> Option<MutexGuard<'_, T>> {
    let start = Instant::now();
    loop {
        match m.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) if start.elapsed() >= wait => return None,
            Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// The text of a line-mode message event: an MDB (header: length u16, type u16, tag
/// "MDB " in EBCDIC, revision u32) whose message-text objects (type 4: length u16, type u16,
/// line-type flags u16, alarm u8, 3 reserved, then EBCDIC text) are one line each.
fn line_mode_text(mdb: &[u8]) -> Vec<u8> {
    let mut text = Vec::new();
    if mdb.len() < 12 {
        return text;
    }
    let mdb_len = (be16(mdb, 0) as usize).min(mdb.len());
    let mut at = 12;
    while at + 4 <= mdb_len {
        let len = be16(mdb, at) as usize;
        if len < 4 || at + len > mdb_len {
            break;
        }
        if be16(mdb, at + 2) == 4 && len >= 10 {
            text.extend(ebcdic::decode(&mdb[at + 10..at + len]));
            text.push(b'\n');
        }
        at += len;
    }
    text
}

#[cfg(test)]
mod tests;
