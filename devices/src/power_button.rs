// SPDX-License-Identifier: Apache-2.0
//! The button the VMM presses to ask the guest to shut down.

/// A power button wired to the guest (arm64: a GPIO key on a PL061). On SIGTERM the VMM
/// presses it and gives the guest a bounded time to power off by itself.
pub trait PowerButton: Send + Sync {
    /// Press the button (the guest sees the key go down).
    fn press(&self);
    /// Let go of it.
    fn release(&self);
    /// What the button is, for the log.
    fn describe(&self) -> &'static str;
}
