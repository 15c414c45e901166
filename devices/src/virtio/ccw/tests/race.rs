// SPDX-License-Identifier: Apache-2.0
//! Several vCPUs racing one virtio-ccw device through the channel subsystem: threads that
//! issue every I/O instruction on the subchannel (channel programs with any command, count
//! and address; TSCH, CSCH, HSCH, XSCH, MSCH; notifies) while another thread scribbles over
//! ORBs, CCWs, queues and indicators. Nothing may panic or hang, and afterwards a driver
//! that clears the subchannel and starts over gets a working virtio-rng.

use std::time::{Duration, Instant};

use super::*;
use crate::virtio::test_util::{CountingSource, DriverRing, DESC_F_WRITE};
use crate::virtio::Rng;

const HAMMER: Duration = Duration::from_millis(1500);
const OPS: [IoOp; 9] = [
    IoOp::Ssch,
    IoOp::Ssch,
    IoOp::Ssch,
    IoOp::Tsch,
    IoOp::Tsch,
    IoOp::Stsch,
    IoOp::Csch,
    IoOp::Hsch,
    IoOp::Xsch,
];
const COMMANDS: [u8; 16] = [
    command::WRITE_FEAT,
    command::READ_FEAT,
    command::SET_VQ,
    command::WRITE_CONF,
    command::READ_CONF,
    command::WRITE_STATUS,
    command::READ_VQ_CONF,
    command::VDEV_RESET,
    command::SET_IND,
    command::SET_CONF_IND,
    command::READ_STATUS,
    command::SET_IND_ADAPTER,
    command::SET_VIRTIO_REV,
    0xe4, // SENSE ID
    0x04, // SENSE
    0xff,
];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn rng_guest() -> Guest {
    let mem = memory();
    let irqs = Arc::new(Recorder::default());
    let css = ChannelSubsystem::new(mem.clone(), irqs.clone());
    let m = mem.clone();
    css.add_device(move |sch| {
        let rng = Rng::with_source(Box::new(CountingSource(0x40)));
        Box::new(VirtioCcw::new(Box::new(rng), m, sch))
    });
    let g = Guest {
        mem,
        irqs,
        css,
        seen: Arc::new(Mutex::new(Seen::default())),
    };
    g.set_enabled(true);
    g
}

/// One vCPU: its own ORB and CCW area (as each CPU of a driver would have), filled with a
/// random command over data anywhere in the first 64 KiB, then any instruction.
fn vcpu(g: &Guest, seed: u64, lane: u64) -> u32 {
    let mut r = XorShift(seed);
    let (orb_at, ccw_at) = (0x8000 + lane * 0x100, 0x8800 + lane * 0x100);
    let start = Instant::now();
    let mut started = 0;
    while start.elapsed() < HAMMER {
        let cmd = COMMANDS[(r.next() % COMMANDS.len() as u64) as usize];
        let c = Ccw {
            cmd,
            flags: [0, 0, 0x40, 0x20, 0x80][(r.next() % 5) as usize],
            count: (r.next() % 64) as u16,
            cda: (r.next() % 0x1_0000) as u32,
        };
        let _ = g.mem.write_slice(&c.to_format1(), GuestAddress(ccw_at));
        let mut orb = [0u8; 12];
        orb[0..4].copy_from_slice(&(r.next() as u32).to_be_bytes());
        orb[5] = if r.next() % 4 == 0 {
            r.next() as u8
        } else {
            0x80
        };
        orb[8..12].copy_from_slice(&(ccw_at as u32).to_be_bytes());
        let _ = g.mem.write_slice(&orb, GuestAddress(orb_at));
        let op = OPS[(r.next() % OPS.len() as u64) as usize];
        let addr = match r.next() % 8 {
            0 => r.next() % (2 << 20), // past the end of memory, often
            _ if op == IoOp::Ssch => orb_at,
            _ => 0x9000 + lane * 0x100,
        };
        let gr1 = if r.next() % 16 == 0 { r.next() } else { SCH0 };
        if g.css.execute(op, gr1, addr, &mut Flat(&g.mem)) == IoOutcome::Cc(0) && op == IoOp::Ssch {
            started += 1;
        }
        if r.next() % 4 == 0 {
            let _ = g.css.notify(SCH0, r.next() % 3);
        }
        if r.next() % 64 == 0 {
            let _ = g.irqs.take();
        }
    }
    started
}

fn scribble(g: &Guest, seed: u64) {
    let mut r = XorShift(seed);
    let start = Instant::now();
    while start.elapsed() < HAMMER {
        let at = r.next() % 0x2_0000;
        let v = r.next().to_le_bytes();
        let _ = g
            .mem
            .write_slice(&v[..(1 + r.next() % 8) as usize], GuestAddress(at));
    }
}

#[test]
fn racing_vcpus_and_garbage_channel_programs_leave_virtio_ccw_rng_working() {
    let g = rng_guest();
    let started: u32 = std::thread::scope(|s| {
        let vcpus: Vec<_> = [
            0x1234_5678_9abc_def1u64,
            0x0fed_cba9_8765_4321,
            0x5555_aaaa_3333_cccc,
        ]
        .into_iter()
        .enumerate()
        .map(|(lane, seed)| {
            let g = &g;
            s.spawn(move || vcpu(g, seed, lane as u64))
        })
        .collect();
        s.spawn(|| scribble(&g, 0x7777_1111_2222_3333));
        vcpus.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(started > 10, "only {started} channel programs started");

    // A driver starting over: clear the subchannel, collect its status, disable it (which
    // forgets the revision the racers negotiated) and enable it again.
    assert_eq!(g.op(IoOp::Csch, 0), IoOutcome::Cc(0));
    let _ = g.op(IoOp::Tsch, IRB_AT);
    let _ = g.irqs.take();
    g.set_enabled(false);
    g.set_enabled(true);
    g.ok(command::SET_VIRTIO_REV, &[0, 2, 0, 0]);
    g.ok(command::VDEV_RESET, &[]);
    g.ok(
        command::WRITE_STATUS,
        &[status::ACKNOWLEDGE | status::DRIVER],
    );
    g.ok(command::WRITE_FEAT, &[0, 0, 0, 0, 0]);
    g.ok(command::WRITE_FEAT, &[1, 0, 0, 0, 1]);
    g.ok(command::WRITE_STATUS, &[0x0b]);
    g.mem
        .write_slice(&[0u8; 0x2000], GuestAddress(0x1_0000))
        .unwrap();
    let ring = DriverRing::new(&g.mem, 0x1_0000, 8);
    g.set_vq(0, 8, 0x1_0000);
    g.ok(command::SET_IND, &IND_AT.to_be_bytes());
    g.ok(command::SET_CONF_IND, &IND2_AT.to_be_bytes());
    g.ok(command::WRITE_STATUS, &[0x0f]);
    assert_eq!(g.ok(command::READ_STATUS, &[0]), [0x0f]);

    ring.set_desc(&g.mem, 0, 0x3_0000, 16, DESC_F_WRITE, 0);
    ring.offer(&g.mem, 0);
    assert_eq!(g.css.notify(SCH0, 0), 0);
    ring.wait_used(&g.mem, 1);
    assert_eq!(ring.used_elem(&g.mem, 0), (0, 16));
    let mut got = [0u8; 16];
    g.mem.read_slice(&mut got, GuestAddress(0x3_0000)).unwrap();
    assert!(
        got.iter().all(|&b| b >= 0x40),
        "bytes from the source: {got:?}"
    );
}
