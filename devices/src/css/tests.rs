// SPDX-License-Identifier: Apache-2.0
//! The channel subsystem driven like a guest drives it: I/O instructions on operands in
//! guest memory, channel programs, interrupts; byte-exact, on every target.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};

use super::*;

pub(crate) fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
}

mod hotplug;

/// Interrupts made pending, in order, and channel-report machine checks raised.
#[derive(Default)]
pub(crate) struct Recorder(pub Mutex<Vec<IoInterrupt>>, pub AtomicU32);

impl IoInterruptSink for Recorder {
    fn inject(&self, irq: IoInterrupt) {
        self.0.lock().unwrap().push(irq);
    }
    fn channel_report_pending(&self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

impl Recorder {
    pub fn take(&self) -> Vec<IoInterrupt> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Operands at the same absolute address (no DAT), faults for what is not memory.
pub(crate) struct Flat<'a>(pub &'a GuestMemory);

impl OperandMemory for Flat<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), AccessFault> {
        self.0
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| AccessFault)
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), AccessFault> {
        self.0
            .write_slice(data, GuestAddress(addr))
            .map_err(|_| AccessFault)
    }
}

/// A control unit with a write command (0x01, data kept) and a read command (0x02, data
/// 0, 1, 2, ...); everything else is rejected.
#[derive(Default)]
pub(crate) struct Tape {
    written: Arc<Mutex<Vec<u8>>>,
    disabled: Arc<Mutex<u32>>,
}

impl CcwDevice for Tape {
    fn sense_id(&self) -> [u8; 8] {
        [0xff, 0x34, 0x80, 0x01, 0x34, 0x80, 0x01, 0]
    }
    fn execute(&mut self, cmd: u8, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        match cmd {
            0x01 => {
                let mut b = vec![0; data.count()];
                data.read(&mut b)?;
                self.written.lock().unwrap().extend(b);
                Ok(())
            }
            0x02 => {
                let b: Vec<u8> = (0..data.count()).map(|i| i as u8).collect();
                data.write(&b)
            }
            _ => Err(CcwError::CommandReject),
        }
    }
    fn disabled(&mut self) {
        *self.disabled.lock().unwrap() += 1;
    }
}

pub(crate) struct Machine {
    mem: GuestMemory,
    irqs: Arc<Recorder>,
    css: ChannelSubsystem,
    written: Arc<Mutex<Vec<u8>>>,
    disabled: Arc<Mutex<u32>>,
}

const SCH0: u64 = 0x0001_0000;
const SCHIB_AT: u64 = 0x1000;
const ORB_AT: u64 = 0x1100;
const IRB_AT: u64 = 0x1200;
const CCW_AT: u64 = 0x2000;
const DATA_AT: u64 = 0x3000;

pub(crate) fn machine() -> Machine {
    let mem = memory();
    let irqs = Arc::new(Recorder::default());
    let css = ChannelSubsystem::new(mem.clone(), irqs.clone());
    let tape = Tape::default();
    let (written, disabled) = (tape.written.clone(), tape.disabled.clone());
    let id = css.add_device(|_| Box::new(tape)).unwrap();
    assert_eq!(
        id,
        SubchannelId {
            cssid: 0xfe,
            ssid: 0,
            number: 0
        }
    );
    Machine {
        mem,
        irqs,
        css,
        written,
        disabled,
    }
}

impl Machine {
    fn run(&self, op: IoOp, gr1: u64, addr: u64) -> IoOutcome {
        self.css.execute(op, gr1, addr, &mut Flat(&self.mem))
    }

    fn schib(&self) -> Schib {
        assert_eq!(self.run(IoOp::Stsch, SCH0, SCHIB_AT), IoOutcome::Cc(0));
        let mut b = [0u8; Schib::LEN];
        self.mem.read_slice(&mut b, GuestAddress(SCHIB_AT)).unwrap();
        Schib::from_bytes(&b)
    }

    /// Enable with ISC 3, interruption parameter 0xcafe, concurrent sense.
    fn enable(&self, csense: bool) {
        let mut s = self.schib();
        s.pmcw.flags |= Pmcw::FLAG_ENABLED | (3 << 11);
        s.pmcw.intparm = 0xcafe;
        if csense {
            s.pmcw.chars |= Pmcw::CHARS_CSENSE;
        }
        self.mem
            .write_slice(&s.to_bytes(), GuestAddress(SCHIB_AT))
            .unwrap();
        assert_eq!(self.run(IoOp::Msch, SCH0, SCHIB_AT), IoOutcome::Cc(0));
    }

    fn ccws(&self, ccws: &[Ccw]) {
        for (i, c) in ccws.iter().enumerate() {
            self.mem
                .write_slice(&c.to_format1(), GuestAddress(CCW_AT + 8 * i as u64))
                .unwrap();
        }
    }

    fn start(&self, intparm: u32, ctrl0: u16) -> IoOutcome {
        let mut orb = [0u8; 12];
        orb[0..4].copy_from_slice(&intparm.to_be_bytes());
        orb[4..6].copy_from_slice(&(ctrl0 | Orb::CTRL0_FORMAT1).to_be_bytes());
        orb[6] = 0x80;
        orb[8..12].copy_from_slice(&(CCW_AT as u32).to_be_bytes());
        self.mem.write_slice(&orb, GuestAddress(ORB_AT)).unwrap();
        self.run(IoOp::Ssch, SCH0, ORB_AT)
    }

    fn test(&self) -> (IoOutcome, [u8; Irb::LEN]) {
        let out = self.run(IoOp::Tsch, SCH0, IRB_AT);
        let mut b = [0u8; Irb::LEN];
        self.mem.read_slice(&mut b, GuestAddress(IRB_AT)).unwrap();
        (out, b)
    }
}

fn ccw(cmd: u8, flags: u8, count: u16, cda: u64) -> Ccw {
    Ccw {
        cmd,
        flags,
        count,
        cda: cda as u32,
    }
}

#[test]
fn store_subchannel_describes_the_device_and_absent_ones() {
    let m = machine();
    assert_eq!(m.run(IoOp::Stsch, SCH0, SCHIB_AT), IoOutcome::Cc(0));
    let mut b = [0u8; Schib::LEN];
    m.mem.read_slice(&mut b, GuestAddress(SCHIB_AT)).unwrap();
    #[rustfmt::skip]
    let pmcw = [
        0, 0, 0, 0,             // interruption parameter
        0x00, 0x01, 0x00, 0x00, // disabled, ISC 0, device number valid; devno 0000
        0x80, 0x00, 0x00, 0x80, // lpm, pnom, lpum, pim
        0x00, 0x00, 0xff, 0x80, // mbi, pom, pam
        0, 0, 0, 0, 0, 0, 0, 0, // CHPIDs: 0
        0, 0, 0, 0,             // I/O subchannel, no concurrent sense yet
    ];
    assert_eq!(&b[..28], &pmcw);
    assert!(b[28..].iter().all(|&x| x == 0));
    // The same subchannel through MCSS-E addressing (m = 1, css 0xfe).
    assert_eq!(m.run(IoOp::Stsch, 0xfe09_0000, SCHIB_AT), IoOutcome::Cc(0));
    // Absent subchannels, other subchannel sets and css images: not operational.
    for gr1 in [0x0001_0001, 0x0001_ffff, 0x0003_0000, 0x0109_0000] {
        assert_eq!(
            m.run(IoOp::Stsch, gr1, SCHIB_AT),
            IoOutcome::Cc(3),
            "{gr1:#x}"
        );
    }
    // No "one" bit, reserved bits, css without M, bits above 31: operand exception.
    for gr1 in [0x0000_0000, 0x0011_0000, 0xfe01_0000, 0x1_0001_0000] {
        assert_eq!(
            m.run(IoOp::Stsch, gr1, SCHIB_AT),
            IoOutcome::Program(pgm::OPERAND),
            "{gr1:#x}"
        );
    }
    assert_eq!(
        m.run(IoOp::Stsch, SCH0, SCHIB_AT + 2),
        IoOutcome::Program(pgm::SPECIFICATION)
    );
    // An operand outside guest memory faults (the backend made the exception pending).
    assert_eq!(m.run(IoOp::Stsch, SCH0, 1 << 20), IoOutcome::Faulted);
}

#[test]
fn modify_subchannel_takes_only_the_modifiable_fields() {
    let m = machine();
    let mut s = m.schib();
    s.pmcw.flags |= Pmcw::FLAG_ENABLED | (3 << 11) | Pmcw::FLAG_MP;
    s.pmcw.flags &= !Pmcw::FLAG_DEVNO_VALID; // not modifiable
    s.pmcw.devno = 0x1234; // not modifiable
    s.pmcw.intparm = 0x0012_3456;
    s.pmcw.chars = Pmcw::CHARS_CSENSE;
    s.pmcw.pam = 0; // not modifiable
    m.mem
        .write_slice(&s.to_bytes(), GuestAddress(SCHIB_AT))
        .unwrap();
    assert_eq!(m.run(IoOp::Msch, SCH0, SCHIB_AT), IoOutcome::Cc(0));
    let now = m.schib();
    assert_eq!(now.pmcw.flags, 0x1885);
    assert_eq!(now.pmcw.devno, 0);
    assert_eq!(now.pmcw.pam, 0x80);
    assert_eq!(now.pmcw.intparm, 0x0012_3456);
    assert_eq!(now.pmcw.chars, Pmcw::CHARS_CSENSE);
    assert_eq!(now.pmcw.isc(), 3);

    // Reserved flag bits or extended measurement words: operand exception.
    let mut bad = now;
    bad.pmcw.flags |= 0x0100;
    m.mem
        .write_slice(&bad.to_bytes(), GuestAddress(SCHIB_AT))
        .unwrap();
    assert_eq!(
        m.run(IoOp::Msch, SCH0, SCHIB_AT),
        IoOutcome::Program(pgm::OPERAND)
    );
    let mut bad = now;
    bad.pmcw.chars |= Pmcw::CHARS_XMWME;
    m.mem
        .write_slice(&bad.to_bytes(), GuestAddress(SCHIB_AT))
        .unwrap();
    assert_eq!(
        m.run(IoOp::Msch, SCH0, SCHIB_AT),
        IoOutcome::Program(pgm::OPERAND)
    );

    // Disabling tells the device.
    let mut off = now;
    off.pmcw.flags &= !Pmcw::FLAG_ENABLED;
    m.mem
        .write_slice(&off.to_bytes(), GuestAddress(SCHIB_AT))
        .unwrap();
    assert_eq!(m.run(IoOp::Msch, SCH0, SCHIB_AT), IoOutcome::Cc(0));
    assert_eq!(*m.disabled.lock().unwrap(), 1);
}

#[test]
fn a_channel_program_ends_with_an_interrupt_and_test_subchannel_collects_it() {
    let m = machine();
    m.ccws(&[ccw(0x03, Ccw::FLAG_SLI, 0, 0)]);
    // Disabled: not operational.
    assert_eq!(m.start(1, 0), IoOutcome::Cc(3));
    m.enable(true);
    m.ccws(&[
        ccw(0x03, Ccw::FLAG_SLI | Ccw::FLAG_CC, 0, 0),
        ccw(0x01, Ccw::FLAG_CC, 3, DATA_AT),
        ccw(0x02, 0, 4, DATA_AT + 0x100),
    ]);
    m.mem.write_slice(b"abc", GuestAddress(DATA_AT)).unwrap();
    assert_eq!(m.start(0x1234_5678, 0), IoOutcome::Cc(0));
    assert_eq!(*m.written.lock().unwrap(), b"abc");
    let mut read = [0u8; 5];
    m.mem
        .read_slice(&mut read, GuestAddress(DATA_AT + 0x100))
        .unwrap();
    assert_eq!(read, [0, 1, 2, 3, 0]);
    // The ORB's interruption parameter replaced the subchannel's; ISC 3.
    assert_eq!(
        m.irqs.take(),
        vec![IoInterrupt {
            subchannel_id: 0x0001,
            subchannel_nr: 0,
            parm: 0x1234_5678,
            word: 0x1800_0000,
        }]
    );
    // Busy with status pending: SSCH and MSCH say so.
    assert_eq!(m.start(1, 0), IoOutcome::Cc(1));
    assert_eq!(m.run(IoOp::Msch, SCH0, SCHIB_AT), IoOutcome::Cc(1));
    let (out, irb) = m.test();
    assert_eq!(out, IoOutcome::Cc(0));
    // SCSW: format 1; start function, primary + secondary + status pending; the CCW after
    // the last; channel end + device end; residual 0. ESW: last path used 0x80.
    assert_eq!(
        &irb[..16],
        &[0x00, 0x80, 0x40, 0x07, 0x00, 0x00, 0x20, 0x18, 0x0c, 0x00, 0x00, 0x00, 0, 0x80, 0, 0]
    );
    // Nothing pending any more: cc 1, and the SCSW is idle.
    let (out, irb) = m.test();
    assert_eq!(out, IoOutcome::Cc(1));
    assert_eq!(&irb[2..4], &[0, 0]);
    assert!(m.irqs.take().is_empty());
}

#[test]
fn sense_id_and_residual_counts() {
    let m = machine();
    m.enable(true);
    m.ccws(&[ccw(0xe4, Ccw::FLAG_SLI, 300, DATA_AT)]);
    m.mem
        .write_slice(&[0xaa; 300], GuestAddress(DATA_AT))
        .unwrap();
    assert_eq!(m.start(7, 0), IoOutcome::Cc(0));
    let mut id = [0u8; 300];
    m.mem.read_slice(&mut id, GuestAddress(DATA_AT)).unwrap();
    assert_eq!(&id[..8], &[0xff, 0x34, 0x80, 0x01, 0x34, 0x80, 0x01, 0]);
    assert!(id[8..256].iter().all(|&b| b == 0));
    assert!(id[256..].iter().all(|&b| b == 0xaa));
    let (_, irb) = m.test();
    assert_eq!(&irb[10..12], &44u16.to_be_bytes()); // 300 - 256 not stored
}

#[test]
fn unknown_commands_are_rejected_with_sense_data() {
    let m = machine();
    m.enable(true);
    m.ccws(&[ccw(0x77, 0, 1, DATA_AT), ccw(0x03, Ccw::FLAG_SLI, 0, 0)]);
    assert_eq!(m.start(9, 0), IoOutcome::Cc(0));
    assert_eq!(m.irqs.take().len(), 1);
    let (_, irb) = m.test();
    // ESW format + extended control; alert + primary + secondary + pending; unit check.
    assert_eq!(
        &irb[..12],
        &[0x04, 0x82, 0x40, 0x17, 0, 0, 0x20, 0x08, 0x0e, 0, 0, 1]
    );
    // ERW: concurrent sense, 32 bytes; ECW byte 0: command reject.
    assert_eq!(&irb[12..20], &[0, 0x80, 0, 0, 0x01, 0x20, 0, 0]);
    assert_eq!(irb[32], 0x80);

    // Without concurrent sense, the SENSE command fetches it.
    let m = machine();
    m.enable(false);
    m.ccws(&[ccw(0x77, 0, 1, DATA_AT)]);
    assert_eq!(m.start(9, 0), IoOutcome::Cc(0));
    let (_, irb) = m.test();
    assert_eq!(irb[8], 0x0e);
    assert_eq!(irb[32], 0);
    m.ccws(&[ccw(0x04, Ccw::FLAG_SLI, 32, DATA_AT)]);
    assert_eq!(m.start(10, 0), IoOutcome::Cc(0));
    assert_eq!(m.mem.read_obj::<u8>(GuestAddress(DATA_AT)).unwrap(), 0x80);
}

fn program_check(m: &Machine) -> [u8; Irb::LEN] {
    assert_eq!(m.start(1, 0), IoOutcome::Cc(0));
    let (out, irb) = m.test();
    assert_eq!(out, IoOutcome::Cc(0));
    assert_eq!(irb[9], Scsw::CSTAT_PROGRAM_CHECK, "{:02x?}", &irb[..12]);
    assert_eq!(irb[3] & 0x17, 0x17); // alert + primary + secondary + pending
    irb
}

#[test]
fn garbage_channel_programs_end_in_program_checks() {
    let m = machine();
    m.enable(true);
    // Data outside guest memory.
    m.ccws(&[ccw(0x02, 0, 16, (1 << 20) - 8)]);
    let irb = program_check(&m);
    assert_eq!(&irb[4..8], &0x2008u32.to_be_bytes());
    // Command code with a zero low nibble; suspend flag; MIDA flag.
    for c in [
        ccw(0x10, 0, 1, DATA_AT),
        ccw(0x02, 0x02, 1, DATA_AT),
        ccw(0x02, 0x01, 1, DATA_AT),
    ] {
        m.ccws(&[c]);
        program_check(&m);
    }
    // TIC to TIC, TIC to an odd address, a TIC loop.
    m.ccws(&[ccw(0x08, 0, 0, CCW_AT + 8), ccw(0x08, 0, 0, CCW_AT)]);
    program_check(&m);
    m.ccws(&[ccw(0x08, 0, 0, CCW_AT + 4)]);
    program_check(&m);
    m.ccws(&[
        ccw(0x03, Ccw::FLAG_CC | Ccw::FLAG_SLI, 0, 0),
        ccw(0x08, 0, 0, CCW_AT),
    ]);
    program_check(&m);
    // A channel program outside guest memory.
    let mut orb = [0u8; 12];
    orb[5] = 0x80;
    orb[8..12].copy_from_slice(&0x7fff_fff8u32.to_be_bytes());
    m.mem.write_slice(&orb, GuestAddress(ORB_AT)).unwrap();
    assert_eq!(m.run(IoOp::Ssch, SCH0, ORB_AT), IoOutcome::Cc(0));
    assert_eq!(m.test().1[9], Scsw::CSTAT_PROGRAM_CHECK);
    // Invalid ORBs: operand exception, nothing started.
    for (at, v) in [(5usize, 0x84u8), (7, 0x40), (8, 0x80)] {
        let mut orb = [0u8; 12];
        orb[5] = 0x80;
        orb[at] |= v;
        m.mem.write_slice(&orb, GuestAddress(ORB_AT)).unwrap();
        assert_eq!(
            m.run(IoOp::Ssch, SCH0, ORB_AT),
            IoOutcome::Program(pgm::OPERAND)
        );
    }
    assert_eq!(
        m.run(IoOp::Ssch, SCH0, ORB_AT + 1),
        IoOutcome::Program(pgm::SPECIFICATION)
    );
}

#[test]
fn data_chaining_and_indirect_addressing() {
    let m = machine();
    m.enable(true);
    m.mem
        .write_slice(b"hello, ", GuestAddress(DATA_AT))
        .unwrap();
    m.mem
        .write_slice(b"world", GuestAddress(DATA_AT + 0x800))
        .unwrap();
    m.ccws(&[
        ccw(0x01, Ccw::FLAG_CD, 7, DATA_AT),
        ccw(0x01, 0, 5, DATA_AT + 0x800),
    ]);
    assert_eq!(m.start(1, 0), IoOutcome::Cc(0));
    assert_eq!(*m.written.lock().unwrap(), b"hello, world");
    m.test();

    // Format-2 IDAWs (64-bit, 4K blocks): 3 bytes before a 4K boundary, then 2 more.
    m.written.lock().unwrap().clear();
    let idaws = [0x4ffdu64, 0x8000];
    for (i, a) in idaws.iter().enumerate() {
        m.mem
            .write_slice(&a.to_be_bytes(), GuestAddress(0x1800 + 8 * i as u64))
            .unwrap();
    }
    m.mem.write_slice(b"abc", GuestAddress(0x4ffd)).unwrap();
    m.mem.write_slice(b"de", GuestAddress(0x8000)).unwrap();
    m.ccws(&[ccw(0x01, Ccw::FLAG_IDA, 5, 0x1800)]);
    assert_eq!(m.start(1, Orb::CTRL0_C64), IoOutcome::Cc(0));
    assert_eq!(*m.written.lock().unwrap(), b"abcde");
    m.test();
    // A second IDAW not on a block boundary: program check.
    m.mem
        .write_slice(&0x8001u64.to_be_bytes(), GuestAddress(0x1808))
        .unwrap();
    assert_eq!(m.start(1, Orb::CTRL0_C64), IoOutcome::Cc(0));
    assert_eq!(m.test().1[9], Scsw::CSTAT_PROGRAM_CHECK);
}

#[test]
fn clear_halt_resume_cancel() {
    let m = machine();
    m.enable(true);
    assert_eq!(m.run(IoOp::Rsch, SCH0, 0), IoOutcome::Cc(2));
    assert_eq!(m.run(IoOp::Xsch, SCH0, 0), IoOutcome::Cc(2));
    assert_eq!(m.run(IoOp::Hsch, SCH0, 0), IoOutcome::Cc(0));
    assert_eq!(m.irqs.take().len(), 1);
    assert_eq!(m.run(IoOp::Hsch, SCH0, 0), IoOutcome::Cc(1));
    let (_, irb) = m.test();
    assert_eq!(&irb[2..4], &[0x20, 0x01]); // halt function, status pending
    assert_eq!(irb[8], Scsw::DSTAT_DEVICE_END);
    assert_eq!(m.run(IoOp::Csch, SCH0, 0), IoOutcome::Cc(0));
    assert_eq!(m.run(IoOp::Rsch, SCH0, 0), IoOutcome::Cc(1));
    let (_, irb) = m.test();
    assert_eq!(&irb[2..4], &[0x10, 0x01]); // clear function, status pending
    assert_eq!(m.irqs.take().len(), 1);
    assert_eq!(m.run(IoOp::Csch, 0x0001_0005, 0), IoOutcome::Cc(3));
}

#[test]
fn alerts_are_unsolicited_interrupts_when_enabled_and_idle() {
    let m = machine();
    let sch = m.css.slots.read().unwrap()[0]
        .as_ref()
        .unwrap()
        .subchannel
        .clone();
    sch.alert();
    assert!(m.irqs.take().is_empty(), "disabled: no status");
    m.enable(true);
    sch.alert();
    sch.alert();
    assert_eq!(m.irqs.take().len(), 1, "already pending: one interrupt");
    let (out, irb) = m.test();
    assert_eq!(out, IoOutcome::Cc(0));
    assert_eq!(&irb[..12], &[0, 0, 0, 0x11, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn chsc_stcrw_and_the_rest() {
    let m = machine();
    let page = 0x5000;
    let mut req = [0u8; 16];
    req[0..4].copy_from_slice(&[0, 0x10, 0, 0x02]);
    m.mem.write_slice(&req, GuestAddress(page)).unwrap();
    assert_eq!(m.run(IoOp::Chsc, 0, page), IoOutcome::Cc(0));
    let mut resp = [0u8; 16];
    m.mem
        .read_slice(&mut resp, GuestAddress(page + 0x10))
        .unwrap();
    assert_eq!(
        resp,
        [0, 16, 0, 1, 0, 0, 0, 0, 0x80, 0, 0x32, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        m.run(IoOp::Chsc, 0, page + 8),
        IoOutcome::Program(pgm::SPECIFICATION)
    );
    m.mem.write_slice(&[0, 0], GuestAddress(page)).unwrap();
    assert_eq!(m.run(IoOp::Chsc, 0, page), IoOutcome::Program(pgm::OPERAND));

    m.mem.write_slice(&[0xff; 4], GuestAddress(0x100)).unwrap();
    assert_eq!(m.run(IoOp::Stcrw, 0, 0x100), IoOutcome::Cc(1));
    assert_eq!(m.mem.read_obj::<u32>(GuestAddress(0x100)).unwrap(), 0);
    assert_eq!(m.run(IoOp::Tpi, 0, 0), IoOutcome::Cc(0));
    assert_eq!(m.run(IoOp::Sal, 0, 0), IoOutcome::Unchanged);
    assert_eq!(
        m.run(IoOp::Sal, 0x8000_0000, 0),
        IoOutcome::Program(pgm::OPERAND)
    );
    assert_eq!(m.run(IoOp::Stcps, 0, 0), IoOutcome::Program(pgm::OPERATION));
}

#[test]
fn notifications_reach_the_device_or_fail() {
    let m = machine();
    // The tape takes no notifications; absent subchannels neither.
    assert_eq!(m.css.notify(SCH0, 0), -22);
    assert_eq!(m.css.notify(0x0001_0003, 0), -22);
    assert_eq!(m.css.notify(0, 0), -22);
    assert_eq!(m.css.diag_notifies(), 3, "each one counted");
}
