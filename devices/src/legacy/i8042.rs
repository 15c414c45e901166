//! i8042 keyboard controller, modelled only as far as the CPU-reset command (0xFE written
//! to the command port): vm-superio's `I8042Device`, with the reset routed to [`VmControl`].

use std::io;
use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use crate::bus::BusDevice;
use crate::vm_control::{VmControl, VmExitReason};

/// Requests a VM reset when triggered.
pub struct ResetRequest(Arc<VmControl>);

impl Trigger for ResetRequest {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        log::debug!("i8042: CPU reset command");
        self.0.request_exit(VmExitReason::Reset);
        Ok(())
    }
}

/// The i8042 at ports 0x60 (data) and 0x64 (command/status); the bus maps both to one
/// device whose offset 4 is the command port, so place it at 0x60 with length 5.
pub struct I8042 {
    dev: I8042Device<ResetRequest>,
}

impl I8042 {
    pub fn new(control: Arc<VmControl>) -> Self {
        Self {
            dev: I8042Device::new(ResetRequest(control)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.dev.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(&value), Ok(off)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.dev.write(off, value) {
                log::warn!("i8042: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_reset_and_nothing_else_does() {
        let control = Arc::new(VmControl::new());
        let mut kbd = I8042::new(control.clone());
        kbd.write(0, &[0xfe]);
        kbd.write(4, &[0xaa]);
        assert_eq!(control.exit_reason(), None);
        let mut b = [0xffu8; 2];
        kbd.read(4, &mut b);
        assert_eq!(b, [0, 0]);
        kbd.write(4, &[0xfe]);
        assert_eq!(control.exit_reason(), Some(VmExitReason::Reset));
    }
}
