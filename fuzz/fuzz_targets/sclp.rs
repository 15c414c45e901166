// SPDX-License-Identifier: Apache-2.0
//! The s390x SCLP: a guest's `SERVC` calls (any command word, any SCCB address) on SCCBs
//! the input writes into guest memory, with console input and quiesce requests between.
#![no_main]

use arbitrary::Arbitrary;
use devices::sclp::{Sclp, SclpConsole};
use libfuzzer_sys::fuzz_target;
use polyvisor_fuzz::{memory, MemWrite};

#[derive(Arbitrary, Debug)]
enum Op {
    /// SERVC with this command word and SCCB address (scaled so most land in RAM).
    Service {
        command: u32,
        sccb: u32,
    },
    Memory(MemWrite),
    Input(Vec<u8>),
    Quiesce,
}

#[derive(Arbitrary, Debug)]
struct Input {
    line_mode: bool,
    cpus: u8,
    memory: Vec<MemWrite>,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let mem = memory();
    for w in &input.memory {
        w.apply(&mem);
    }
    let console = if input.line_mode {
        SclpConsole::LineMode
    } else {
        SclpConsole::Vt220
    };
    let mut sclp = Sclp::new(4 << 30, u16::from(input.cpus), console);
    let mut out = std::io::sink();
    for op in input.ops.iter().take(256) {
        match op {
            Op::Service { command, sccb } => {
                // Low bits pick a page-ish address in RAM; a set top bit keeps it raw.
                let addr = if sccb & 0x8000_0000 != 0 {
                    u64::from(*sccb & 0x7fff_ffff)
                } else {
                    u64::from(*sccb) % polyvisor_fuzz::MEM_SIZE
                };
                let _ = sclp.service_call(&mem, *command, addr, &mut out);
            }
            Op::Memory(w) => w.apply(&mem),
            Op::Input(bytes) => {
                sclp.queue_input(bytes);
            }
            Op::Quiesce => {
                sclp.request_quiesce();
            }
        }
    }
});
