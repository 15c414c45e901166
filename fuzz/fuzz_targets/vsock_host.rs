// SPDX-License-Identifier: Apache-2.0
//! virtio-vsock's host side: host processes connect to the device's Unix socket and write
//! `CONNECT <port>\n` lines (or anything else: the line parser reads untrusted bytes), data,
//! and hang up, while a driver that is already up (virtio-mmio, VERSION_1, the three queues
//! with receive buffers posted) answers with transmit packets the input shapes: a header
//! with the guest's and host's CIDs and the ports, op, flags and credit the input picks,
//! or raw bytes. The device must answer per spec and never panic.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use devices::virtio::mmio::reg;
use devices::virtio::vsock::packet::{Header, HDR_LEN, HOST_CID, TYPE_STREAM};
use devices::virtio::MmioTransport;
use devices::BusDevice;
use libfuzzer_sys::fuzz_target;
use polyvisor_fuzz::{memory, Device, Kind, NullLine};
use vm_memory::{Bytes, GuestAddress};

/// The guest's CID (what `Device::new(Kind::Vsock)` gives the device).
const GUEST_CID: u64 = 3;
/// Entries of each queue.
const QSIZE: u16 = 16;
/// Bytes of each buffer.
const BUF: u64 = 0x1000;
/// Queue `i`'s rings (descriptors, available, used) and buffers.
const fn desc(i: u64) -> u64 {
    0x1000 + i * 0x1000
}
const fn avail(i: u64) -> u64 {
    desc(i) + 0x400
}
const fn used(i: u64) -> u64 {
    desc(i) + 0x800
}
const fn buf(i: u64, d: u64) -> u64 {
    0x1_0000 + (i * QSIZE as u64 + d) * BUF
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A host process connects and writes these bytes (`CONNECT <port>` + `\n` is what a
    /// client sends first).
    Connect(Vec<u8>),
    /// `CONNECT <port>\n` exactly, then `data`.
    ConnectPort { port: u32, data: Vec<u8> },
    /// More bytes from the newest host connection.
    HostData(Vec<u8>),
    /// A host connection hangs up.
    HostClose(u8),
    /// The guest transmits a stream packet to the host.
    Packet {
        src_port: u32,
        dst_port: u32,
        op: u8,
        flags: u32,
        buf_alloc: u32,
        fwd_cnt: u32,
        payload: Vec<u8>,
    },
    /// The guest transmits whatever these bytes are.
    Raw(Vec<u8>),
    /// The guest posts its used receive buffers again.
    Refill,
    /// A notify of queue `n`.
    Notify(u8),
}

fn write32(t: &mut MmioTransport, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

/// The driver: VERSION_1, three queues of [`QSIZE`], every receive buffer posted.
fn bring_up(t: &mut MmioTransport, mem: &devices::virtio::GuestMemory) {
    for (r, v) in [
        (reg::STATUS, 0),
        (reg::STATUS, 1),
        (reg::STATUS, 3),
        (reg::DRIVER_FEATURES_SEL, 1),
        (reg::DRIVER_FEATURES, 1),
        (reg::DRIVER_FEATURES_SEL, 0),
        (reg::DRIVER_FEATURES, 0),
        (reg::STATUS, 0xb),
    ] {
        write32(t, r, v);
    }
    for q in 0..3u64 {
        write32(t, reg::QUEUE_SEL, q as u32);
        write32(t, reg::QUEUE_NUM, u32::from(QSIZE));
        for (low, v) in [
            (reg::QUEUE_DESC_LOW, desc(q)),
            (reg::QUEUE_DRIVER_LOW, avail(q)),
            (reg::QUEUE_DEVICE_LOW, used(q)),
        ] {
            write32(t, low, v as u32);
            write32(t, low + 4, 0);
        }
        write32(t, reg::QUEUE_READY, 1);
    }
    // Receive (0) and event (2) queues: every descriptor a device-writable buffer, all
    // available.
    for q in [0u64, 2] {
        for d in 0..u64::from(QSIZE) {
            put_desc(mem, q, d, BUF as u32, 2);
            let _ = mem.write_obj(d as u16, GuestAddress(avail(q) + 4 + 2 * d));
        }
        let _ = mem.write_obj(QSIZE, GuestAddress(avail(q) + 2));
    }
    write32(t, reg::STATUS, 0xf);
}

fn put_desc(mem: &devices::virtio::GuestMemory, q: u64, d: u64, len: u32, flags: u16) {
    let at = desc(q) + 16 * d;
    let _ = mem.write_obj(buf(q, d), GuestAddress(at));
    let _ = mem.write_obj(len, GuestAddress(at + 8));
    let _ = mem.write_obj(flags, GuestAddress(at + 12));
    let _ = mem.write_obj(0u16, GuestAddress(at + 14));
}

/// The guest sends `bytes` (at most one buffer) on the transmit queue and notifies it.
fn transmit(
    t: &mut MmioTransport,
    mem: &devices::virtio::GuestMemory,
    tx_idx: &mut u16,
    bytes: &[u8],
) {
    let d = u64::from(*tx_idx % QSIZE);
    let n = bytes.len().min(BUF as usize);
    let _ = mem.write_slice(&bytes[..n], GuestAddress(buf(1, d)));
    put_desc(mem, 1, d, n as u32, 0);
    let _ = mem.write_obj(d as u16, GuestAddress(avail(1) + 4 + 2 * d));
    *tx_idx = tx_idx.wrapping_add(1);
    let _ = mem.write_obj(*tx_idx, GuestAddress(avail(1) + 2));
    write32(t, reg::QUEUE_NOTIFY, 1);
}

fuzz_target!(|ops: Vec<Op>| {
    let mem = memory();
    let Device { device, mut host } = Device::new(Kind::Vsock);
    let mut t = MmioTransport::new(device, mem.clone(), Arc::new(NullLine));
    bring_up(&mut t, &mem);
    let mut tx_idx = 0u16;
    for op in ops.iter().take(128) {
        match op {
            Op::Connect(bytes) => host.vsock_connect(bytes),
            Op::ConnectPort { port, data } => {
                let mut line = format!("CONNECT {port}\n").into_bytes();
                line.extend_from_slice(data);
                host.vsock_connect(&line);
            }
            Op::HostData(bytes) => host.send(bytes),
            Op::HostClose(i) => host.vsock_close(*i),
            Op::Packet {
                src_port,
                dst_port,
                op,
                flags,
                buf_alloc,
                fwd_cnt,
                payload,
            } => {
                let n = payload.len().min(BUF as usize - HDR_LEN);
                let h = Header {
                    src_cid: GUEST_CID,
                    dst_cid: HOST_CID,
                    src_port: *src_port,
                    dst_port: *dst_port,
                    len: n as u32,
                    type_: TYPE_STREAM,
                    op: u16::from(*op % 9),
                    flags: *flags,
                    buf_alloc: *buf_alloc,
                    fwd_cnt: *fwd_cnt,
                };
                let mut bytes = h.to_bytes().to_vec();
                bytes.extend_from_slice(&payload[..n]);
                transmit(&mut t, &mem, &mut tx_idx, &bytes);
                continue;
            }
            Op::Raw(bytes) => {
                transmit(&mut t, &mem, &mut tx_idx, bytes);
                continue;
            }
            Op::Refill => {
                // Every buffer the device used is available again (ring entry i holds
                // descriptor i).
                let used_idx: u16 = mem.read_obj(GuestAddress(used(0) + 2)).unwrap_or(0);
                let _ = mem.write_obj(used_idx.wrapping_add(QSIZE), GuestAddress(avail(0) + 2));
            }
            Op::Notify(q) => {
                write32(&mut t, reg::QUEUE_NOTIFY, u32::from(*q % 4));
                continue;
            }
        }
        // What the host did is served on the next pass of the worker (a kick runs it
        // inline under the fuzzing feature).
        write32(&mut t, reg::QUEUE_NOTIFY, 0);
    }
    // Reset: the device stops, its connections close.
    write32(&mut t, reg::STATUS, 0);
});
