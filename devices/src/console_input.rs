// SPDX-License-Identifier: Apache-2.0
//! Where the VMM's console input goes: the UART's receive FIFO, or a console the backend
//! serves itself (the s390x SCLP VT220 console), and how a full console says it has room
//! again ([`InputRoom`]), so the VMM stops reading stdin while the guest reads nothing
//! instead of dropping input or retrying on a timer.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use crate::legacy::Serial16550;

/// A console that takes host input for the guest.
pub trait ConsoleInput: Send + Sync {
    /// Queue `bytes` for the guest; returns how many it took. Taking fewer than offered
    /// (0: full) arms the room notifier: the `EventFd` given to [`ConsoleInput::notify_room`]
    /// is written once when the guest has made room.
    fn enqueue_input(&self, bytes: &[u8]) -> io::Result<usize>;

    /// Where to say "room again" after input was refused (one write per refusal).
    fn notify_room(&self, event: EventFd);
}

/// The "room again" notifier a console device keeps: armed when the device refuses input,
/// fired (one `EventFd` write) when the guest takes input out. Both happen under the
/// device's lock, so a refusal is never missed: the VMM reads the `EventFd`, offers input,
/// and either the device takes it or the next write wakes the VMM.
#[derive(Clone, Default)]
pub struct InputRoom(Arc<RoomState>);

impl std::fmt::Debug for InputRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputRoom")
            .field("waiting", &self.is_waiting())
            .finish()
    }
}

#[derive(Default)]
struct RoomState {
    event: Mutex<Option<EventFd>>,
    waiting: AtomicBool,
}

impl InputRoom {
    /// Write `event` when room appears after a refusal.
    pub fn set_event(&self, event: EventFd) {
        *self.0.event.lock().unwrap_or_else(|e| e.into_inner()) = Some(event);
    }

    /// The device refused (some of) the input it was offered.
    pub fn refused(&self) {
        self.0.waiting.store(true, Ordering::SeqCst);
    }

    /// The guest took input out: tell the VMM, if it is waiting for room.
    pub fn freed(&self) {
        if self.0.waiting.swap(false, Ordering::SeqCst) {
            if let Some(e) = &*self.0.event.lock().unwrap_or_else(|e| e.into_inner()) {
                let _ = e.write(1);
            }
        }
    }

    /// Whether a refusal waits for room (for tests and logs).
    pub fn is_waiting(&self) -> bool {
        self.0.waiting.load(Ordering::SeqCst)
    }
}

/// vm-superio calls `in_buffer_empty` when the guest has read the last byte of the FIFO.
impl vm_superio::serial::SerialEvents for InputRoom {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        self.freed();
    }
}

impl ConsoleInput for Mutex<Serial16550> {
    fn enqueue_input(&self, bytes: &[u8]) -> io::Result<usize> {
        self.lock()
            .unwrap_or_else(|e| e.into_inner())
            .enqueue_input(bytes)
    }

    fn notify_room(&self, event: EventFd) {
        self.lock()
            .unwrap_or_else(|e| e.into_inner())
            .input_room()
            .set_event(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[test]
    fn fires_once_per_refusal_and_only_after_one() {
        let room = InputRoom::default();
        let ev = EventFd::new(EFD_NONBLOCK).unwrap();
        room.set_event(ev.try_clone().unwrap());
        room.freed();
        assert!(ev.read().is_err(), "nothing was refused: no wake-up");
        room.refused();
        assert!(room.is_waiting());
        room.freed();
        assert!(
            !room.is_waiting(),
            "disarmed by the write: a second free writes nothing"
        );
        room.freed();
        // Only readability is checked: qemu-user on big-endian hosts byte-swaps eventfd
        // counts, so the value read is not comparable there.
        assert!(ev.read().is_ok(), "room again");
        assert!(ev.read().is_err());
    }
}
