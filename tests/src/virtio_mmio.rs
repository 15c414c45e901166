// SPDX-License-Identifier: Apache-2.0
//! The first virtio-mmio slot's registers as a tiny x86_64 guest reaches them
//! (arch-x86_64 puts slot 0 at 0xd000_0000; virtio 1.2 §4.2.2 gives the offsets).

use crate::{Asm, Cond, Mem, Reg};

/// Slot 0's register window.
pub const MMIO: u32 = 0xd000_0000;
pub const MAGIC: u32 = MMIO;
pub const DEVICE_ID: u32 = MMIO + 0x08;
pub const DEVICE_FEATURES: u32 = MMIO + 0x10;
pub const DEVICE_FEATURES_SEL: u32 = MMIO + 0x14;
pub const DRIVER_FEATURES: u32 = MMIO + 0x20;
pub const DRIVER_FEATURES_SEL: u32 = MMIO + 0x24;
pub const QUEUE_SEL: u32 = MMIO + 0x30;
pub const QUEUE_NUM_MAX: u32 = MMIO + 0x34;
pub const QUEUE_NUM: u32 = MMIO + 0x38;
pub const QUEUE_READY: u32 = MMIO + 0x44;
pub const QUEUE_NOTIFY: u32 = MMIO + 0x50;
pub const INTERRUPT_STATUS: u32 = MMIO + 0x60;
pub const INTERRUPT_ACK: u32 = MMIO + 0x64;
pub const STATUS: u32 = MMIO + 0x70;
pub const QUEUE_DESC_LOW: u32 = MMIO + 0x80;
pub const QUEUE_DESC_HIGH: u32 = MMIO + 0x84;
pub const QUEUE_DRIVER_LOW: u32 = MMIO + 0x90;
pub const QUEUE_DRIVER_HIGH: u32 = MMIO + 0x94;
pub const QUEUE_DEVICE_LOW: u32 = MMIO + 0xa0;
pub const QUEUE_DEVICE_HIGH: u32 = MMIO + 0xa4;

/// Emits the guest's stores that give queue 0 `size` entries, its descriptor table at
/// `desc`, driver area (available ring) at `avail` and device area (used ring) at `used`,
/// all below 4 GiB, and mark it ready.
pub fn set_up_queue0(a: &mut Asm, size: u32, desc: u32, avail: u32, used: u32) {
    for (reg, value) in [
        (QUEUE_SEL, 0),
        (QUEUE_NUM, size),
        (QUEUE_DESC_LOW, desc),
        (QUEUE_DESC_HIGH, 0),
        (QUEUE_DRIVER_LOW, avail),
        (QUEUE_DRIVER_HIGH, 0),
        (QUEUE_DEVICE_LOW, used),
        (QUEUE_DEVICE_HIGH, 0),
        (QUEUE_READY, 1),
    ] {
        a.mov_mem_imm32(Mem::Abs(reg), value);
    }
}

/// Where a tiny guest keeps queue 0 of the device (a split queue) and the buffer it
/// offers, in guest-free memory (0x30000..0x9efff).
#[derive(Clone, Copy, Debug)]
pub struct GuestQueue {
    pub desc: u32,
    pub avail: u32,
    pub used: u32,
    /// Queue size the driver sets (entries).
    pub size: u32,
    pub buf: u32,
    pub buf_len: u32,
}

/// The layout the virtio tests and the rng bench use.
pub const GUEST_QUEUE: GuestQueue = GuestQueue {
    desc: 0x3_0000,
    avail: 0x3_0100,
    used: 0x3_1000,
    size: 8,
    buf: 0x3_2000,
    buf_len: 64,
};

fn reg(a: &mut Asm, addr: u32, value: u32) {
    a.mov_mem_imm32(Mem::Abs(addr), value); // mov dword [addr], value
}

/// Bring the device up as a driver does (reset, ACKNOWLEDGE, DRIVER, VERSION_1 only,
/// FEATURES_OK, queue 0 at `q`, DRIVER_OK) and write descriptor 0 (`q.buf`, device-
/// writable) with every available-ring entry pointing at it; nothing is made available
/// yet. `show(a, name, register)` is called at the checkpoints a test reports (magic,
/// device id, device features high, status after FEATURES_OK, queue size maximum, status
/// after DRIVER_OK); pass a no-op to report nothing.
pub fn drive_to_ready(a: &mut Asm, q: &GuestQueue, show: &mut dyn FnMut(&mut Asm, &str, u32)) {
    show(a, "magic=", MAGIC);
    show(a, "device=", DEVICE_ID);
    reg(a, STATUS, 0); // reset
    reg(a, STATUS, 1); // ACKNOWLEDGE
    reg(a, STATUS, 3); // DRIVER
    reg(a, DEVICE_FEATURES_SEL, 1);
    show(a, "features_hi=", DEVICE_FEATURES);
    reg(a, DRIVER_FEATURES_SEL, 1);
    reg(a, DRIVER_FEATURES, 1); // VERSION_1
    reg(a, DRIVER_FEATURES_SEL, 0);
    reg(a, DRIVER_FEATURES, 0);
    reg(a, STATUS, 0xb); // FEATURES_OK
    show(a, "status=", STATUS);
    reg(a, QUEUE_SEL, 0);
    show(a, "num_max=", QUEUE_NUM_MAX);
    reg(a, QUEUE_NUM, q.size);
    reg(a, QUEUE_DESC_LOW, q.desc);
    reg(a, QUEUE_DESC_HIGH, 0);
    reg(a, QUEUE_DRIVER_LOW, q.avail);
    reg(a, QUEUE_DRIVER_HIGH, 0);
    reg(a, QUEUE_DEVICE_LOW, q.used);
    reg(a, QUEUE_DEVICE_HIGH, 0);
    reg(a, QUEUE_READY, 1);
    reg(a, STATUS, 0xf); // DRIVER_OK
    show(a, "status=", STATUS);
    // Descriptor 0: addr buf (u64), len, flags WRITE, next 0.
    reg(a, q.desc, q.buf);
    reg(a, q.desc + 4, 0);
    reg(a, q.desc + 8, q.buf_len);
    reg(a, q.desc + 12, 2);
    // Available ring: flags 0, idx 0, every entry descriptor 0.
    reg(a, q.avail, 0);
    for entry in (0..q.size).step_by(2) {
        reg(a, q.avail + 4 + entry * 2, 0);
    }
}

/// `count` requests one after another (1..=65535): make descriptor 0 available again,
/// notify, and spin until the device has used it (interrupts are not needed: the guest
/// polls the used index). Clobbers eax, ecx, esi, edi.
pub fn request_loop(a: &mut Asm, q: &GuestQueue, count: u16) {
    a.xor_rr(Reg::Esi, Reg::Esi); // esi = index made available
    a.mov_imm(Reg::Ecx, u32::from(count));
    let top = a.here_label();
    a.inc(Reg::Esi);
    a.mov_rr(Reg::Edi, Reg::Esi);
    a.shl_imm(Reg::Edi, 16);
    a.mov_store(Mem::Abs(q.avail), Reg::Edi); // flags 0, idx esi
    reg(a, QUEUE_NOTIFY, 0);
    let wait = a.here_label();
    a.movzx_load16(Reg::Eax, Mem::Abs(q.used + 2)); // eax = used idx
    a.cmp_rr(Reg::Eax, Reg::Esi);
    a.j(Cond::Ne, wait);
    a.loop_to(top);
}

/// Emits a driver's bring-up of slot 0 with queue 0, without interrupts (virtio 1.2
/// §3.1.1 and §4.2.3): reset, ACKNOWLEDGE, DRIVER, only VERSION_1 accepted, FEATURES_OK,
/// queue 0 with `num` entries at `desc`/`avail`/`used` ([`set_up_queue0`]), DRIVER_OK. The
/// caller fills descriptors and rings and notifies.
pub fn bring_up_queue0(a: &mut Asm, num: u32, desc: u32, avail: u32, used: u32) {
    for (reg, value) in [
        (STATUS, 0), // reset
        (STATUS, 1), // ACKNOWLEDGE
        (STATUS, 3), // DRIVER
        (DRIVER_FEATURES_SEL, 1),
        (DRIVER_FEATURES, 1), // VERSION_1 (feature bit 32)
        (DRIVER_FEATURES_SEL, 0),
        (DRIVER_FEATURES, 0),
        (STATUS, 0xb), // FEATURES_OK
    ] {
        a.mov_mem_imm32(Mem::Abs(reg), value);
    }
    set_up_queue0(a, num, desc, avail, used);
    a.mov_mem_imm32(Mem::Abs(STATUS), 0xf); // DRIVER_OK
}
