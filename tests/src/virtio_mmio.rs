// SPDX-License-Identifier: Apache-2.0
//! The first virtio-mmio slot's registers as a tiny x86_64 guest reaches them
//! (arch-x86_64 puts slot 0 at 0xd000_0000; virtio 1.2 §4.2.2 gives the offsets).

use crate::{Asm, Mem};

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
