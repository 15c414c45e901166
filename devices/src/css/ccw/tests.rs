// SPDX-License-Identifier: Apache-2.0
//! Channel programs a hostile guest writes: each ends promptly with a channel-program
//! check, whatever it chains, and the host allocates no more than the budget allows.

use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use super::*;

const CCW_AT: u64 = 0x2000;
const DATA_AT: u64 = 0x8000;
const IDAW_AT: u64 = 0x1_0000;
/// A hostile program must end well within this, even under qemu-user.
const PROMPT: Duration = Duration::from_secs(10);

fn memory(mib: usize) -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), mib << 20)]).unwrap()
}

fn ccw(cmd: u8, flags: u8, count: u16, cda: u64) -> [u8; 8] {
    Ccw {
        cmd,
        flags,
        count,
        cda: cda as u32,
    }
    .to_format1()
}

/// Write `ccws` one after the other from `at`.
fn put(mem: &GuestMemory, at: u64, ccws: &[[u8; 8]]) {
    let bytes: Vec<u8> = ccws.iter().flatten().copied().collect();
    mem.write_slice(&bytes, GuestAddress(at)).unwrap();
}

/// Command 0x01 reads its whole data area into a buffer it allocates (as a careless device
/// would); counts its calls and the bytes it took.
#[derive(Default)]
struct Sponge {
    calls: usize,
    bytes: usize,
}

impl CcwDevice for Sponge {
    fn sense_id(&self) -> [u8; 8] {
        [0xff, 0, 0, 0, 0, 0, 0, 0]
    }
    fn execute(&mut self, cmd: u8, data: &mut DataStream<'_>) -> Result<(), CcwError> {
        self.calls += 1;
        match cmd {
            0x01 => {
                let mut b = vec![0u8; data.count()];
                data.read(&mut b)?;
                self.bytes += b.len();
                Ok(())
            }
            _ => Err(CcwError::CommandReject),
        }
    }
}

fn run(mem: &GuestMemory, ctrl0: u16, dev: &mut Sponge) -> Completion {
    let orb = Orb {
        ctrl0: Orb::CTRL0_FORMAT1 | ctrl0,
        lpm: 0x80,
        cpa: CCW_AT as u32,
        ..Default::default()
    };
    let start = Instant::now();
    let done = ChannelProgram::new(mem, orb, [0; SENSE_LEN]).run(dev);
    assert!(start.elapsed() < PROMPT, "took {:?}", start.elapsed());
    done
}

fn assert_program_check(done: &Completion) {
    assert_eq!(done.cstat, Scsw::CSTAT_PROGRAM_CHECK, "{done:?}");
    assert_eq!(done.dstat, 0, "{done:?}");
}

#[test]
fn a_tic_loop_runs_out_of_fetches() {
    let mem = memory(1);
    // write 1 byte, chain; TIC back to the write.
    put(
        &mem,
        CCW_AT,
        &[ccw(0x01, Ccw::FLAG_CC, 1, DATA_AT), ccw(0x08, 0, 0, CCW_AT)],
    );
    let mut dev = Sponge::default();
    let done = run(&mem, 0, &mut dev);
    assert_program_check(&done);
    // Each pass fetches the write and the TIC.
    assert_eq!(dev.calls, MAX_FETCHES as usize / 2);
}

#[test]
fn a_data_chain_bomb_runs_out_of_fetches_before_the_device_sees_it() {
    // 1 MiB of data-chained CCWs of one byte each (131072 of them), the last one ending.
    let mem = memory(4);
    let n = (1 << 20) / 8;
    let mut ccws = vec![ccw(0x01, Ccw::FLAG_CD, 1, DATA_AT); n];
    ccws[n - 1] = ccw(0x01, 0, 1, DATA_AT);
    put(&mem, CCW_AT, &ccws);
    let mut dev = Sponge::default();
    let done = run(&mem, 0, &mut dev);
    assert_program_check(&done);
    assert_eq!(dev.calls, 0, "the chain never reached the device");
    // The check names the CCW where the budget ran out.
    assert_eq!(u64::from(done.cpa), CCW_AT + 8 * u64::from(MAX_FETCHES) + 8);
}

#[test]
fn idaws_count_against_the_same_budget() {
    let mem = memory(4);
    // Each CCW: 2 bytes through two 31-bit IDAWs (the first one byte before a 2K block
    // boundary): 3 fetches. 1500 CCWs alone are within the budget; with their IDAWs not.
    let (a, b) = (0x4000u32 - 1, 0x4000u32);
    let mut idaws = Vec::new();
    idaws.extend(a.to_be_bytes());
    idaws.extend(b.to_be_bytes());
    mem.write_slice(&idaws, GuestAddress(IDAW_AT)).unwrap();
    let chained = |n: usize| {
        let mut ccws = vec![ccw(0x01, Ccw::FLAG_CD | Ccw::FLAG_IDA, 2, IDAW_AT); n];
        ccws[n - 1] = ccw(0x01, Ccw::FLAG_IDA, 2, IDAW_AT);
        ccws
    };
    put(&mem, CCW_AT, &chained(1500));
    let mut dev = Sponge::default();
    assert_program_check(&run(&mem, 0, &mut dev));
    assert_eq!(dev.calls, 0);
    // A third of that is fine: 1000 CCWs, 3000 fetches, 2000 bytes.
    put(&mem, CCW_AT, &chained(1000));
    let done = run(&mem, 0, &mut dev);
    assert_eq!(done.cstat, 0, "{done:?}");
    assert_eq!((dev.calls, dev.bytes), (1, 2000));
}

#[test]
fn a_long_idaw_list_is_bounded() {
    // 64-bit IDAWs, 4K blocks: a 60 KiB CCW names 15 of them, data-chained 12 MB worth:
    // the byte budget ends it before the fetches do, and nothing was allocated.
    let mem = memory(16);
    let idaws: Vec<u8> = (0..16u64)
        .flat_map(|i| (0x10_0000 + i * 0x1000).to_be_bytes())
        .collect();
    mem.write_slice(&idaws, GuestAddress(IDAW_AT)).unwrap();
    let mut ccws = vec![ccw(0x01, Ccw::FLAG_CD | Ccw::FLAG_IDA, 0xf000, IDAW_AT); 200];
    ccws[199] = ccw(0x01, Ccw::FLAG_IDA, 0xf000, IDAW_AT);
    put(&mem, CCW_AT, &ccws);
    let mut dev = Sponge::default();
    assert_program_check(&run(&mem, Orb::CTRL0_C64, &mut dev));
    assert_eq!(dev.calls, 0);
}

#[test]
fn huge_counts_are_bounded_by_the_cap_and_by_guest_memory() {
    // 100 data-chained CCWs of 64 KiB - 1 each: 6.4 MB, over the fixed cap.
    let mem = memory(64);
    let mut ccws = vec![ccw(0x01, Ccw::FLAG_CD, 0xffff, DATA_AT); 100];
    ccws[99] = ccw(0x01, 0, 0xffff, DATA_AT);
    put(&mem, CCW_AT, &ccws);
    let mut dev = Sponge::default();
    assert_program_check(&run(&mem, 0, &mut dev));
    assert_eq!(dev.calls, 0);

    // With 1 MiB of guest memory, 17 of them name more than the guest has: refused; 15
    // are within it and reach the device whole.
    let mem = memory(1);
    let chained = |n: usize| {
        let mut ccws = vec![ccw(0x01, Ccw::FLAG_CD, 0xffff, DATA_AT); n];
        ccws[n - 1] = ccw(0x01, 0, 0xffff, DATA_AT);
        ccws
    };
    put(&mem, CCW_AT, &chained(17));
    assert_program_check(&run(&mem, 0, &mut dev));
    assert_eq!(dev.calls, 0);
    put(&mem, CCW_AT, &chained(15));
    let done = run(&mem, 0, &mut dev);
    assert_eq!(done.cstat, 0, "{done:?}");
    assert_eq!((dev.calls, dev.bytes), (1, 15 * 0xffff));
}

#[test]
fn a_long_but_bounded_command_chain_completes() {
    let mem = memory(1);
    let n = MAX_FETCHES as usize;
    let mut ccws = vec![ccw(cmd::NOP, Ccw::FLAG_CC | Ccw::FLAG_SLI, 1, 0); n];
    ccws[n - 1] = ccw(cmd::NOP, Ccw::FLAG_SLI, 1, 0);
    put(&mem, CCW_AT, &ccws);
    let done = run(&mem, 0, &mut Sponge::default());
    assert_eq!(done.cstat, 0, "{done:?}");
    assert_eq!(u64::from(done.cpa), CCW_AT + 8 * n as u64);
    // One more is a runaway.
    put(&mem, CCW_AT, &[ccw(0x08, 0, 0, CCW_AT + 8)]);
    put(&mem, CCW_AT + 8, &ccws);
    assert_program_check(&run(&mem, 0, &mut Sponge::default()));
}
