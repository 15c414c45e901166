// SPDX-License-Identifier: Apache-2.0
//! i8042 keyboard controller at ports 0x60 (data) and 0x64 (status/command): enough of the
//! controller for Linux's probe to succeed at once (controller self test, configuration
//! byte, keyboard interface test, keyboard reset/identify), no AUX (mouse) port, and the
//! CPU reset a PC does through it (command 0xFE, or clearing bit 0 of the output port),
//! which ends the VM.
//!
//! Written here rather than taken from vm-superio: its `I8042Device` models only the reset
//! command and reads back 0, so Linux spends seconds in probe timeouts (3.7 s measured in
//! a nested guest) before giving up on the controller.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::bus::BusDevice;
use crate::interrupt::InterruptLine;
use crate::vm_control::{VmControl, VmExitReason};

/// Offsets from the device's base port 0x60.
const DATA: u64 = 0;
const COMMAND: u64 = 4;

const STATUS_OBF: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_CMD: u8 = 0x08;
/// Set when the keyboard is NOT inhibited by the keylock switch.
const STATUS_UNLOCKED: u8 = 0x10;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_DISABLE_AUX: u8 = 0xa7;
const CMD_ENABLE_AUX: u8 = 0xa8;
const CMD_TEST_AUX: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_KBD: u8 = 0xab;
const CMD_DISABLE_KBD: u8 = 0xad;
const CMD_ENABLE_KBD: u8 = 0xae;
const CMD_READ_INPUT_PORT: u8 = 0xc0;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_WRITE_KBD_BUFFER: u8 = 0xd2;
const CMD_WRITE_AUX_BUFFER: u8 = 0xd3;
const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_RESET_CPU: u8 = 0xfe;

const CTR_KBD_INT: u8 = 0x01;
const CTR_SYS: u8 = 0x04;
const CTR_KBD_DISABLED: u8 = 0x10;
const CTR_AUX_DISABLED: u8 = 0x20;
const CTR_XLATE: u8 = 0x40;

const SELF_TEST_OK: u8 = 0x55;
const INTERFACE_OK: u8 = 0x00;
/// Answer to the AUX interface test: "clock line stuck low", i.e. no AUX port.
const AUX_ABSENT: u8 = 0x01;
const OUTPUT_PORT_RESET_LINE: u8 = 0x01;
const OUTPUT_PORT_DEFAULT: u8 = 0x01;

const KBD_ACK: u8 = 0xfa;
const KBD_SELF_TEST_PASSED: u8 = 0xaa;
const KBD_CMD_RESET: u8 = 0xff;
const KBD_CMD_IDENTIFY: u8 = 0xf2;
/// An MF2 keyboard's identify answer.
const KBD_ID: [u8; 2] = [0xab, 0x83];

/// What the next byte written to the data port is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataTarget {
    Keyboard,
    Ctr,
    OutputPort,
    KbdBuffer,
    /// "Write AUX output buffer" (0xd3), Linux's AUX loopback probe.
    AuxLoopback,
    Discard,
}

/// The i8042 controller with an always-present keyboard and no AUX port.
pub struct I8042 {
    control: Arc<VmControl>,
    irq: Option<Arc<dyn InterruptLine>>,
    ctr: u8,
    output: VecDeque<u8>,
    last_was_command: bool,
    data_target: DataTarget,
}

impl I8042 {
    /// A controller whose reset requests go to `control` and whose keyboard interrupt
    /// (IRQ 1 on a PC) is `irq`.
    pub fn new(control: Arc<VmControl>, irq: Option<Arc<dyn InterruptLine>>) -> Self {
        Self {
            control,
            irq,
            ctr: CTR_KBD_INT | CTR_SYS | CTR_AUX_DISABLED | CTR_XLATE,
            output: VecDeque::new(),
            last_was_command: false,
            data_target: DataTarget::Keyboard,
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_SYS | STATUS_UNLOCKED;
        if !self.output.is_empty() {
            s |= STATUS_OBF;
        }
        if self.last_was_command {
            s |= STATUS_CMD;
        }
        s
    }

    /// Queue bytes for the guest to read from the data port, raising IRQ 1 when the
    /// configuration byte enables it.
    fn respond(&mut self, bytes: &[u8]) {
        // A real controller has a one-byte buffer; keep a few for multi-byte answers.
        if self.output.len() + bytes.len() > 16 {
            return;
        }
        self.output.extend(bytes);
        if self.ctr & CTR_KBD_INT != 0 {
            if let Some(irq) = &self.irq {
                if let Err(e) = irq.trigger() {
                    log::warn!("i8042: raising IRQ 1: {e}");
                }
            }
        }
    }

    fn reset(&self, why: &str) {
        log::debug!("i8042: {why}: CPU reset");
        self.control.request_exit(VmExitReason::Reset);
    }

    fn command(&mut self, cmd: u8) {
        self.data_target = DataTarget::Keyboard;
        match cmd {
            CMD_READ_CTR => {
                let ctr = self.ctr;
                self.respond(&[ctr]);
            }
            CMD_WRITE_CTR => self.data_target = DataTarget::Ctr,
            CMD_DISABLE_AUX => self.ctr |= CTR_AUX_DISABLED,
            CMD_ENABLE_AUX => self.ctr &= !CTR_AUX_DISABLED,
            CMD_TEST_AUX => self.respond(&[AUX_ABSENT]),
            CMD_SELF_TEST => self.respond(&[SELF_TEST_OK]),
            CMD_TEST_KBD => self.respond(&[INTERFACE_OK]),
            CMD_DISABLE_KBD => self.ctr |= CTR_KBD_DISABLED,
            CMD_ENABLE_KBD => self.ctr &= !CTR_KBD_DISABLED,
            CMD_READ_INPUT_PORT => self.respond(&[0]),
            CMD_READ_OUTPUT_PORT => self.respond(&[OUTPUT_PORT_DEFAULT]),
            CMD_WRITE_OUTPUT_PORT => self.data_target = DataTarget::OutputPort,
            CMD_WRITE_KBD_BUFFER => self.data_target = DataTarget::KbdBuffer,
            CMD_WRITE_AUX_BUFFER => self.data_target = DataTarget::AuxLoopback,
            CMD_WRITE_AUX => self.data_target = DataTarget::Discard,
            // 0xf0..=0xff pulse output-port lines low for 6 µs; bit 0 is the reset line.
            CMD_RESET_CPU => self.reset("command 0xfe"),
            0xf0..=0xff if cmd & OUTPUT_PORT_RESET_LINE == 0 => self.reset("output pulse"),
            _ => log::debug!("i8042: ignoring command {cmd:#x}"),
        }
    }

    fn data(&mut self, value: u8) {
        let target = std::mem::replace(&mut self.data_target, DataTarget::Keyboard);
        match target {
            DataTarget::Ctr => self.ctr = value,
            DataTarget::OutputPort if value & OUTPUT_PORT_RESET_LINE == 0 => {
                self.reset("output port write")
            }
            DataTarget::OutputPort | DataTarget::Discard => {}
            DataTarget::KbdBuffer => self.respond(&[value]),
            // The byte comes back without the AUX-data status bit: a controller without
            // an AUX port. Linux sees that at once instead of waiting for a timeout.
            DataTarget::AuxLoopback => self.respond(&[value]),
            DataTarget::Keyboard => match value {
                KBD_CMD_RESET => self.respond(&[KBD_ACK, KBD_SELF_TEST_PASSED]),
                KBD_CMD_IDENTIFY => self.respond(&[KBD_ACK, KBD_ID[0], KBD_ID[1]]),
                // Set LEDs, typematic rate, scan set, enable/disable scanning…: all ACKed.
                _ => self.respond(&[KBD_ACK]),
            },
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(first) = data.first_mut() else {
            return;
        };
        *first = match offset {
            DATA => self.output.pop_front().unwrap_or(0),
            COMMAND => self.status(),
            _ => 0xff,
        };
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        match offset {
            DATA => {
                self.last_was_command = false;
                self.data(value);
            }
            COMMAND => {
                self.last_was_command = true;
                self.command(value);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::CountingLine;

    fn kbd() -> (I8042, Arc<VmControl>, Arc<CountingLine>) {
        let control = Arc::new(VmControl::new());
        let line = Arc::new(CountingLine::default());
        (
            I8042::new(control.clone(), Some(line.clone())),
            control,
            line,
        )
    }

    fn read(k: &mut I8042, port: u64) -> u8 {
        let mut b = [0u8];
        k.read(port, &mut b);
        b[0]
    }

    #[test]
    fn reset_command_and_output_port_reset_the_cpu() {
        let (mut k, control, _) = kbd();
        k.write(DATA, &[0xfe]);
        k.write(COMMAND, &[CMD_SELF_TEST]);
        assert_eq!(control.exit_reason(), None);
        k.write(COMMAND, &[CMD_RESET_CPU]);
        assert_eq!(control.exit_reason(), Some(VmExitReason::Reset));

        let (mut k, control, _) = kbd();
        k.write(COMMAND, &[CMD_WRITE_OUTPUT_PORT]);
        k.write(DATA, &[0x03]);
        assert_eq!(control.exit_reason(), None, "reset line high");
        k.write(COMMAND, &[CMD_WRITE_OUTPUT_PORT]);
        k.write(DATA, &[0x02]);
        assert_eq!(control.exit_reason(), Some(VmExitReason::Reset));
    }

    #[test]
    fn linux_probe_sequence() {
        let (mut k, _, line) = kbd();
        assert_eq!(read(&mut k, COMMAND) & STATUS_OBF, 0, "nothing to read");
        k.write(COMMAND, &[CMD_READ_CTR]);
        assert_eq!(
            read(&mut k, COMMAND) & (STATUS_OBF | STATUS_CMD),
            STATUS_OBF | STATUS_CMD
        );
        let ctr = read(&mut k, DATA);
        assert_eq!(ctr & CTR_XLATE, CTR_XLATE);
        assert_eq!(read(&mut k, COMMAND) & STATUS_OBF, 0);

        k.write(COMMAND, &[CMD_WRITE_CTR]);
        k.write(DATA, &[0x00]); // interrupts off
        k.write(COMMAND, &[CMD_READ_CTR]);
        assert_eq!(read(&mut k, DATA), 0x00);

        k.write(COMMAND, &[CMD_SELF_TEST]);
        assert_eq!(read(&mut k, DATA), SELF_TEST_OK);
        k.write(COMMAND, &[CMD_TEST_KBD]);
        assert_eq!(read(&mut k, DATA), INTERFACE_OK);
        k.write(COMMAND, &[CMD_TEST_AUX]);
        assert_eq!(read(&mut k, DATA), AUX_ABSENT);
        let raised_without_int = line.count();
        assert_eq!(
            raised_without_int, 1,
            "only the first CTR read, before interrupts went off"
        );

        k.write(COMMAND, &[CMD_WRITE_CTR]);
        k.write(DATA, &[CTR_KBD_INT | CTR_XLATE]);
        k.write(DATA, &[KBD_CMD_RESET]);
        assert_eq!(read(&mut k, DATA), KBD_ACK);
        assert_eq!(read(&mut k, DATA), KBD_SELF_TEST_PASSED);
        k.write(DATA, &[KBD_CMD_IDENTIFY]);
        assert_eq!(
            [read(&mut k, DATA), read(&mut k, DATA), read(&mut k, DATA)],
            [KBD_ACK, 0xab, 0x83]
        );
        k.write(DATA, &[0xed]); // set LEDs
        assert_eq!(read(&mut k, DATA), KBD_ACK);
        assert!(line.count() > raised_without_int);
        assert_eq!(read(&mut k, DATA), 0, "empty buffer reads 0");
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let (mut k, control, _) = kbd();
        k.write(COMMAND, &[CMD_WRITE_AUX]);
        k.write(DATA, &[0xf4]);
        assert_eq!(read(&mut k, COMMAND) & STATUS_OBF, 0, "no AUX answer");
        k.write(COMMAND, &[CMD_WRITE_AUX_BUFFER]);
        k.write(DATA, &[0x5a]);
        let status = read(&mut k, COMMAND);
        assert_eq!(
            status & (STATUS_OBF | 0x20),
            STATUS_OBF,
            "echo, not AUX data"
        );
        assert_ne!(status & STATUS_UNLOCKED, 0, "keylock off");
        assert_eq!(read(&mut k, DATA), 0x5a);
        for _ in 0..40 {
            k.write(DATA, &[0xf4]); // more answers than the buffer keeps
        }
        let mut wide = [0xffu8; 4];
        k.read(DATA, &mut wide);
        assert_eq!(&wide[1..], &[0, 0, 0]);
        k.write(2, &[0xfe]);
        k.write(COMMAND, &[]);
        k.write(COMMAND, &[0x12]);
        assert_eq!(control.exit_reason(), None);
    }
}
