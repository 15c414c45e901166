// SPDX-License-Identifier: Apache-2.0
//! The channel-program interpreter: fetches the CCWs an ORB points to (format 0 or 1),
//! follows transfer-in-channel, command chaining and data chaining, resolves indirect data
//! addresses (IDAWs), serves the basic commands every device has (NOP, SENSE, SENSE ID)
//! and hands the rest to the [`CcwDevice`]. CCWs and their data are at absolute addresses.
//! Garbage ends the program with a channel-program check, unknown commands with a unit
//! check (command reject); nothing panics.
//!
//! One channel program is bounded, whatever the guest writes: every CCW fetched (command-
//! or data-chained, TIC) and every IDAW counts against [`MAX_FETCHES`], and the data counts
//! of all its CCWs against the smaller of [`MAX_PROGRAM_BYTES`] and the guest's memory size.
//! A program that runs out of either ends with a channel-program check.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _};

use super::blocks::{Ccw, Orb, Scsw};
use super::subchannel::{Completion, SENSE_COMMAND_REJECT, SENSE_LEN};
use crate::virtio::GuestMemory;

/// Basic command codes.
pub mod cmd {
    pub const NOP: u8 = 0x03;
    pub const SENSE: u8 = 0x04;
    pub const SENSE_ID: u8 = 0xe4;
}

/// CCWs (command-chained, data-chained and TICs) and IDAWs one channel program may fetch
/// before it counts as a runaway.
pub const MAX_FETCHES: u32 = 4096;
/// Data bytes (the sum of the CCW counts) one channel program may name, at most; less when
/// the guest's memory is smaller.
pub const MAX_PROGRAM_BYTES: u64 = 4 << 20;
/// SENSE ID stores at most this much.
const SENSE_ID_MAX: usize = 256;

/// Why a command did not complete normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CcwError {
    /// Unit check, sense byte 0 "command reject": the device does not do this.
    CommandReject,
    /// Channel-program check: a bad length, address or format.
    ProgramCheck,
}

/// A control unit behind a subchannel, executing the commands the interpreter does not.
pub trait CcwDevice: Send {
    /// SENSE ID bytes 0-7: 0xff, control-unit type and model, device type and model.
    fn sense_id(&self) -> [u8; 8];
    /// Execute command `cmd` over its data.
    fn execute(&mut self, cmd: u8, data: &mut DataStream<'_>) -> Result<(), CcwError>;
    /// The subchannel was disabled (MODIFY SUBCHANNEL): the device forgets its driver.
    fn disabled(&mut self) {}
    /// A notification for queue `queue` (virtio-ccw's DIAG 0x500); `false` if the device
    /// has no such queue or takes no notifications.
    fn notify(&mut self, queue: u16) -> bool {
        let _ = queue;
        false
    }
}

/// The data area of one command: a list of (absolute address, length) pieces, from data
/// chaining and IDAWs, read and written in order.
pub struct DataStream<'a> {
    mem: &'a GuestMemory,
    pieces: Vec<(u64, usize)>,
    total: usize,
    pos: usize,
    /// Suppress-length indication: a count other than the command's size is allowed.
    sli: bool,
}

impl<'a> DataStream<'a> {
    /// A stream over `pieces` (tests and the interpreter).
    pub fn new(mem: &'a GuestMemory, pieces: Vec<(u64, usize)>, sli: bool) -> Self {
        let total = pieces.iter().map(|p| p.1).sum();
        Self {
            mem,
            pieces,
            total,
            pos: 0,
            sli,
        }
    }

    /// The CCW count (all data-chained pieces).
    pub fn count(&self) -> usize {
        self.total
    }

    /// Bytes not transferred yet.
    pub fn residual(&self) -> usize {
        self.total - self.pos
    }

    /// Check the count against the size `len` of what the command transfers: equal, or at
    /// least `len` when incorrect length is suppressed.
    pub fn expect(&self, len: usize) -> Result<(), CcwError> {
        if self.total == len || (self.sli && self.total >= len) {
            Ok(())
        } else {
            log::debug!("css: CCW count {} for a {len}-byte command", self.total);
            Err(CcwError::ProgramCheck)
        }
    }

    pub fn rewind(&mut self) {
        self.pos = 0;
    }

    pub fn skip(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.total);
    }

    /// Transfer `len` bytes from the current position, piece by piece.
    fn transfer(
        &mut self,
        len: usize,
        mut f: impl FnMut(&GuestMemory, GuestAddress, usize, usize) -> bool,
    ) -> Result<(), CcwError> {
        if len > self.residual() {
            return Err(CcwError::ProgramCheck);
        }
        let (mut done, mut start) = (0, 0);
        for &(addr, plen) in &self.pieces {
            let end = start + plen;
            if done < len && self.pos + done < end {
                let off = self.pos + done - start;
                let n = (plen - off).min(len - done);
                if !f(self.mem, GuestAddress(addr + off as u64), done, n) {
                    log::debug!(
                        "css: CCW data at {:#x} outside guest memory",
                        addr + off as u64
                    );
                    return Err(CcwError::ProgramCheck);
                }
                done += n;
            }
            start = end;
        }
        self.pos += len;
        Ok(())
    }

    /// Read `buf.len()` bytes of the data area (the driver's output).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<(), CcwError> {
        self.transfer(buf.len(), |m, a, at, n| {
            m.read_slice(&mut buf[at..at + n], a).is_ok()
        })
    }

    /// Write `data` into the data area (the device's answer).
    pub fn write(&mut self, data: &[u8]) -> Result<(), CcwError> {
        self.transfer(data.len(), |m, a, at, n| {
            m.write_slice(&data[at..at + n], a).is_ok()
        })
    }
}

/// What is left of one channel program's allowance.
#[derive(Clone, Copy, Debug)]
struct Budget {
    fetches: u32,
    bytes: u64,
}

impl Budget {
    fn new(mem: &GuestMemory) -> Self {
        let ram = mem.last_addr().0.saturating_add(1);
        Self {
            fetches: MAX_FETCHES,
            bytes: ram.min(MAX_PROGRAM_BYTES),
        }
    }

    /// One more CCW or IDAW fetched.
    fn fetch(&mut self) -> Result<(), CcwError> {
        self.fetches = self.fetches.checked_sub(1).ok_or_else(|| {
            log::debug!("css: channel program fetches more than {MAX_FETCHES} CCWs and IDAWs");
            CcwError::ProgramCheck
        })?;
        Ok(())
    }

    /// `n` more data bytes named.
    fn bytes(&mut self, n: u64) -> Result<(), CcwError> {
        self.bytes = self.bytes.checked_sub(n).ok_or_else(|| {
            log::debug!("css: channel program names more data than it may");
            CcwError::ProgramCheck
        })?;
        Ok(())
    }
}

/// One channel program's run.
pub struct ChannelProgram<'a> {
    mem: &'a GuestMemory,
    orb: Orb,
    sense: [u8; SENSE_LEN],
}

impl<'a> ChannelProgram<'a> {
    /// The program `orb` starts; `sense` is the subchannel's current sense data (what a
    /// SENSE command returns).
    pub fn new(mem: &'a GuestMemory, orb: Orb, sense: [u8; SENSE_LEN]) -> Self {
        Self { mem, orb, sense }
    }

    fn fetch(&self, addr: u64, budget: &mut Budget) -> Result<Ccw, CcwError> {
        budget.fetch()?;
        let mut b = [0u8; 8];
        self.mem
            .read_slice(&mut b, GuestAddress(addr))
            .map_err(|_| CcwError::ProgramCheck)?;
        let ccw = if self.orb.format1() {
            Ccw::parse_format1(&b).ok_or(CcwError::ProgramCheck)?
        } else {
            Ccw::parse_format0(&b)
        };
        // Invalid command codes (low nibble 0), a TIC with high bits, MIDA, suspend.
        if ccw.cmd & 0x0f == 0
            || (ccw.cmd & 0x0f == Ccw::CMD_TIC && ccw.cmd != Ccw::CMD_TIC)
            || ccw.flags & 0x03 != 0
            || (!self.orb.format1() && ccw.count == 0 && ccw.cmd != Ccw::CMD_TIC)
        {
            return Err(CcwError::ProgramCheck);
        }
        Ok(ccw)
    }

    /// The pieces of one CCW's data: its own address, or the blocks its IDAWs name.
    fn pieces(
        &self,
        ccw: &Ccw,
        out: &mut Vec<(u64, usize)>,
        budget: &mut Budget,
    ) -> Result<(), CcwError> {
        let count = usize::from(ccw.count);
        budget.bytes(u64::from(ccw.count))?;
        if ccw.flags & Ccw::FLAG_IDA == 0 {
            if count > 0 {
                out.push((u64::from(ccw.cda), count));
            }
            return Ok(());
        }
        let c64 = self.orb.ctrl0 & Orb::CTRL0_C64 != 0;
        let (idaw_len, block) = match (c64, self.orb.ctrl0 & Orb::CTRL0_I2K != 0) {
            (true, false) => (8u64, 4096u64),
            (true, true) => (8, 2048),
            (false, _) => (4, 2048),
        };
        let (mut at, mut left, mut first) = (u64::from(ccw.cda), count as u64, true);
        if at % idaw_len != 0 {
            return Err(CcwError::ProgramCheck);
        }
        while left > 0 {
            budget.fetch()?;
            let mut b = [0u8; 8];
            let b = &mut b[..idaw_len as usize];
            self.mem
                .read_slice(b, GuestAddress(at))
                .map_err(|_| CcwError::ProgramCheck)?;
            let addr = match *b {
                [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
                [a, b, c, d] => u64::from(u32::from_be_bytes([a, b, c, d])),
                _ => return Err(CcwError::ProgramCheck),
            };
            if (!c64 && addr & 0x8000_0000 != 0) || (!first && addr % block != 0) {
                return Err(CcwError::ProgramCheck);
            }
            let n = (block - addr % block).min(left);
            out.push((addr, n as usize));
            left -= n;
            at = at.checked_add(idaw_len).ok_or(CcwError::ProgramCheck)?;
            first = false;
        }
        Ok(())
    }

    /// Run the program against `device` to its end.
    pub fn run(&self, device: &mut dyn CcwDevice) -> Completion {
        let mut addr = u64::from(self.orb.cpa);
        let mut sense = None;
        let mut last_tic = false;
        let mut budget = Budget::new(self.mem);
        loop {
            let ccw = match self.fetch(addr, &mut budget) {
                Ok(c) => c,
                Err(e) => return self.ended(addr, 0, e, sense),
            };
            if ccw.cmd == Ccw::CMD_TIC {
                if last_tic || ccw.cda % 8 != 0 {
                    return self.ended(addr, 0, CcwError::ProgramCheck, sense);
                }
                last_tic = true;
                addr = u64::from(ccw.cda);
                continue;
            }
            last_tic = false;
            // Data chaining: the following CCWs extend this one's data area.
            let mut pieces = Vec::new();
            let mut tail = ccw;
            if let Err(e) = self.pieces(&ccw, &mut pieces, &mut budget) {
                return self.ended(addr, ccw.count, e, sense);
            }
            while tail.flags & Ccw::FLAG_CD != 0 {
                addr += 8;
                tail = match self.fetch(addr, &mut budget) {
                    Ok(c) if c.cmd != Ccw::CMD_TIC => c,
                    _ => return self.ended(addr, 0, CcwError::ProgramCheck, sense),
                };
                if let Err(e) = self.pieces(&tail, &mut pieces, &mut budget) {
                    return self.ended(addr, tail.count, e, sense);
                }
            }
            let sli = ccw.flags & Ccw::FLAG_SLI != 0 && ccw.flags & Ccw::FLAG_CD == 0;
            let mut data = DataStream::new(self.mem, pieces, sli);
            let result = if ccw.flags & Ccw::FLAG_SKIP != 0 {
                Ok(())
            } else {
                self.execute(ccw.cmd, &mut data, device)
            };
            if result == Err(CcwError::CommandReject) {
                let mut s = [0u8; SENSE_LEN];
                s[0] = SENSE_COMMAND_REJECT;
                sense = Some(s);
            }
            let residual = data.residual().min(usize::from(tail.count)) as u16;
            if let Err(e) = result {
                return self.ended(addr, residual, e, sense);
            }
            if ccw.flags & Ccw::FLAG_CC == 0 {
                return Completion {
                    cpa: (addr + 8) as u32,
                    dstat: Scsw::DSTAT_CHANNEL_END | Scsw::DSTAT_DEVICE_END,
                    cstat: 0,
                    count: residual,
                    sense,
                };
            }
            addr += 8;
        }
    }

    fn execute(
        &self,
        cmd: u8,
        data: &mut DataStream<'_>,
        device: &mut dyn CcwDevice,
    ) -> Result<(), CcwError> {
        match cmd {
            cmd::NOP => Ok(()),
            cmd::SENSE => {
                let n = data.count().min(SENSE_LEN);
                data.write(&self.sense[..n])
            }
            cmd::SENSE_ID => {
                let mut id = [0u8; SENSE_ID_MAX];
                id[..8].copy_from_slice(&device.sense_id());
                let n = data.count().min(SENSE_ID_MAX);
                if n < 4 {
                    id[0] = 0;
                }
                data.write(&id[..n])
            }
            _ => device.execute(cmd, data),
        }
    }

    fn ended(
        &self,
        addr: u64,
        count: u16,
        e: CcwError,
        sense: Option<[u8; SENSE_LEN]>,
    ) -> Completion {
        let end = Scsw::DSTAT_CHANNEL_END | Scsw::DSTAT_DEVICE_END;
        let (dstat, cstat) = match e {
            CcwError::CommandReject => (end | Scsw::DSTAT_UNIT_CHECK, 0),
            CcwError::ProgramCheck => (0, Scsw::CSTAT_PROGRAM_CHECK),
        };
        Completion {
            cpa: (addr + 8) as u32,
            dstat,
            cstat,
            count,
            sense,
        }
    }
}

#[cfg(test)]
mod tests;
