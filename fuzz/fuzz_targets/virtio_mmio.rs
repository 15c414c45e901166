// SPDX-License-Identifier: Apache-2.0
//! virtio-mmio: a driver's register accesses to one virtio device (rng, blk, net or vsock,
//! picked by the input) and the queues it drives, in guest memory the input fills.
//! `Setup` is a whole driver initialisation (features, every queue, DRIVER_OK) so the
//! fuzzer reaches the device's queue handling quickly; the other operations are single
//! register accesses, memory writes between them, notifies and host-side packets (vsock:
//! host connections to the device's socket, with their `CONNECT <port>\n` lines).
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use devices::virtio::mmio::reg;
use devices::virtio::{GuestMemory, MmioTransport};
use devices::BusDevice;
use libfuzzer_sys::fuzz_target;
use polyvisor_fuzz::{driver_features, memory, Device, Kind, MemWrite, NullLine, QueueSetup};

#[derive(Arbitrary, Debug)]
enum Op {
    Setup {
        features: u64,
        queues: Vec<QueueSetup>,
    },
    Read {
        offset: u16,
        len: u8,
    },
    Write {
        offset: u16,
        value: u32,
        len: u8,
    },
    Notify(u16),
    Memory(MemWrite),
    HostPacket(Vec<u8>),
    Status(u8),
    /// vsock: a host process connects and writes these bytes; the worker is kicked.
    HostConnect(Vec<u8>),
    /// vsock: a host connection goes away.
    HostClose(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    kind: Kind,
    memory: Vec<MemWrite>,
    ops: Vec<Op>,
}

fn write32(t: &mut MmioTransport, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

fn setup(t: &mut MmioTransport, mem: &GuestMemory, features: u64, queues: &[QueueSetup]) {
    let features = driver_features(features);
    write32(t, reg::STATUS, 0);
    write32(t, reg::STATUS, 1);
    write32(t, reg::STATUS, 3);
    for sel in 0..2u32 {
        write32(t, reg::DRIVER_FEATURES_SEL, sel);
        write32(t, reg::DRIVER_FEATURES, (features >> (32 * sel)) as u32);
    }
    write32(t, reg::STATUS, 0xb);
    for (i, q) in queues.iter().enumerate().take(4) {
        q.fill(mem);
        write32(t, reg::QUEUE_SEL, i as u32);
        write32(t, reg::QUEUE_NUM, u32::from(q.size()));
        for (low, v) in [
            (reg::QUEUE_DESC_LOW, q.desc()),
            (reg::QUEUE_DRIVER_LOW, q.avail()),
            (reg::QUEUE_DEVICE_LOW, q.used()),
        ] {
            write32(t, low, v as u32);
            write32(t, low + 4, (v >> 32) as u32);
        }
        write32(t, reg::QUEUE_READY, 1);
    }
    write32(t, reg::STATUS, 0xf);
}

fuzz_target!(|input: Input| {
    let mem = memory();
    for w in &input.memory {
        w.apply(&mem);
    }
    let Device { device, mut host } = Device::new(input.kind);
    let mut t = MmioTransport::new(device, mem.clone(), Arc::new(NullLine));
    for op in input.ops.iter().take(256) {
        match op {
            Op::Setup { features, queues } => setup(&mut t, &mem, *features, queues),
            Op::Read { offset, len } => {
                let mut data = vec![0u8; usize::from(*len % 9)];
                t.read(u64::from(*offset), &mut data);
            }
            Op::Write { offset, value, len } => {
                let n = usize::from(*len % 9).min(4);
                t.write(u64::from(*offset), &value.to_le_bytes()[..n]);
            }
            Op::Notify(q) => write32(&mut t, reg::QUEUE_NOTIFY, u32::from(*q)),
            Op::Memory(w) => w.apply(&mem),
            Op::HostPacket(p) => {
                host.send(p);
                // The tap is readable: what a kick of the worker then serves.
                write32(&mut t, reg::QUEUE_NOTIFY, 0);
            }
            Op::Status(s) => write32(&mut t, reg::STATUS, u32::from(*s)),
            Op::HostConnect(bytes) => {
                host.vsock_connect(bytes);
                write32(&mut t, reg::QUEUE_NOTIFY, 0);
            }
            Op::HostClose(i) => {
                host.vsock_close(*i);
                write32(&mut t, reg::QUEUE_NOTIFY, 0);
            }
        }
    }
    // Reset: the device stops and gives its queues back.
    write32(&mut t, reg::STATUS, 0);
});
