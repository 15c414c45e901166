// SPDX-License-Identifier: Apache-2.0
//! The bench guests: tiny PVH kernels built with the tests crate's assembler and ELF
//! builder, so every peer (polyvisor, the KVM floor, QEMU microvm) runs the same bytes at
//! the same addresses.
//!
//! A guest reports its milestones ("marks") in two ways at once, so each peer sees them
//! with the device it has:
//! - a byte write of the mark's value to the boot timer at [`BOOT_TIMER`] (polyvisor logs
//!   it on stderr; the floor prints `mark V`); QEMU has nothing there and ignores it;
//! - `out 0xe9, al` with the same value: QEMU's `isa-debugcon` writes the byte to its
//!   chardev; polyvisor and the floor have nothing on that port and ignore it.
//!
//! Every guest ends with a [`MARK_EXIT`] mark, then `out 0xf4, al` (QEMU's
//! `isa-debug-exit`; ignored by the others) and the i8042 reset `out 0x64, 0xfe`
//! (polyvisor and the floor exit on it).

use polyvisor_tests::asm::{Asm, Cond, Mem, Reg};
use polyvisor_tests::guest::{pvh_asm, pvh_kernel, reset_i8042};
use polyvisor_tests::virtio_mmio::{self, bring_up_queue0, DEVICE_ID, QUEUE_NOTIFY};

/// Polyvisor's boot-timer device (x86_64 layout); the value 123 means "init reached".
pub const BOOT_TIMER: u32 = 0xc000_0000;
/// QEMU's `isa-debugcon` port.
pub const DEBUGCON_PORT: u8 = 0xe9;
/// QEMU's `isa-debug-exit` port.
pub const DEBUG_EXIT_PORT: u8 = 0xf4;
/// A port no peer claims: each `out` to it is a full exit to the VMM and back.
pub const UNCLAIMED_PORT: u16 = 0x3000;
/// An MMIO address no peer claims (inside the 32-bit hole, no memory slot there).
pub const UNCLAIMED_MMIO: u32 = 0xd000_0000;

/// First instruction of every guest: "the guest runs".
pub const MARK_FIRST: u8 = 123;
/// Start and end of a measured section.
pub const MARK_BEGIN: u8 = 1;
pub const MARK_END: u8 = 2;
/// Written right before the guest asks to be reset: teardown starts here.
pub const MARK_EXIT: u8 = 200;

/// The virtio-blk guest's split queue (16 entries), headers, status bytes and data
/// buffers, in guest-free memory (0x30000..0x9efff); chain `i` (of at most 4) is
/// descriptors 3i..3i+2, its header and status at `BLK_HEADER + 0x20 i` and
/// `BLK_STATUS + 0x20 i`, its buffer at `BLK_BUF + 0x1000 i`.
const BLK_DESC: u32 = 0x3_0000;
const BLK_AVAIL: u32 = 0x3_0100;
const BLK_USED: u32 = 0x3_1000;
const BLK_HEADER: u32 = 0x3_2000;
const BLK_STATUS: u32 = 0x3_2010;
const BLK_BUF: u32 = 0x3_3000;
/// Used-ring polls per request before the guest gives up (no MARK_END then).
const BLK_SPINS: u32 = 50_000_000;

/// TSC cycles the memory guest spins for (~0.3 s at 2.4 GHz).
pub const SPIN_TSC_CYCLES: u32 = 0x3000_0000;

/// What a guest does between its first mark and its exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Nothing: boot, mark, exit.
    Boot,
    /// `count` × `out dx, al` to [`UNCLAIMED_PORT`] between [`MARK_BEGIN`] and [`MARK_END`].
    Pio { count: u32 },
    /// `count` × `mov [UNCLAIMED_MMIO], al` between [`MARK_BEGIN`] and [`MARK_END`].
    Mmio { count: u32 },
    /// Spin on the TSC for `cycles` between [`MARK_BEGIN`] and [`MARK_END`] (memory sampling).
    Spin { cycles: u32 },
    /// Bring up the virtio-rng device `--rng` adds (virtio-mmio slot 0), then `count`
    /// requests of 64 bytes one after another between [`MARK_BEGIN`] and [`MARK_END`]:
    /// make the buffer available, notify, poll the used ring (polyvisor only).
    Rng { count: u16 },
    /// Halt with interrupts off after the first mark, for ever (density: the VM stays up
    /// at no CPU cost until it is killed; no exit mark).
    Halt,
    /// `count` rounds of `depth` (1, 2 or 4) virtio-blk requests at once: 4 KiB reads of
    /// sectors 0, 8, 16, 24 on the virtio-mmio slot 0 device (polyvisor `--disk`), made
    /// available together, notified once through QUEUE_NOTIFY and waited for by polling
    /// the used ring (no interrupts), between [`MARK_BEGIN`] and [`MARK_END`]. No MARK_END
    /// when slot 0 is no block device, a request did not complete, or a status byte is not
    /// OK.
    BlkRead { count: u32, depth: u32 },
}

/// Emits one mark: boot-timer byte write, then `out 0xe9, al`. Clobbers eax.
pub fn mark(a: &mut Asm, value: u8) {
    a.mov_mem_imm8(Mem::Abs(BOOT_TIMER), value); // mov byte [0xc0000000], value
    a.mov_al(value); // mov al, value
    a.out_imm_al(DEBUGCON_PORT); // out 0xe9, al
}

/// The guest's code (at the PVH entry point).
pub fn guest_code(work: Workload) -> Vec<u8> {
    let mut a = pvh_asm();
    mark(&mut a, MARK_FIRST);
    match work {
        Workload::Boot => {}
        Workload::Halt => {
            a.bytes(&[0xfa]); // cli
            a.bytes(&[0xf4, 0xeb, 0xfd]); // 1: hlt; jmp 1b
            return a.finish();
        }
        Workload::Pio { count } => {
            mark(&mut a, MARK_BEGIN);
            a.mov_dx(UNCLAIMED_PORT); // mov dx, port
            a.mov_imm(Reg::Ecx, count); // mov ecx, count
            let top = a.here_label();
            a.out_dx_al(); // out dx, al
            a.loop_to(top); // loop top
            mark(&mut a, MARK_END);
        }
        Workload::Mmio { count } => {
            mark(&mut a, MARK_BEGIN);
            a.mov_imm(Reg::Ecx, count); // mov ecx, count
            let top = a.here_label();
            a.mov_store8(Mem::Abs(UNCLAIMED_MMIO), Reg::Eax); // mov byte [mmio], al
            a.loop_to(top); // loop top
            mark(&mut a, MARK_END);
        }
        Workload::Rng { count } => {
            let q = virtio_mmio::GUEST_QUEUE;
            virtio_mmio::drive_to_ready(&mut a, &q, &mut |_, _, _| {});
            mark(&mut a, MARK_BEGIN);
            virtio_mmio::request_loop(&mut a, &q, count);
            mark(&mut a, MARK_END);
        }
        Workload::Spin { cycles } => {
            mark(&mut a, MARK_BEGIN);
            a.bytes(&[0x0f, 0x31]); // rdtsc
            a.mov_rr(Reg::Esi, Reg::Eax); // mov esi, eax: start, low
            a.mov_rr(Reg::Edi, Reg::Edx); // mov edi, edx: start, high
            let top = a.here_label();
            let done = a.label();
            a.bytes(&[0x0f, 0x31]); // rdtsc
            a.bytes(&[0x29, 0xf0]); // sub eax, esi
            a.bytes(&[0x19, 0xfa]); // sbb edx, edi
            a.j(Cond::Ne, done); // jnz done: 2^32 cycles or more
            a.cmp_imm(Reg::Eax, cycles); // cmp eax, cycles
            a.j(Cond::B, top); // jb top
            a.bind(done);
            mark(&mut a, MARK_END);
        }
        Workload::BlkRead { count, depth } => blk_read_loop(&mut a, count, depth),
    }
    mark(&mut a, MARK_EXIT);
    a.mov_al(0); // mov al, 0: isa-debug-exit status (QEMU exits with 1)
    a.out_imm_al(DEBUG_EXIT_PORT); // out 0xf4, al
    reset_i8042(&mut a);
    a.finish()
}

/// [`Workload::BlkRead`]'s body (virtio 1.2 §5.2.6: header, data, status).
fn blk_read_loop(a: &mut Asm, count: u32, depth: u32) {
    assert!(
        matches!(depth, 1 | 2 | 4),
        "depth divides the 16-entry ring"
    );
    let fail = a.label();
    a.cmp_mem_imm32(Mem::Abs(DEVICE_ID), 2); // a block device?
    a.j_near(Cond::Ne, fail);
    bring_up_queue0(a, 16, BLK_DESC, BLK_AVAIL, BLK_USED);
    for i in 0..depth {
        let (header, status) = (BLK_HEADER + 0x20 * i, BLK_STATUS + 0x20 * i);
        // Header: type IN (0), reserved, sector 8i (4 KiB apart).
        for (off, v) in [(0, 0), (4, 0), (8, 8 * i), (12, 0)] {
            a.mov_mem_imm32(Mem::Abs(header + off), v);
        }
        // desc 3i: header (16 bytes, NEXT); 3i+1: buffer (4 KiB, NEXT|WRITE); 3i+2: status
        // (1 byte, WRITE). Each: addr u64, len u32, flags u16, next u16.
        let d0 = 3 * i;
        for (k, (addr, len, flags_next)) in [
            (header, 16, 1 | ((d0 + 1) << 16)),
            (BLK_BUF + 0x1000 * i, 4096, 3 | ((d0 + 2) << 16)),
            (status, 1, 2),
        ]
        .into_iter()
        .enumerate()
        {
            let d = BLK_DESC + 16 * (d0 + k as u32);
            a.mov_mem_imm32(Mem::Abs(d), addr);
            a.mov_mem_imm32(Mem::Abs(d + 4), 0);
            a.mov_mem_imm32(Mem::Abs(d + 8), len);
            a.mov_mem_imm32(Mem::Abs(d + 12), flags_next);
        }
        a.mov_mem_imm8(Mem::Abs(status), 0xff);
    }
    // Available ring: flags/idx 0, entry k the head of chain k mod depth.
    a.mov_mem_imm32(Mem::Abs(BLK_AVAIL), 0);
    for k in (0..16).step_by(2) {
        let head = |k: u32| 3 * (k % depth);
        a.mov_mem_imm32(
            Mem::Abs(BLK_AVAIL + 4 + 2 * k),
            head(k) | (head(k + 1) << 16),
        );
    }
    mark(a, MARK_BEGIN);
    a.mov_imm(Reg::Esi, count); // rounds left
    a.xor_rr(Reg::Ebx, Reg::Ebx); // avail idx << 16 (flags stay 0)
    let top = a.here_label();
    a.add_imm(Reg::Ebx, depth << 16);
    a.mov_store(Mem::Abs(BLK_AVAIL), Reg::Ebx); // publish the round's requests
    a.mov_mem_imm32(Mem::Abs(QUEUE_NOTIFY), 0); // notify queue 0
    a.mov_imm(Reg::Edx, BLK_SPINS);
    let wait = a.here_label();
    let served = a.label();
    a.mov_load(Reg::Eax, Mem::Abs(BLK_USED)); // used flags | idx << 16
    a.and_imm(Reg::Eax, 0xffff_0000);
    a.cmp_rr(Reg::Eax, Reg::Ebx);
    a.j(Cond::E, served);
    a.dec(Reg::Edx);
    a.j(Cond::Ne, wait);
    a.jmp(fail); // never completed
    a.bind(served);
    a.dec(Reg::Esi);
    a.j_near(Cond::Ne, top);
    for i in 0..depth {
        a.cmp_mem_imm8(Mem::Abs(BLK_STATUS + 0x20 * i), 0); // VIRTIO_BLK_S_OK
        a.j_near(Cond::Ne, fail);
    }
    mark(a, MARK_END);
    a.bind(fail);
}

/// The guest as a PVH ELF kernel (the tests crate's layout: loaded at 1 MiB, entry at
/// 1 MiB + 0x100).
pub fn guest_kernel(work: Workload) -> Vec<u8> {
    pvh_kernel(guest_code(work))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_instruction_is_the_boot_timer_write() {
        let code = guest_code(Workload::Boot);
        // C6 05 disp32 imm8: mov byte [0xc0000000], 123
        assert_eq!(&code[..7], &[0xc6, 0x05, 0, 0, 0, 0xc0, MARK_FIRST]);
        // then mov al, 123; out 0xe9, al
        assert_eq!(&code[7..11], &[0xb0, MARK_FIRST, 0xe6, DEBUGCON_PORT]);
    }

    #[test]
    fn every_guest_ends_with_exit_mark_debug_exit_and_reset() {
        for w in [
            Workload::Boot,
            Workload::Pio { count: 3 },
            Workload::Mmio { count: 3 },
            Workload::Spin { cycles: 5 },
            Workload::Rng { count: 3 },
            Workload::BlkRead { count: 3, depth: 1 },
            Workload::BlkRead { count: 3, depth: 4 },
        ] {
            let code = guest_code(w);
            let tail: Vec<u8> = [
                &[0xc6, 0x05, 0, 0, 0, 0xc0, MARK_EXIT][..],
                &[0xb0, MARK_EXIT, 0xe6, DEBUGCON_PORT],
                &[0xb0, 0, 0xe6, DEBUG_EXIT_PORT],
                &[0xb0, 0xfe, 0xe6, 0x64, 0xfa, 0xf4, 0xeb, 0xfc],
            ]
            .concat();
            assert!(code.ends_with(&tail), "{w:?}: {code:02x?}");
        }
    }

    #[test]
    fn halt_guest_marks_then_halts_for_ever() {
        let code = guest_code(Workload::Halt);
        assert_eq!(&code[7..11], &[0xb0, MARK_FIRST, 0xe6, DEBUGCON_PORT]);
        assert!(code.ends_with(&[0xfa, 0xf4, 0xeb, 0xfd]), "{code:02x?}");
    }

    #[test]
    fn pio_loop_is_out_then_loop() {
        let code = guest_code(Workload::Pio { count: 10 });
        let body = [0xee, 0xe2, 0xfd]; // out dx, al; loop -3
        assert!(code.windows(3).any(|w| w == body));
        assert!(code.windows(5).any(|w| w == [0xb9, 10, 0, 0, 0])); // mov ecx, 10
    }

    #[test]
    fn mmio_loop_writes_the_unclaimed_address() {
        let code = guest_code(Workload::Mmio { count: 10 });
        // mov byte [0xd0000000], al (88 05 disp32); loop -8
        let body = [0x88, 0x05, 0, 0, 0, 0xd0, 0xe2, 0xf8];
        assert!(code.windows(body.len()).any(|w| w == body));
    }

    #[test]
    fn blk_loop_checks_the_device_then_notifies_queue_0() {
        let code = guest_code(Workload::BlkRead {
            count: 10,
            depth: 1,
        });
        // cmp dword [0xd0000008], 2 (81 3d disp32 imm32): slot 0 is a block device
        let check = [0x81, 0x3d, 0x08, 0, 0, 0xd0, 2, 0, 0, 0];
        assert!(code.windows(check.len()).any(|w| w == check));
        // mov dword [0xd0000050], 0 (c7 05 disp32 imm32): QueueNotify, queue 0
        let notify = [0xc7, 0x05, 0x50, 0, 0, 0xd0, 0, 0, 0, 0];
        assert!(code.windows(notify.len()).any(|w| w == notify));
        assert!(code.windows(5).any(|w| w == [0xbe, 10, 0, 0, 0])); // mov esi, 10
    }

    #[test]
    fn kernel_is_an_elf_with_the_code_at_the_pvh_entry() {
        let img = guest_kernel(Workload::Boot);
        assert_eq!(&img[..4], b"\x7fELF");
        let code = guest_code(Workload::Boot);
        assert_eq!(&img[0x1100..0x1100 + code.len()], &code[..]);
    }
}
