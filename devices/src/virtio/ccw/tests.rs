// SPDX-License-Identifier: Apache-2.0
//! virtio-ccw driven the way Linux's virtio_ccw driver drives it, through the channel
//! subsystem: channel programs in guest memory, interrupts, indicators.

use std::sync::{Arc, Mutex};

use crate::virtio::{status, ActivateError, GuestMemory as DevMemory, Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::css::tests::{memory, Flat, Recorder};
use crate::css::{Ccw, ChannelSubsystem, IoInterrupt, IoOp, IoOutcome, Irb, Pmcw, Schib};

mod race;

const VERSION_1: u64 = 1 << 32;

#[derive(Default)]
struct Seen {
    driver_features: u64,
    config_written: Vec<u8>,
    activated: Option<Vec<(u64, u64, u64, u16)>>,
    interrupt: Option<Arc<dyn VirtioInterrupt>>,
    notified: Vec<u16>,
    resets: u32,
}

/// A device of type 4 with one queue of up to 8 entries and a 4-byte configuration space
/// "cfg!"; a notification signals the queue back.
struct Fake(Arc<Mutex<Seen>>);

impl VirtioDevice for Fake {
    fn device_type(&self) -> u32 {
        4
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[8]
    }
    fn device_features(&self) -> u64 {
        VERSION_1 | 0x5
    }
    fn set_driver_features(&mut self, features: u64) {
        self.0.lock().unwrap().driver_features = features;
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = b"cfg!".get(offset as usize + i).copied().unwrap_or(0);
        }
    }
    fn write_config(&mut self, _offset: u64, data: &[u8]) {
        self.0.lock().unwrap().config_written = data.to_vec();
    }
    fn activate(
        &mut self,
        _mem: DevMemory,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError> {
        let mut s = self.0.lock().unwrap();
        s.activated = Some(
            queues
                .iter()
                .map(|q| (q.desc_table(), q.avail_ring(), q.used_ring(), q.size()))
                .collect(),
        );
        s.interrupt = Some(interrupt);
        Ok(())
    }
    fn queue_notify(&mut self, index: u16) {
        let int = {
            let mut s = self.0.lock().unwrap();
            s.notified.push(index);
            s.interrupt.clone()
        };
        if let Some(i) = int {
            i.signal_used_queue(index);
        }
    }
    fn reset(&mut self) {
        self.0.lock().unwrap().resets += 1;
    }
}

const SCH0: u64 = 0x0001_0000;
const ORB_AT: u64 = 0x1100;
const IRB_AT: u64 = 0x1200;
const CCW_AT: u64 = 0x2000;
const DATA_AT: u64 = 0x3000;
const IND_AT: u64 = 0x4000;
const IND2_AT: u64 = 0x4008;
const SUMMARY_AT: u64 = 0x5003;
const AREA_AT: u64 = 0x6000;

struct Guest {
    mem: GuestMemory,
    irqs: Arc<Recorder>,
    css: ChannelSubsystem,
    seen: Arc<Mutex<Seen>>,
}

impl Guest {
    fn new() -> Self {
        Self::build(None)
    }

    fn build(routes: Option<Box<dyn AdapterRoutes>>) -> Self {
        let mem = memory();
        let irqs = Arc::new(Recorder::default());
        let css = ChannelSubsystem::new(mem.clone(), irqs.clone());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let dev = Fake(seen.clone());
        let m = mem.clone();
        css.add_device(move |sch| {
            let ccw = VirtioCcw::new(Box::new(dev), m, sch);
            Box::new(match routes {
                Some(r) => ccw.with_adapter_routes(r),
                None => ccw,
            })
        });
        let g = Self {
            mem,
            irqs,
            css,
            seen,
        };
        g.set_enabled(true);
        g
    }

    fn op(&self, op: IoOp, addr: u64) -> IoOutcome {
        self.css.execute(op, SCH0, addr, &mut Flat(&self.mem))
    }

    fn set_enabled(&self, on: bool) {
        assert_eq!(self.op(IoOp::Stsch, 0x1000), IoOutcome::Cc(0));
        let mut b = [0u8; Schib::LEN];
        self.mem.read_slice(&mut b, GuestAddress(0x1000)).unwrap();
        let mut s = Schib::from_bytes(&b);
        s.pmcw.flags = (s.pmcw.flags & !Pmcw::FLAG_ENABLED) | if on { 0x1880 } else { 0x1800 };
        s.pmcw.chars = Pmcw::CHARS_CSENSE;
        self.mem
            .write_slice(&s.to_bytes(), GuestAddress(0x1000))
            .unwrap();
        assert_eq!(self.op(IoOp::Msch, 0x1000), IoOutcome::Cc(0));
    }

    /// Run one CCW `cmd` over `data` (written to guest memory first); returns the IRB and
    /// the data area afterwards.
    fn ccw(&self, cmd: u8, flags: u8, data: &[u8]) -> (Irb, Vec<u8>) {
        let c = Ccw {
            cmd,
            flags,
            count: data.len() as u16,
            cda: DATA_AT as u32,
        };
        self.mem
            .write_slice(&c.to_format1(), GuestAddress(CCW_AT))
            .unwrap();
        self.mem.write_slice(data, GuestAddress(DATA_AT)).unwrap();
        let mut orb = [0u8; 12];
        orb[0..4].copy_from_slice(&0x1234u32.to_be_bytes());
        orb[5] = 0x80;
        orb[8..12].copy_from_slice(&(CCW_AT as u32).to_be_bytes());
        self.mem.write_slice(&orb, GuestAddress(ORB_AT)).unwrap();
        assert_eq!(self.op(IoOp::Ssch, ORB_AT), IoOutcome::Cc(0));
        // The subchannel's own interrupt; adapter interrupts the command caused (a device
        // started by DRIVER_OK signals at once) stay recorded for the test to look at.
        let (adapter, io): (Vec<_>, Vec<_>) =
            self.irqs.take().into_iter().partition(|i| i.is_adapter());
        assert_eq!(io.len(), 1);
        self.irqs.0.lock().unwrap().extend(adapter);
        assert_eq!(self.op(IoOp::Tsch, IRB_AT), IoOutcome::Cc(0));
        let mut b = [0u8; Irb::LEN];
        self.mem.read_slice(&mut b, GuestAddress(IRB_AT)).unwrap();
        let mut out = vec![0u8; data.len()];
        self.mem
            .read_slice(&mut out, GuestAddress(DATA_AT))
            .unwrap();
        let irb = Irb {
            scsw: crate::css::Scsw::from_bytes(b[..12].try_into().unwrap()),
            esw: b[12..32].try_into().unwrap(),
            ecw: b[32..64].try_into().unwrap(),
            emw: b[64..96].try_into().unwrap(),
        };
        (irb, out)
    }

    /// The command completed normally.
    fn ok(&self, cmd: u8, data: &[u8]) -> Vec<u8> {
        let (irb, out) = self.ccw(cmd, 0, data);
        assert_eq!(
            (irb.scsw.dstat, irb.scsw.cstat),
            (0x0c, 0),
            "command {cmd:#04x}"
        );
        out
    }

    /// The command was rejected (unit check, command reject in the sense data).
    fn rejected(&self, cmd: u8, data: &[u8]) {
        let (irb, _) = self.ccw(cmd, 0, data);
        assert_eq!(irb.scsw.dstat, 0x0e, "command {cmd:#04x}");
        assert_eq!(irb.ecw[0], 0x80);
    }

    fn program_check(&self, cmd: u8, data: &[u8]) {
        let (irb, _) = self.ccw(cmd, 0, data);
        assert_eq!(irb.scsw.cstat, 0x20, "command {cmd:#04x}");
    }

    fn set_vq(&self, index: u16, num: u16, desc: u64) {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&desc.to_be_bytes());
        b[12..14].copy_from_slice(&index.to_be_bytes());
        b[14..16].copy_from_slice(&num.to_be_bytes());
        b[16..24].copy_from_slice(&(desc + 0x80).to_be_bytes());
        b[24..32].copy_from_slice(&(desc + 0x1000).to_be_bytes());
        self.ok(command::SET_VQ, &b);
    }

    /// What Linux does up to DRIVER_OK, with revision 2 and classic indicators (a driver
    /// that does not ask for adapter interrupts).
    fn bring_up(&self) {
        self.bring_up_until_indicators();
        self.ok(command::SET_IND, &IND_AT.to_be_bytes());
        self.ok(command::SET_CONF_IND, &IND2_AT.to_be_bytes());
        self.ok(command::WRITE_STATUS, &[0x0f]);
    }

    /// What Linux does up to DRIVER_OK when adapter interrupts are offered: its device's
    /// queues start at bit `first_bit` of the area, ISC 3 (`VIRTIO_AIRQ_ISC`).
    fn bring_up_adapter(&self, first_bit: u64) {
        self.bring_up_until_indicators();
        self.ok(
            command::SET_IND_ADAPTER,
            &thinint(SUMMARY_AT, AREA_AT, first_bit, 3),
        );
        self.ok(command::SET_CONF_IND, &IND2_AT.to_be_bytes());
        self.ok(command::WRITE_STATUS, &[0x0f]);
    }

    fn bring_up_until_indicators(&self) {
        self.ok(command::SET_VIRTIO_REV, &[0, 2, 0, 0]);
        self.ok(command::VDEV_RESET, &[]);
        self.ok(
            command::WRITE_STATUS,
            &[status::ACKNOWLEDGE | status::DRIVER],
        );
        self.ok(command::WRITE_FEAT, &[1, 0, 0, 0, 1]);
        self.ok(command::WRITE_FEAT, &[4, 0, 0, 0, 0]);
        self.ok(command::WRITE_STATUS, &[0x0b]);
        assert_eq!(self.ok(command::READ_VQ_CONF, &[0, 0, 0, 0]), [0, 0, 0, 8]);
        self.set_vq(0, 8, 0x10000);
    }

    fn byte(&self, addr: u64) -> u8 {
        self.mem.read_obj::<u8>(GuestAddress(addr)).unwrap()
    }
}

/// A SET_IND_ADAPTER block as Linux builds it (`struct virtio_thinint_area`, big-endian).
fn thinint(summary: u64, area: u64, first_bit: u64, isc: u8) -> Vec<u8> {
    let mut b = Vec::with_capacity(THININT_AREA_LEN);
    b.extend_from_slice(&summary.to_be_bytes());
    b.extend_from_slice(&area.to_be_bytes());
    b.extend_from_slice(&first_bit.to_be_bytes());
    b.push(isc);
    b
}

#[test]
fn sense_id_names_the_virtio_control_unit_and_device_type() {
    let g = Guest::new();
    let (irb, id) = g.ccw(0xe4, Ccw::FLAG_SLI, &[0; 8]);
    assert_eq!(irb.scsw.dstat, 0x0c);
    assert_eq!(id, [0xff, 0x38, 0x32, 0x04, 0, 0, 0, 0]);
}

#[test]
fn revisions_are_negotiated_once() {
    let g = Guest::new();
    g.rejected(command::SET_VIRTIO_REV, &[0, 3, 0, 0]);
    g.rejected(command::SET_VIRTIO_REV, &[0, 1, 0, 4, 1, 2, 3, 4]);
    g.ok(command::SET_VIRTIO_REV, &[0, 2, 0, 0]);
    g.rejected(command::SET_VIRTIO_REV, &[0, 1, 0, 0]);
    g.program_check(command::SET_VIRTIO_REV, &[0, 1]);
    // Disabling the subchannel forgets the revision (a driver coming online again).
    g.set_enabled(false);
    g.set_enabled(true);
    g.ok(command::SET_VIRTIO_REV, &[0, 1, 0, 0]);
    // READ_STATUS is revision 2.
    g.rejected(command::READ_STATUS, &[0]);
}

#[test]
fn features_are_little_endian_words_selected_by_index() {
    let g = Guest::new();
    // Revision 0: the upper word is not offered.
    assert_eq!(
        g.ok(command::READ_FEAT, &[0xff, 0xff, 0xff, 0xff, 1]),
        [0, 0, 0, 0, 1]
    );
    let g = Guest::new();
    g.ok(command::SET_VIRTIO_REV, &[0, 1, 0, 0]);
    assert_eq!(g.ok(command::READ_FEAT, &[0, 0, 0, 0, 0]), [5, 0, 0, 0, 0]);
    assert_eq!(g.ok(command::READ_FEAT, &[0, 0, 0, 0, 1]), [1, 0, 0, 0, 1]);
    assert_eq!(g.ok(command::READ_FEAT, &[9, 9, 9, 9, 7]), [0, 0, 0, 0, 7]);
    // Features only while negotiating (DRIVER set, FEATURES_OK not yet): else rejected.
    g.rejected(command::WRITE_FEAT, &[0, 0, 0, 0, 1]);
    g.ok(command::WRITE_STATUS, &[3]);
    // FEATURES_OK without VERSION_1 is refused; the status stays.
    g.rejected(command::WRITE_STATUS, &[0x0b]);
    // Accepted features are masked by the offered ones (not refused: the transport core's
    // rule for both transports); the device learns them at FEATURES_OK.
    g.ok(command::WRITE_FEAT, &[0xff, 0xff, 0xff, 0xff, 0]);
    g.ok(command::WRITE_FEAT, &[0xff, 0, 0, 0, 1]);
    assert_eq!(g.seen.lock().unwrap().driver_features, 0);
    // Wrong count without SLI: program check.
    g.program_check(command::READ_FEAT, &[0; 4]);
    g.program_check(command::WRITE_FEAT, &[0; 8]);
    g.ok(command::WRITE_STATUS, &[0x0b]);
    assert_eq!(g.seen.lock().unwrap().driver_features, VERSION_1 | 5);
    g.rejected(command::WRITE_FEAT, &[0, 0, 0, 0, 0]);
    g.rejected(command::READ_STATUS, &[0]); // revision 1: no READ_STATUS
}

#[test]
fn configuration_space_is_read_and_written_from_offset_zero() {
    let g = Guest::new();
    g.ok(command::SET_VIRTIO_REV, &[0, 1, 0, 0]);
    assert_eq!(g.ok(command::READ_CONF, &[0; 6]), b"cfg!\0\0");
    g.ok(command::WRITE_CONF, b"xy");
    assert_eq!(g.seen.lock().unwrap().config_written, b"xy");
}

#[test]
fn linux_bring_up_then_notifications_through_indicators() {
    let g = Guest::new();
    g.bring_up();
    assert_eq!(g.ok(command::READ_STATUS, &[0]), [0x0f]);
    assert_eq!(
        g.seen.lock().unwrap().activated,
        Some(vec![(0x10000, 0x10080, 0x11000, 8)])
    );
    assert_eq!(g.seen.lock().unwrap().driver_features, VERSION_1 | 4);

    // DIAG 0x500: queue 0 notified; the device signals; bit 0 of the big-endian
    // indicator doubleword is set and an unsolicited interrupt is pending.
    g.mem
        .write_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0], GuestAddress(IND_AT))
        .unwrap();
    // (Activation served queue 0 once already, in case the driver kicked before DRIVER_OK;
    // its signal came while WRITE_STATUS ran, whose own interrupt covers it.)
    g.mem
        .write_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0], GuestAddress(IND_AT))
        .unwrap();
    assert_eq!(g.css.notify(SCH0, 0), 0);
    assert_eq!(g.seen.lock().unwrap().notified, vec![0, 0]);
    let mut ind = [0u8; 8];
    g.mem.read_slice(&mut ind, GuestAddress(IND_AT)).unwrap();
    assert_eq!(ind, [0x80, 0, 0, 0, 0, 0, 0, 1]);
    let irqs = g.irqs.take();
    assert_eq!(irqs.len(), 1);
    assert_eq!((irqs[0].schid(), irqs[0].isc()), (0x0001_0000, 3));
    assert_eq!(g.op(IoOp::Tsch, IRB_AT), IoOutcome::Cc(0));
    let mut scsw = [0u8; 4];
    g.mem.read_slice(&mut scsw, GuestAddress(IRB_AT)).unwrap();
    assert_eq!(scsw, [0, 0x80, 0, 0x11]); // alert + status pending only: unsolicited

    // No such queue; bits above 31 in the data: refused.
    assert_eq!(g.css.notify(SCH0, 1), -22);
    assert_eq!(g.css.notify(SCH0, 1 << 16), -22);

    // A configuration change sets bit 0 of the second indicator.
    let int = g.seen.lock().unwrap().interrupt.clone().unwrap();
    int.signal_config_changed();
    assert_eq!(g.mem.read_obj::<u8>(GuestAddress(IND2_AT + 7)).unwrap(), 1);
    assert_eq!(g.irqs.take().len(), 1);

    // Reset: the device forgets, notifications stop reaching it.
    g.op(IoOp::Tsch, IRB_AT);
    g.ok(command::WRITE_STATUS, &[0]);
    assert!(g.seen.lock().unwrap().resets >= 2);
    assert_eq!(g.css.notify(SCH0, 0), 0);
    assert_eq!(g.seen.lock().unwrap().notified, vec![0, 0]);
    int.signal_used_queue(0);
    assert!(g.irqs.take().is_empty(), "no indicators after reset");
}

#[test]
fn bad_queue_and_indicator_setups_are_refused() {
    let g = Guest::new();
    g.ok(command::SET_VIRTIO_REV, &[0, 1, 0, 0]);
    let mut b = [0u8; 32];
    b[0..8].copy_from_slice(&0x10000u64.to_be_bytes());
    b[14..16].copy_from_slice(&16u16.to_be_bytes()); // larger than 8
    g.program_check(command::SET_VQ, &b);
    b[12..14].copy_from_slice(&1u16.to_be_bytes()); // no queue 1
    b[14..16].copy_from_slice(&8u16.to_be_bytes());
    g.program_check(command::SET_VQ, &b);
    g.program_check(command::SET_VQ, &[0; 16]); // legacy layout size
    assert_eq!(
        g.ok(command::READ_VQ_CONF, &[0, 1, 0xff, 0xff]),
        [0, 1, 0, 0]
    );
    g.program_check(command::SET_IND, &(1u64 << 40).to_be_bytes());
    g.program_check(command::SET_IND, &(IND_AT + 4).to_be_bytes());
    g.rejected(0x99, &[0]);

    // DRIVER_OK with queue 0 not configured: the device is not started, needs reset.
    g.ok(command::WRITE_STATUS, &[3]);
    g.ok(command::WRITE_FEAT, &[0, 0, 0, 0, 0]);
    g.ok(command::WRITE_FEAT, &[1, 0, 0, 0, 1]);
    g.ok(command::WRITE_STATUS, &[0x0b]);
    g.ok(command::WRITE_STATUS, &[0x0f]);
    assert!(g.seen.lock().unwrap().activated.is_none());
    g.rejected(command::READ_STATUS, &[0]); // revision 1
    let g2 = Guest::new();
    g2.ok(command::SET_VIRTIO_REV, &[0, 2, 0, 0]);
    g2.ok(command::WRITE_STATUS, &[3]);
    g2.ok(command::WRITE_FEAT, &[1, 0, 0, 0, 1]);
    g2.ok(command::WRITE_STATUS, &[0x0f]);
    // DEVICE_NEEDS_RESET instead of DRIVER_OK (the core's rule, as virtio-mmio had it).
    assert_eq!(g2.ok(command::READ_STATUS, &[0]), [0x4b]);
}

#[test]
fn adapter_indicator_bits_count_from_the_most_significant_bit() {
    let b: [u8; THININT_AREA_LEN] = thinint(0x1234_5678_9abc_def0, 0x6000, 13, 3)
        .try_into()
        .unwrap();
    let a = AdapterIndicators::parse(&b);
    assert_eq!(
        a,
        AdapterIndicators {
            summary: 0x1234_5678_9abc_def0,
            area: 0x6000,
            first_bit: 13,
            isc: 3
        }
    );
    // Bit 13 + i: byte 1, bits 5, 6, 7 (masks 0x04, 0x02, 0x01), then byte 2's first.
    assert_eq!(a.queue_bit(0), Some((0x6001, 0x04)));
    assert_eq!(a.queue_bit(1), Some((0x6001, 0x02)));
    assert_eq!(a.queue_bit(2), Some((0x6001, 0x01)));
    assert_eq!(a.queue_bit(3), Some((0x6002, 0x80)));
    let a0 = AdapterIndicators { first_bit: 0, ..a };
    assert_eq!(a0.queue_bit(0), Some((0x6000, 0x80)));
    assert_eq!(a0.queue_bit(63), Some((0x6007, 0x01)));
    assert_eq!(a0.queue_bit(64), Some((0x6008, 0x80)));
    // Overflowing bit numbers and addresses: no bit, no panic.
    let huge = AdapterIndicators {
        first_bit: u64::MAX,
        ..a
    };
    assert_eq!(huge.queue_bit(1), None);
    let top = AdapterIndicators {
        area: u64::MAX,
        first_bit: 8,
        ..a
    };
    assert_eq!(top.queue_bit(0), None);
}

#[test]
fn linux_bring_up_with_adapter_interrupts() {
    let g = Guest::new();
    g.bring_up_adapter(13);
    assert_eq!(g.ok(command::READ_STATUS, &[0]), [0x0f]);
    // Activation served queue 0 once (buffers made available before DRIVER_OK): bit 13
    // of the area (byte 1, mask 0x04), the summary byte, one adapter interruption for
    // ISC 3 with no subchannel.
    assert_eq!(g.byte(AREA_AT + 1), 0x04);
    assert_eq!(g.byte(SUMMARY_AT), SUMMARY_SET);
    let irqs = g.irqs.take();
    assert_eq!(irqs.len(), 1);
    assert!(irqs[0].is_adapter());
    assert_eq!((irqs[0].schid(), irqs[0].parm), (0, 0));
    assert_eq!((irqs[0].word, irqs[0].isc()), (0x9800_0000, 3));
    // Neighbouring bits and bytes are untouched.
    for at in [AREA_AT, AREA_AT + 2, SUMMARY_AT - 1, SUMMARY_AT + 1] {
        assert_eq!(g.byte(at), 0, "{at:#x}");
    }

    // The summary is still set (the driver has not scanned): the bit is set, no new
    // interruption.
    g.mem.write_obj(0u8, GuestAddress(AREA_AT + 1)).unwrap();
    assert_eq!(g.css.notify(SCH0, 0), 0);
    assert_eq!(g.byte(AREA_AT + 1), 0x04);
    assert!(g.irqs.take().is_empty());

    // The driver's handler cleared the summary and the bit: the next signal interrupts.
    g.mem.write_obj(0u8, GuestAddress(SUMMARY_AT)).unwrap();
    g.mem.write_obj(0u8, GuestAddress(AREA_AT + 1)).unwrap();
    assert_eq!(g.css.notify(SCH0, 0), 0);
    assert_eq!(g.byte(AREA_AT + 1), 0x04);
    assert_eq!(g.byte(SUMMARY_AT), SUMMARY_SET);
    assert_eq!(g.irqs.take(), vec![IoInterrupt::adapter(3)]);
    // The subchannel itself stays quiet: no status pending.
    assert_eq!(g.op(IoOp::Tsch, IRB_AT), IoOutcome::Cc(1));

    // Configuration changes still go through the classic second indicator.
    let int = g.seen.lock().unwrap().interrupt.clone().unwrap();
    int.signal_config_changed();
    assert_eq!(g.byte(IND2_AT + 7), 1);
    let irqs = g.irqs.take();
    assert_eq!(irqs.len(), 1);
    assert!(!irqs[0].is_adapter());
    assert_eq!(irqs[0].schid(), 0x0001_0000);
    g.op(IoOp::Tsch, IRB_AT);

    // Reset forgets the adapter indicators; a driver may then choose classic ones.
    g.ok(command::WRITE_STATUS, &[0]);
    g.mem.write_obj(0u8, GuestAddress(SUMMARY_AT)).unwrap();
    int.signal_used_queue(0);
    assert!(g.irqs.take().is_empty(), "no indicators after reset");
    assert_eq!(g.byte(SUMMARY_AT), 0);
    g.ok(command::SET_IND, &IND_AT.to_be_bytes());
}

#[test]
fn bad_adapter_indicator_setups_are_refused() {
    let g = Guest::new();
    g.ok(command::SET_VIRTIO_REV, &[0, 2, 0, 0]);
    let end = 1u64 << 20;
    // Too short without SLI; ISC above 7; summary, area or the device's bits outside
    // guest memory; a first bit whose byte address overflows.
    g.program_check(command::SET_IND_ADAPTER, &[0; THININT_AREA_LEN - 1]);
    for bad in [
        thinint(SUMMARY_AT, AREA_AT, 0, 8),
        thinint(end, AREA_AT, 0, 3),
        thinint(SUMMARY_AT, end, 0, 3),
        thinint(SUMMARY_AT, end - 1, 8, 3),
        thinint(SUMMARY_AT, AREA_AT, u64::MAX, 3),
        thinint(SUMMARY_AT, u64::MAX, 64, 3),
    ] {
        g.program_check(command::SET_IND_ADAPTER, &bad);
    }
    // The last byte of memory is fine; with SLI a longer area is too.
    g.ok(command::SET_IND_ADAPTER, &thinint(end - 1, end - 1, 7, 7));
    let mut longer = thinint(SUMMARY_AT, AREA_AT, 0, 3);
    longer.extend_from_slice(&[0; 7]);
    let (irb, _) = g.ccw(command::SET_IND_ADAPTER, Ccw::FLAG_SLI, &longer);
    assert_eq!((irb.scsw.dstat, irb.scsw.cstat), (0x0c, 0));
    // Adapter indicators set: classic ones are refused (as QEMU does), and the other way
    // round after a reset.
    g.rejected(command::SET_IND, &IND_AT.to_be_bytes());
    g.ok(command::VDEV_RESET, &[]);
    g.ok(command::SET_IND, &IND_AT.to_be_bytes());
    g.rejected(
        command::SET_IND_ADAPTER,
        &thinint(SUMMARY_AT, AREA_AT, 0, 3),
    );
}

/// Adapter routes as a backend with KVM's would give them: one `EventFd` per queue.
#[derive(Default)]
struct FakeRoutes {
    set: Mutex<Vec<(AdapterIndicators, u16)>>,
    clears: Mutex<u32>,
    events: Mutex<Vec<Arc<EventFd>>>,
    refuse: bool,
}

impl AdapterRoutes for Arc<FakeRoutes> {
    fn set(&self, a: &AdapterIndicators, queues: u16) -> Result<Vec<Arc<EventFd>>, String> {
        if self.refuse {
            return Err("no FLIC".into());
        }
        self.set.lock().unwrap().push((*a, queues));
        let events: Vec<_> = (0..queues)
            .map(|_| Arc::new(EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap()))
            .collect();
        *self.events.lock().unwrap() = events.clone();
        Ok(events)
    }
    fn clear(&self) {
        *self.clears.lock().unwrap() += 1;
    }
}

#[test]
fn routed_adapter_indicators_are_left_to_the_backend() {
    let routes = Arc::new(FakeRoutes::default());
    let g = Guest::build(Some(Box::new(routes.clone())));
    g.bring_up_adapter(13);
    let a = AdapterIndicators::parse(&thinint(SUMMARY_AT, AREA_AT, 13, 3).try_into().unwrap());
    assert_eq!(*routes.set.lock().unwrap(), [(a, 1)]);
    // Activation's notify signalled queue 0 through its EventFd: no bits, no injection.
    let event = routes.events.lock().unwrap()[0].clone();
    assert_eq!(event.read().unwrap(), 1);
    assert_eq!(g.byte(AREA_AT + 1), 0);
    assert_eq!(g.byte(SUMMARY_AT), 0);
    assert!(g.irqs.take().is_empty());
    assert_eq!(g.css.notify(SCH0, 0), 0);
    assert_eq!(event.read().unwrap(), 1);
    // A reset drops the routes.
    g.ok(command::WRITE_STATUS, &[0]);
    assert_eq!(*routes.clears.lock().unwrap(), 1);

    // A backend that cannot route: the device sets the bits and injects, as without one.
    let routes = Arc::new(FakeRoutes {
        refuse: true,
        ..Default::default()
    });
    let g = Guest::build(Some(Box::new(routes.clone())));
    g.bring_up_adapter(13);
    assert_eq!(g.byte(AREA_AT + 1), 0x04);
    assert_eq!(g.irqs.take(), vec![IoInterrupt::adapter(3)]);
}
