// SPDX-License-Identifier: Apache-2.0
//! The s390x channel subsystem with one virtio-ccw device (rng, blk, net or vsock, picked
//! by the input): the I/O instructions (STSCH, MSCH, SSCH, TSCH, CSCH, ..., CHSC) on
//! operands anywhere, the channel-program interpreter on CCW chains the input lays out,
//! the virtio-ccw commands on the device's queues in guest memory, and DIAG 0x500
//! notifies. `Program` builds an ORB and a format-1 CCW chain (each CCW with its own data
//! area) the way a driver does, so the fuzzer reaches the virtio commands quickly.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use devices::css::{ChannelSubsystem, IoOp, Pmcw, Schib};
use devices::virtio::ccw::command;
use devices::virtio::ccw::VirtioCcw;
use libfuzzer_sys::fuzz_target;
use polyvisor_fuzz::{
    driver_features, memory, Device, FlatOperands, Kind, MemWrite, NullSink, QueueSetup, MEM_SIZE,
};
use vm_memory::{Bytes, GuestAddress};

const OPS: [IoOp; 15] = [
    IoOp::Csch,
    IoOp::Hsch,
    IoOp::Msch,
    IoOp::Ssch,
    IoOp::Stsch,
    IoOp::Tsch,
    IoOp::Tpi,
    IoOp::Sal,
    IoOp::Rsch,
    IoOp::Stcrw,
    IoOp::Stcps,
    IoOp::Rchp,
    IoOp::Schm,
    IoOp::Chsc,
    IoOp::Xsch,
];

/// Subchannel 0.0.0000 in GR1's form.
const SCH0: u64 = 0x0001_0000;
const SCHIB_AT: u64 = 0x1000;
const ORB_AT: u64 = 0x1100;
const IRB_AT: u64 = 0x1200;
const CCWS_AT: u64 = 0x2000;
const DATA_AT: u64 = 0x3000;
const CHSC_AT: u64 = 0x3_0000;

#[derive(Arbitrary, Debug)]
struct CcwSpec {
    cmd: u8,
    flags: u8,
    /// The CCW's count; `None`: the data's length.
    count: Option<u16>,
    data: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Any I/O instruction with any GR1 (or subchannel 0 when `gr1` is `None`) and any
    /// operand address.
    Io {
        op: u8,
        gr1: Option<u64>,
        addr: u32,
    },
    /// STSCH, the enable bit as given, MSCH: what a driver does before it starts I/O.
    Enable {
        on: bool,
        isc: u8,
    },
    /// A driver's whole virtio-ccw start, one channel program per command: enable the
    /// subchannel, SET_VIRTIO_REV 1, status, features, SET_VQ per queue, DRIVER_OK.
    Setup {
        features: u64,
        queues: Vec<QueueSetup>,
    },
    /// SSCH of an ORB (key/flags from the input) on a CCW chain, then TSCH.
    Program {
        orb_flags: u32,
        ccws: Vec<CcwSpec>,
    },
    /// CHSC on a request block the input writes at a page boundary.
    Chsc(Vec<u8>),
    Notify {
        queue: u16,
        schid: Option<u64>,
    },
    Memory(MemWrite),
    HostPacket(Vec<u8>),
    /// Hot-unplug subchannel 0 (its device dropped, a channel report queued).
    Unplug,
    /// Hotplug a fresh device of the input's kind on the first free subchannel.
    Plug,
}

#[derive(Arbitrary, Debug)]
struct Input {
    kind: Kind,
    memory: Vec<MemWrite>,
    ops: Vec<Op>,
}

fn program(css: &ChannelSubsystem, orb_flags: u32, ccws: &[CcwSpec]) {
    let mem = css.memory();
    let mut data_at = DATA_AT;
    for (i, c) in ccws.iter().take(32).enumerate() {
        let len = c.data.len().min(0x400);
        let _ = mem.write_slice(&c.data[..len], GuestAddress(data_at));
        let count = c.count.unwrap_or(len as u16);
        let mut b = [0u8; 8];
        b[0] = c.cmd;
        b[1] = c.flags;
        b[2..4].copy_from_slice(&count.to_be_bytes());
        b[4..8].copy_from_slice(&(data_at as u32).to_be_bytes());
        let _ = mem.write_slice(&b, GuestAddress(CCWS_AT + 8 * i as u64));
        data_at = (data_at + len as u64 + 7) & !7;
        if data_at + 0x400 > MEM_SIZE {
            data_at = DATA_AT;
        }
    }
    let mut orb = [0u8; 12];
    orb[0..4].copy_from_slice(&0x1234u32.to_be_bytes());
    // Format-1 CCWs (0x0080 in the second word) unless the input clears it.
    orb[4..8].copy_from_slice(&(orb_flags ^ 0x0080_ff00).to_be_bytes());
    orb[8..12].copy_from_slice(&(CCWS_AT as u32).to_be_bytes());
    let _ = mem.write_slice(&orb, GuestAddress(ORB_AT));
    let mut flat = FlatOperands(mem);
    css.execute(IoOp::Ssch, SCH0, ORB_AT, &mut flat);
    css.execute(IoOp::Tsch, SCH0, IRB_AT, &mut flat);
}

fn one(css: &ChannelSubsystem, cmd: u8, data: Vec<u8>) {
    let ccw = CcwSpec {
        cmd,
        flags: 0,
        count: None,
        data,
    };
    program(css, 0, std::slice::from_ref(&ccw));
}

fn setup(css: &ChannelSubsystem, features: u64, queues: &[QueueSetup]) {
    enable(css, true, 3);
    one(css, command::SET_VIRTIO_REV, vec![0, 1, 0, 0]);
    one(css, command::WRITE_STATUS, vec![1]);
    one(css, command::WRITE_STATUS, vec![3]);
    let features = driver_features(features);
    for index in 0..2u8 {
        let mut b = ((features >> (32 * index)) as u32).to_le_bytes().to_vec();
        b.push(index);
        one(css, command::WRITE_FEAT, b);
    }
    one(css, command::WRITE_STATUS, vec![0xb]);
    for (index, q) in queues.iter().enumerate().take(4) {
        q.fill(css.memory());
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&q.desc().to_be_bytes());
        b[12..14].copy_from_slice(&(index as u16).to_be_bytes());
        b[14..16].copy_from_slice(&q.size().to_be_bytes());
        b[16..24].copy_from_slice(&q.avail().to_be_bytes());
        b[24..32].copy_from_slice(&q.used().to_be_bytes());
        one(css, command::SET_VQ, b.to_vec());
    }
    one(css, command::WRITE_STATUS, vec![0xf]);
}

fn enable(css: &ChannelSubsystem, on: bool, isc: u8) {
    let mem = css.memory();
    let mut flat = FlatOperands(mem);
    css.execute(IoOp::Stsch, SCH0, SCHIB_AT, &mut flat);
    let mut b = [0u8; Schib::LEN];
    if mem.read_slice(&mut b, GuestAddress(SCHIB_AT)).is_err() {
        return;
    }
    let mut s = Schib::from_bytes(&b);
    // ISC in 0x3800, the enable bit.
    s.pmcw.flags = (s.pmcw.flags & !(0x3800 | Pmcw::FLAG_ENABLED))
        | (u16::from(isc & 7) << 11)
        | if on { Pmcw::FLAG_ENABLED } else { 0 };
    s.pmcw.chars = Pmcw::CHARS_CSENSE;
    let _ = mem.write_slice(&s.to_bytes(), GuestAddress(SCHIB_AT));
    css.execute(IoOp::Msch, SCH0, SCHIB_AT, &mut flat);
}

fuzz_target!(|input: Input| {
    let mem = memory();
    for w in &input.memory {
        w.apply(&mem);
    }
    let Device { device, mut host } = Device::new(input.kind);
    let css = ChannelSubsystem::new(mem.clone(), Arc::new(NullSink));
    let m = mem.clone();
    css.add_device(move |sch| Box::new(VirtioCcw::new(device, m, sch)));
    let mut plugged = 0;
    for op in input.ops.iter().take(128) {
        match op {
            Op::Io { op, gr1, addr } => {
                let op = OPS[usize::from(*op) % OPS.len()];
                let addr = u64::from(*addr) % (MEM_SIZE + 0x1000);
                css.execute(op, gr1.unwrap_or(SCH0), addr, &mut FlatOperands(&mem));
            }
            Op::Enable { on, isc } => enable(&css, *on, *isc),
            Op::Setup { features, queues } => setup(&css, *features, queues),
            Op::Program { orb_flags, ccws } => program(&css, *orb_flags, ccws),
            Op::Chsc(block) => {
                let n = block.len().min(0x1000);
                let _ = mem.write_slice(&block[..n], GuestAddress(CHSC_AT));
                css.execute(IoOp::Chsc, 0, CHSC_AT, &mut FlatOperands(&mem));
            }
            Op::Notify { queue, schid } => {
                css.notify(schid.unwrap_or(SCH0), u64::from(*queue));
            }
            Op::Memory(w) => w.apply(&mem),
            Op::HostPacket(p) => {
                host.send(p);
                css.notify(SCH0, 0);
            }
            Op::Unplug => drop(css.unplug(0)),
            Op::Plug if plugged < 4 => {
                plugged += 1;
                let fresh = Device::new(input.kind);
                host = fresh.host;
                let (device, m) = (fresh.device, mem.clone());
                css.plug(move |sch| Box::new(VirtioCcw::new(device, m, sch)));
            }
            Op::Plug => {}
        }
    }
});
