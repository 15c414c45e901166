// SPDX-License-Identifier: Apache-2.0
//! Hotplug as the guest sees it: a channel-report machine check, `STCRW` until cc 1, and
//! `STSCH` telling whether the subchannel came or went.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};

use super::*;

const CRW_AT: u64 = 0x100;

impl Machine {
    fn mchecks(&self) -> u32 {
        self.irqs.1.load(Ordering::Relaxed)
    }

    /// `STCRW`: the condition code and the word stored.
    fn stcrw(&self) -> (IoOutcome, u32) {
        self.mem
            .write_slice(&[0xaa; 4], GuestAddress(CRW_AT))
            .unwrap();
        let out = self.run(IoOp::Stcrw, 0, CRW_AT);
        let mut b = [0u8; 4];
        self.mem.read_slice(&mut b, GuestAddress(CRW_AT)).unwrap();
        (out, u32::from_be_bytes(b))
    }

    fn stsch_cc(&self, number: u16) -> IoOutcome {
        self.run(IoOp::Stsch, 0x0001_0000 | u64::from(number), SCHIB_AT)
    }
}

#[test]
fn a_plugged_subchannel_is_announced_once_and_fetched_with_stcrw() {
    let m = machine();
    assert_eq!(m.stsch_cc(1), IoOutcome::Cc(3), "not there yet");
    assert_eq!(m.stcrw(), (IoOutcome::Cc(1), 0), "nothing reported at boot");
    let id = m.css.plug(|_| Box::new(Tape::default())).unwrap();
    assert_eq!(id.number, 1);
    assert_eq!(m.mchecks(), 1);
    let id2 = m.css.plug(|_| Box::new(Tape::default())).unwrap();
    assert_eq!(id2.number, 2);
    assert_eq!(
        m.mchecks(),
        1,
        "one machine check until the guest drains the reports"
    );
    assert_eq!(m.stcrw(), (IoOutcome::Cc(0), 0x0304_0001));
    assert_eq!(m.stcrw(), (IoOutcome::Cc(0), 0x0304_0002));
    assert_eq!(m.stcrw(), (IoOutcome::Cc(1), 0));
    // The new subchannel answers like a boot-time one.
    assert_eq!(m.stsch_cc(1), IoOutcome::Cc(0));
    let mut b = [0u8; Schib::LEN];
    m.mem.read_slice(&mut b, GuestAddress(SCHIB_AT)).unwrap();
    let schib = Schib::from_bytes(&b);
    assert_eq!(schib.pmcw.devno, 1);
    assert_ne!(schib.pmcw.flags & Pmcw::FLAG_DEVNO_VALID, 0);
    assert_eq!(m.css.len(), 3);
    // Re-armed by cc 1: the next report raises a new machine check.
    m.css.plug(|_| Box::new(Tape::default())).unwrap();
    assert_eq!(m.mchecks(), 2);
}

#[test]
fn an_unplugged_subchannel_is_gone_and_its_number_reused() {
    let m = machine();
    let written = Arc::new(Mutex::new(Vec::new()));
    let tape = Tape {
        written: written.clone(),
        ..Tape::default()
    };
    let id = m.css.plug(|_| Box::new(tape)).unwrap();
    m.stcrw();
    m.stcrw();
    assert!(m.css.unplug(7).is_none(), "nothing there");
    assert_eq!(m.mchecks(), 1, "and nothing reported");
    let device = m.css.unplug(id.number).expect("the device comes back");
    assert_eq!(device.sense_id()[1], 0x34);
    assert_eq!(m.mchecks(), 2);
    assert_eq!(m.stcrw(), (IoOutcome::Cc(0), 0x0304_0001));
    assert_eq!(m.stcrw(), (IoOutcome::Cc(1), 0));
    let gr1 = 0x0001_0000 | u64::from(id.number);
    assert_eq!(m.stsch_cc(id.number), IoOutcome::Cc(3));
    m.mem.write_slice(&[0; 12], GuestAddress(ORB_AT)).unwrap();
    assert_eq!(m.run(IoOp::Tsch, gr1, IRB_AT), IoOutcome::Cc(3));
    assert_eq!(m.run(IoOp::Csch, gr1, 0), IoOutcome::Cc(3));
    assert_eq!(m.css.notify(gr1, 0), -22);
    assert_eq!(m.css.len(), 1, "subchannel 0 stays");
    assert_eq!(m.stsch_cc(0), IoOutcome::Cc(0));
    // The free number is taken by the next device.
    assert_eq!(m.css.plug(|_| Box::new(Tape::default())).unwrap().number, 1);
    assert_eq!(m.stsch_cc(1), IoOutcome::Cc(0));
}

#[test]
fn a_faulting_stcrw_keeps_the_report() {
    let m = machine();
    m.css.plug(|_| Box::new(Tape::default())).unwrap();
    let beyond = 1 << 20;
    assert_eq!(m.run(IoOp::Stcrw, 0, beyond), IoOutcome::Faulted);
    assert_eq!(
        m.run(IoOp::Stcrw, 0, CRW_AT + 2),
        IoOutcome::Program(pgm::SPECIFICATION)
    );
    assert_eq!(m.stcrw(), (IoOutcome::Cc(0), 0x0304_0001));
}

/// A device whose command waits until the test lets it go.
struct Held {
    entered: mpsc::Sender<()>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl CcwDevice for Held {
    fn sense_id(&self) -> [u8; 8] {
        [0xff, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0]
    }
    fn execute(&mut self, _cmd: u8, _data: &mut DataStream<'_>) -> Result<(), CcwError> {
        let _ = self.entered.send(());
        let _ = self.release.lock().unwrap().recv();
        Ok(())
    }
}

#[test]
fn unplug_during_a_channel_program_waits_for_it_and_returns_the_device() {
    let m = Arc::new(machine());
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let held = Held {
        entered: entered_tx,
        release: Mutex::new(release_rx),
    };
    let id = m.css.plug(|_| Box::new(held)).unwrap();
    let gr1 = 0x0001_0000 | u64::from(id.number);
    // Enable subchannel 1 and start a one-CCW program on it from another thread.
    assert_eq!(m.run(IoOp::Stsch, gr1, SCHIB_AT), IoOutcome::Cc(0));
    let mut b = [0u8; Schib::LEN];
    m.mem.read_slice(&mut b, GuestAddress(SCHIB_AT)).unwrap();
    let mut s = Schib::from_bytes(&b);
    s.pmcw.flags |= Pmcw::FLAG_ENABLED;
    m.mem
        .write_slice(&s.to_bytes(), GuestAddress(SCHIB_AT))
        .unwrap();
    assert_eq!(m.run(IoOp::Msch, gr1, SCHIB_AT), IoOutcome::Cc(0));
    m.ccws(&[ccw(0x01, 0x20, 1, DATA_AT)]);
    let mut orb = [0u8; 12];
    orb[4..6].copy_from_slice(&Orb::CTRL0_FORMAT1.to_be_bytes());
    orb[6] = 0x80;
    orb[8..12].copy_from_slice(&(CCW_AT as u32).to_be_bytes());
    m.mem.write_slice(&orb, GuestAddress(ORB_AT)).unwrap();
    let vcpu = {
        let m = m.clone();
        std::thread::spawn(move || m.run(IoOp::Ssch, gr1, ORB_AT))
    };
    entered.recv().unwrap();
    let unplugger = {
        let m = m.clone();
        std::thread::spawn(move || m.css.unplug(id.number).map(|d| d.sense_id()))
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(!unplugger.is_finished(), "waits for the channel program");
    release.send(()).unwrap();
    assert_eq!(vcpu.join().unwrap(), IoOutcome::Cc(0));
    assert_eq!(unplugger.join().unwrap().unwrap()[1], 0x12);
    assert_eq!(m.stsch_cc(id.number), IoOutcome::Cc(3));
}
