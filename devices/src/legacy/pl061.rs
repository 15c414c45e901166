// SPDX-License-Identifier: Apache-2.0
//! ARM PL061 GPIO controller (ARM DDI 0190B), as the arm64 guest's power key.
//!
//! The device tree wires line [`POWER_KEY_LINE`] to a `gpio-keys` node reporting `KEY_POWER`,
//! the same arrangement as QEMU's `virt` machine, so a stock kernel (`gpio-pl061` built in,
//! `gpio_keys` + `evdev` modules) turns a press into an input event that acpid, systemd-logind
//! or a busybox `acpid` answers with a clean poweroff. [`Pl061PowerKey`] is the VMM's side of
//! it ([`crate::PowerButton`]).
//!
//! No rust-vmm crate models the PL061 (vm-superio has the 16550, i8042 and PL031 only), hence
//! this one. Eight lines; registers are 8 bits wide in 32-bit slots, accessed with byte or
//! word loads (Linux's driver uses `readb`/`writeb`, the AMBA bus `readl` for the ids). The
//! interrupt output is level-sensitive in hardware; our line is an irqfd that pulses, so the
//! model pulses whenever the masked status becomes non-zero, and again after a guest write
//! (clear, mask) that leaves an interrupt pending.

use std::sync::{Arc, Mutex};

use crate::bus::BusDevice;
use crate::interrupt::InterruptLine;
use crate::PowerButton;

/// Size of the PL061's register window (one 4 KiB AMBA slot).
pub const GPIO_REGISTER_WINDOW: u64 = 0x1000;
/// The GPIO line the guest's power key is on (as on QEMU `virt`).
pub const POWER_KEY_LINE: u8 = 3;
/// Linux input event code of the power key (`KEY_POWER`).
pub const KEY_POWER: u32 = 116;

const GPIODATA_END: u64 = 0x400;
const GPIODIR: u64 = 0x400;
const GPIOIS: u64 = 0x404;
const GPIOIBE: u64 = 0x408;
const GPIOIEV: u64 = 0x40c;
const GPIOIE: u64 = 0x410;
const GPIORIS: u64 = 0x414;
const GPIOMIS: u64 = 0x418;
const GPIOIC: u64 = 0x41c;
const GPIOAFSEL: u64 = 0x420;
const ID_BASE: u64 = 0xfe0;
/// GPIOPeriphID0..3 (part 0x061, designer ARM, revision 0) and GPIOPCellID0..3.
const ID: [u8; 8] = [0x61, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// The PL061 register state.
pub struct Pl061 {
    /// Levels the guest drives on lines configured as outputs.
    out: u8,
    /// Levels the host drives on the input lines.
    input: u8,
    dir: u8,
    is: u8,
    ibe: u8,
    iev: u8,
    ie: u8,
    ris: u8,
    afsel: u8,
    line: Arc<dyn InterruptLine>,
}

impl Pl061 {
    /// A PL061 with every line an input at level 0, interrupts masked.
    pub fn new(line: Arc<dyn InterruptLine>) -> Self {
        Self {
            out: 0,
            input: 0,
            dir: 0,
            is: 0,
            ibe: 0,
            iev: 0,
            ie: 0,
            ris: 0,
            afsel: 0,
            line,
        }
    }

    /// The levels of all eight lines: outputs as the guest drives them, inputs as the host.
    fn levels(&self) -> u8 {
        (self.out & self.dir) | (self.input & !self.dir)
    }

    fn mis(&self) -> u8 {
        self.ris & self.ie
    }

    /// Latch level-sensitive interrupts from the current levels.
    fn latch_levels(&mut self) {
        let levels = self.levels();
        // A level interrupt is active while the line is at the level IEV selects.
        let active = !(levels ^ self.iev) & self.is;
        self.ris = (self.ris & !self.is) | active;
    }

    /// Recompute the status after a change; pulse the line if `was` was clear and an
    /// interrupt is now pending, or if `repulse` and one is still pending.
    fn update(&mut self, was: u8, repulse: bool) {
        self.latch_levels();
        let now = self.mis();
        if now != 0 && (was == 0 || repulse) {
            if let Err(e) = self.line.trigger() {
                log::warn!("pl061: raising the interrupt failed: {e}");
            }
        }
    }

    /// The host sets input line `pin` to `high`. Lines the guest made outputs ignore it.
    pub fn set_input(&mut self, pin: u8, high: bool) {
        if pin >= 8 {
            return;
        }
        let bit = 1u8 << pin;
        let was_mis = self.mis();
        let old = self.levels();
        if high {
            self.input |= bit;
        } else {
            self.input &= !bit;
        }
        let changed = (old ^ self.levels()) & bit;
        if changed != 0 && self.is & bit == 0 {
            let rising = self.levels() & bit != 0;
            let wanted = self.ibe & bit != 0 || (self.iev & bit != 0) == rising;
            if wanted {
                self.ris |= bit;
            }
        }
        self.update(was_mis, false);
    }

    fn register(&self, offset: u64) -> Option<u8> {
        Some(match offset {
            o if o < GPIODATA_END => {
                // Address bits [9:2] mask which lines a data access sees.
                let mask = (o >> 2) as u8;
                self.levels() & mask
            }
            GPIODIR => self.dir,
            GPIOIS => self.is,
            GPIOIBE => self.ibe,
            GPIOIEV => self.iev,
            GPIOIE => self.ie,
            GPIORIS => self.ris,
            GPIOMIS => self.mis(),
            GPIOIC => 0,
            GPIOAFSEL => self.afsel,
            o if (ID_BASE..ID_BASE + 32).contains(&o) => ID[((o - ID_BASE) / 4) as usize],
            _ => return None,
        })
    }

    fn set_register(&mut self, offset: u64, value: u8) -> bool {
        let was = self.mis();
        match offset {
            o if o < GPIODATA_END => {
                let mask = (o >> 2) as u8 & self.dir;
                self.out = (self.out & !mask) | (value & mask);
            }
            GPIODIR => self.dir = value,
            GPIOIS => self.is = value,
            GPIOIBE => self.ibe = value,
            GPIOIEV => self.iev = value,
            GPIOIE => self.ie = value,
            GPIOIC => self.ris &= !(value & !self.is),
            GPIOAFSEL => self.afsel = value,
            _ => return false,
        }
        self.update(was, matches!(offset, GPIOIC | GPIOIE));
        true
    }
}

/// Registers sit at 4-byte-aligned offsets; 1-, 2- and 4-byte accesses reach them.
fn aligned(offset: u64, len: usize) -> bool {
    matches!(len, 1 | 2 | 4) && offset % 4 == 0 && offset < GPIO_REGISTER_WINDOW
}

impl BusDevice for Pl061 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match aligned(offset, data.len())
            .then(|| self.register(offset))
            .flatten()
        {
            Some(value) => data[0] = value,
            None => log::debug!("pl061: {}-byte read at {offset:#x} ignored", data.len()),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if !aligned(offset, data.len()) || !self.set_register(offset, data[0]) {
            log::debug!("pl061: {}-byte write at {offset:#x} ignored", data.len());
        }
    }
}

/// The power key on line [`POWER_KEY_LINE`] of a PL061 the VMM placed on its bus.
pub struct Pl061PowerKey(pub Arc<Mutex<Pl061>>);

impl Pl061PowerKey {
    fn set(&self, pressed: bool) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_input(POWER_KEY_LINE, pressed);
    }
}

impl PowerButton for Pl061PowerKey {
    fn press(&self) {
        self.set(true);
    }

    fn release(&self) {
        self.set(false);
    }

    fn describe(&self) -> &'static str {
        "GPIO power key (PL061 line 3)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::CountingLine;

    fn gpio() -> (Pl061, Arc<CountingLine>) {
        let line = Arc::new(CountingLine::default());
        (Pl061::new(line.clone()), line)
    }

    fn read(g: &mut Pl061, offset: u64) -> u8 {
        let mut b = [0xaau8; 1];
        g.read(offset, &mut b);
        b[0]
    }

    fn read32(g: &mut Pl061, offset: u64) -> u32 {
        let mut b = [0xaau8; 4];
        g.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// What Linux's gpio-keys asks of the PL061 for a key on line 3: an input with an
    /// interrupt on both edges.
    fn setup_both_edges(g: &mut Pl061) {
        g.write(GPIODIR, &[0]);
        g.write(GPIOIS, &[0]);
        g.write(GPIOIBE, &[1 << POWER_KEY_LINE]);
        g.write(GPIOIE, &[1 << POWER_KEY_LINE]);
    }

    #[test]
    fn primecell_ids_read_as_words() {
        let (mut g, _) = gpio();
        let ids: Vec<u32> = (0..8).map(|i| read32(&mut g, 0xfe0 + 4 * i)).collect();
        assert_eq!(ids, [0x61, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
    }

    #[test]
    fn power_key_press_and_release_interrupt_on_both_edges() {
        let (mut g, line) = gpio();
        setup_both_edges(&mut g);
        g.set_input(POWER_KEY_LINE, true);
        assert_eq!(line.count(), 1);
        assert_eq!(read(&mut g, GPIOMIS), 0x08);
        // The data register, masked by address bits [9:2]: line 3 is address bit 5.
        assert_eq!(read(&mut g, 0x08 << 2), 0x08, "pressed reads high");
        assert_eq!(read(&mut g, 0x04 << 2), 0, "other lines masked off");
        assert_eq!(read(&mut g, 0x3fc), 0x08);
        g.write(GPIOIC, &[0x08]);
        assert_eq!(read(&mut g, GPIOMIS), 0);
        assert_eq!(line.count(), 1, "nothing left pending: no new pulse");
        g.set_input(POWER_KEY_LINE, false);
        assert_eq!(line.count(), 2);
        assert_eq!(read(&mut g, GPIORIS), 0x08);
        assert_eq!(read(&mut g, 0x3fc), 0);
    }

    #[test]
    fn single_edge_and_masking() {
        let (mut g, line) = gpio();
        g.write(GPIOIEV, &[0x08]); // rising edge only
        g.set_input(3, true);
        assert_eq!(line.count(), 0, "masked");
        assert_eq!(read(&mut g, GPIORIS), 0x08);
        g.write(GPIOIE, &[0x08]);
        assert_eq!(
            line.count(),
            1,
            "unmasking a pending interrupt raises the line"
        );
        g.write(GPIOIC, &[0x08]);
        g.set_input(3, false);
        assert_eq!(read(&mut g, GPIORIS), 0, "falling edge not selected");
        assert_eq!(line.count(), 1);
    }

    #[test]
    fn level_interrupts_stay_pending_while_the_level_holds() {
        let (mut g, line) = gpio();
        g.write(GPIOIS, &[0x08]);
        g.write(GPIOIEV, &[0x08]); // high level
        g.write(GPIOIE, &[0x08]);
        assert_eq!(line.count(), 0);
        g.set_input(3, true);
        assert_eq!(line.count(), 1);
        g.write(GPIOIC, &[0x08]);
        assert_eq!(
            read(&mut g, GPIOMIS),
            0x08,
            "clear has no effect on a level interrupt"
        );
        assert_eq!(
            line.count(),
            2,
            "still pending after the clear: pulsed again"
        );
        g.set_input(3, false);
        assert_eq!(read(&mut g, GPIOMIS), 0);
    }

    #[test]
    fn outputs_are_driven_by_the_guest_and_ignore_the_host() {
        let (mut g, _) = gpio();
        g.write(GPIODIR, &[0x01]);
        g.write(0x3fc, &[0xff]);
        assert_eq!(
            read(&mut g, 0x3fc),
            0x01,
            "only the output line takes the write"
        );
        g.set_input(0, false);
        assert_eq!(read(&mut g, 0x3fc), 0x01);
        g.write(0x02 << 2, &[0x00]); // mask excludes line 0
        assert_eq!(read(&mut g, 0x3fc), 0x01);
        g.write(0x01 << 2, &[0x00]);
        assert_eq!(read(&mut g, 0x3fc), 0x00);
    }

    #[test]
    fn power_key_trait_drives_line_3() {
        let (g, line) = gpio();
        let g = Arc::new(Mutex::new(g));
        setup_both_edges(&mut g.lock().unwrap());
        let key = Pl061PowerKey(g.clone());
        key.press();
        assert_eq!(line.count(), 1);
        assert_eq!(read(&mut g.lock().unwrap(), 0x3fc), 0x08);
        key.release();
        assert_eq!(read(&mut g.lock().unwrap(), 0x3fc), 0x00);
        assert!(key.describe().contains("PL061"));
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let (mut g, line) = gpio();
        let mut b = [0xaau8; 3];
        g.read(GPIODIR, &mut b);
        assert_eq!(b, [0; 3]);
        g.write(GPIODIR + 1, &[0xff]);
        g.write(0x500, &[0xff]);
        g.write(u64::MAX - 3, &[0xff; 4]);
        g.set_input(9, true);
        assert_eq!(read(&mut g, GPIODIR), 0);
        assert_eq!(read(&mut g, 0x800), 0);
        assert_eq!(line.count(), 0);
    }
}
