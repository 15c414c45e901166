// SPDX-License-Identifier: Apache-2.0
//! Polyvisor's benchmarks (`cross/bench`): start-up, exit round trips, resident memory and
//! teardown of polyvisor, each next to two peers measured in the same run — a minimal KVM
//! program (the "floor", [`floor`]) and QEMU's microvm — running the same guest bytes.
//!
//! Timings are taken from outside every process the same way ([`runner`]): the spawn,
//! the arrival of the guest's marks on a pipe, the reaping of the process. The report is
//! a markdown table of medians (min–max) with ratios, and a JSON file. Nothing here is a
//! pass/fail check of a timing.
//!
//! Portable modules (guests, ELF reading, stats, smaps parsing, the process runner, guest
//! RAM mappings) build and unit-test on every target; the KVM floor and the driver are
//! x86_64-only; [`objects`] measures the aarch64 and s390x floors on those hosts.

pub mod args;
pub mod elf;
pub mod guests;
pub mod mapping;
pub mod objects;
pub mod runner;
pub mod smaps;
pub mod stats;

#[cfg(target_arch = "x86_64")]
pub mod bench;
#[cfg(target_arch = "x86_64")]
pub mod density;
#[cfg(target_arch = "x86_64")]
pub mod floor;
#[cfg(target_arch = "x86_64")]
pub mod io_engine;
