// SPDX-License-Identifier: Apache-2.0
//! Devices of a Polyvisor guest: the bus that routes port and MMIO accesses, the interrupt
//! line trait that backends implement, and the emulated hardware itself.
//!
//! Nothing here knows which architecture it runs on or which hypervisor backs it: devices
//! see byte offsets into their own register window and an [`InterruptLine`] to raise.
#![forbid(unsafe_code)]

pub mod boot_timer;
pub mod bus;
pub mod console_input;
pub mod css;
pub mod interrupt;
pub mod legacy;
pub mod log_limit;
pub mod power_button;
pub mod sclp;
pub mod virtio;
pub mod vm_control;

pub use bus::{Bus, BusDevice, BusError, BusRange};
pub use console_input::ConsoleInput;
pub use interrupt::InterruptLine;
pub use power_button::PowerButton;
pub use vm_control::{VmControl, VmExitReason};
