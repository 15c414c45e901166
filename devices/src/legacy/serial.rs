// SPDX-License-Identifier: Apache-2.0
//! 16550A UART: vm-superio's register model behind our bus and interrupt traits.

use std::io::{self, Write};
use std::sync::Arc;

use vm_superio::Serial;

use crate::bus::BusDevice;
use crate::console_input::InputRoom;
use crate::interrupt::{InterruptLine, SuperioTrigger};

/// A 16550A UART whose transmitter writes to `out` and whose interrupt is `line`.
pub struct Serial16550 {
    uart: Serial<SuperioTrigger, InputRoom, Box<dyn Write + Send>>,
    room: InputRoom,
}

impl Serial16550 {
    pub fn new(line: Arc<dyn InterruptLine>, out: Box<dyn Write + Send>) -> Self {
        let room = InputRoom::default();
        Self {
            uart: Serial::with_events(SuperioTrigger(line), room.clone(), out),
            room,
        }
    }

    /// Says when the FIFO has room again after refusing input: when the guest has read it
    /// empty.
    pub fn input_room(&self) -> &InputRoom {
        &self.room
    }

    /// Room left in the receive FIFO.
    pub fn input_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Queue host input for the guest; returns how many bytes fit in the FIFO. Taking
    /// fewer than offered arms [`Serial16550::input_room`].
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        let took = if self.uart.fifo_capacity() == 0 {
            0
        } else {
            self.uart
                .enqueue_raw_bytes(bytes)
                .map_err(|e| io::Error::other(format!("serial input: {e:?}")))?
        };
        if took < bytes.len() {
            self.room.refused();
        }
        Ok(took)
    }
}

impl BusDevice for Serial16550 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // The 16550 has byte registers only; wider accesses read the register then zeros.
        data.fill(0);
        if let (Some(first), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.uart.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (Some(&value), Ok(off)) = (data.first(), u8::try_from(offset)) else {
            return;
        };
        if let Err(e) = self.uart.write(off, value) {
            // A broken stdout or interrupt line must not stop the guest.
            log::warn!("serial: write to register {off}: {e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::test_util::CountingLine;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const THR: u64 = 0;
    const IER: u64 = 1;
    const IIR: u64 = 2;
    const LSR: u64 = 5;

    #[test]
    fn transmits_to_output_and_raises_thr_empty_interrupt() {
        let line = Arc::new(CountingLine::default());
        let out = SharedBuf::default();
        let mut uart = Serial16550::new(line.clone(), Box::new(out.clone()));

        uart.write(IER, &[0x02]); // enable THR-empty interrupt
        let mut iir = [0u8];
        uart.read(IIR, &mut iir); // reading IIR acknowledges the pending THR-empty interrupt
        let raised = line.count();
        uart.write(THR, b"h");
        uart.write(THR, b"i");
        assert_eq!(&*out.0.lock().unwrap(), b"hi");
        assert!(line.count() > raised, "THR empty interrupt raised");

        let mut lsr = [0u8];
        uart.read(LSR, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60, "transmitter empty");
    }

    #[test]
    fn input_reaches_guest_with_data_ready_interrupt() {
        let line = Arc::new(CountingLine::default());
        let mut uart = Serial16550::new(line.clone(), Box::new(io::sink()));
        uart.write(IER, &[0x01]); // enable received-data interrupt
        assert_eq!(uart.enqueue_input(b"ok").unwrap(), 2);
        assert_eq!(line.count(), 1);

        let mut b = [0u8; 1];
        uart.read(IIR, &mut b);
        assert_eq!(b[0] & 0x0f, 0x04, "received data available");
        uart.read(LSR, &mut b);
        assert_eq!(b[0] & 1, 1, "data ready");
        uart.read(THR, &mut b);
        assert_eq!(b[0], b'o');
        uart.read(THR, &mut b);
        assert_eq!(b[0], b'k');
    }

    #[test]
    fn full_fifo_takes_nothing_and_odd_accesses_are_safe() {
        let line = Arc::new(CountingLine::default());
        let mut uart = Serial16550::new(line, Box::new(io::sink()));
        let big = vec![b'x'; 1000];
        let took = uart.enqueue_input(&big).unwrap();
        assert_eq!(took, 64);
        assert_eq!(uart.input_capacity(), 0);
        assert_eq!(uart.enqueue_input(b"y").unwrap(), 0);
        assert!(uart.input_room().is_waiting());

        let mut wide = [0xaau8; 4];
        uart.read(LSR, &mut wide);
        assert_eq!(&wide[1..], &[0, 0, 0]);
        uart.write(300, &[1]);
        uart.write(THR, &[]);
        let mut empty: [u8; 0] = [];
        uart.read(THR, &mut empty);
    }

    #[test]
    fn a_full_fifo_says_when_the_guest_has_read_it_empty() {
        use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
        let line = Arc::new(CountingLine::default());
        let mut uart = Serial16550::new(line, Box::new(io::sink()));
        let ev = EventFd::new(EFD_NONBLOCK).unwrap();
        uart.input_room().set_event(ev.try_clone().unwrap());
        assert_eq!(uart.enqueue_input(&[b'z'; 100]).unwrap(), 64);
        let mut b = [0u8; 1];
        for _ in 0..63 {
            uart.read(THR, &mut b);
        }
        assert!(ev.read().is_err(), "one byte left: no wake-up yet");
        uart.read(THR, &mut b);
        assert!(ev.read().is_ok(), "read empty: room again");
        assert_eq!(uart.enqueue_input(b"ab").unwrap(), 2);
        assert!(!uart.input_room().is_waiting(), "all taken: nothing armed");
    }
}
