// SPDX-License-Identifier: Apache-2.0
//! The DSDT's power button: a Generic Event Device (`ACPI0013`, what a hardware-reduced
//! machine signals events through) and the `PNP0C0C` power button it notifies.
//!
//! ```text
//! Device (\_SB.GED_) {
//!     Name (_HID, "ACPI0013")
//!     Name (_UID, 0)
//!     Name (_CRS, ResourceTemplate () { Interrupt (, Edge, ActiveHigh, Exclusive) { gsi } })
//!     OperationRegion (GDST, SystemMemory, base, 4)
//!     Field (GDST, DWordAcc, NoLock, WriteAsZeros) { GDAT, 32 }
//!     Method (_EVT, 1, Serialized) {        // Linux's evged calls it with the GSI
//!         Local0 = GDAT                      // read-to-clear: devices::legacy::acpi_ged
//!         If ((Local0 & 1) == 1) { Notify (\_SB.PWRB, 0x80) }
//!     }
//! }
//! Device (\_SB.PWRB) { Name (_HID, EisaId ("PNP0C0C")) Name (_UID, 0) }
//! ```
//! Linux's ACPI button driver reports the notification as `KEY_POWER`.

use acpi_tables::aml::{
    And, Device, EISAName, Equal, Field, FieldAccessType, FieldEntry, FieldLockRule,
    FieldUpdateRule, If, Interrupt, Local, Method, Name, Notify, OpRegion, OpRegionSpace, Path,
    ResourceTemplate, Store, ZERO,
};
use devices::legacy::acpi_ged::{EVENT_POWER_BUTTON, GED_WINDOW};

use super::aml_bytes;

/// ACPI notification value "the button was pressed" (ACPI 6.5 §5.6.6, table 5.180).
const NOTIFY_BUTTON_PRESSED: u8 = 0x80;

/// A GED whose event register sits at `base` and whose interrupt is `gsi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ged {
    pub base: u32,
    pub gsi: u32,
}

impl Ged {
    /// The AML of `\_SB_.GED_` and `\_SB_.PWRB`.
    pub fn aml(&self) -> Vec<u8> {
        let irq = Interrupt::new(true, true, false, false, self.gsi);
        let crs = ResourceTemplate::new(vec![&irq]);
        let (base, len) = (self.base, GED_WINDOW as u32);
        let region = OpRegion::new(Path::new("GDST"), OpRegionSpace::SystemMemory, &base, &len);
        let field = Field::new(
            Path::new("GDST"),
            FieldAccessType::DWord,
            FieldLockRule::NoLock,
            FieldUpdateRule::WriteAsZeroes,
            vec![FieldEntry::Named(*b"GDAT", 32)],
        );
        let gdat = Path::new("GDAT");
        let read = Store::new(&Local(0), &gdat);
        let power_bit = EVENT_POWER_BUTTON;
        let masked = And::new(&ZERO, &Local(0), &power_bit);
        let pressed = Equal::new(&masked, &power_bit);
        let pwrb = Path::new("\\_SB_.PWRB");
        let notify = Notify::new(&pwrb, &NOTIFY_BUTTON_PRESSED);
        let on_power = If::new(&pressed, vec![&notify]);
        let evt = Method::new(Path::new("_EVT"), 1, true, vec![&read, &on_power]);
        let (hid, uid, crs) = (
            Name::new(Path::new("_HID"), &"ACPI0013"),
            Name::new(Path::new("_UID"), &0u8),
            Name::new(Path::new("_CRS"), &crs),
        );
        let ged = Device::new(
            Path::new("\\_SB_.GED_"),
            vec![&hid, &uid, &crs, &region, &field, &evt],
        );

        let button_hid = EISAName::new("PNP0C0C");
        let (hid, uid) = (
            Name::new(Path::new("_HID"), &button_hid),
            Name::new(Path::new("_UID"), &0u8),
        );
        let button = Device::new(Path::new("\\_SB_.PWRB"), vec![&hid, &uid]);

        let mut bytes = aml_bytes(&ged);
        bytes.extend_from_slice(&aml_bytes(&button));
        bytes
    }
}
