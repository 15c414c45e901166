// SPDX-License-Identifier: Apache-2.0
//! Legacy platform devices, wrapped from vm-superio where it has them.

pub mod acpi_ged;
pub mod acpi_pm;
pub mod cmos;
pub mod i8042;
pub mod pl061;
pub mod pvpanic;
pub mod reset_control;
pub mod rtc;
pub mod serial;

pub use acpi_ged::{AcpiGed, AcpiGedPowerButton};
pub use acpi_pm::AcpiPm;
pub use cmos::{Cmos, CmosMemory};
pub use i8042::I8042;
pub use pl061::{Pl061, Pl061PowerKey};
pub use pvpanic::PvPanic;
pub use reset_control::ResetControl;
pub use rtc::RtcPl031;
pub use serial::Serial16550;
