// SPDX-License-Identifier: Apache-2.0
//! Test support for Polyvisor's integration tests.
//!
//! The tests build tiny guest programs themselves — hand-assembled x86 machine code
//! ([`asm`]), wrapped in an ELF64 image ([`elf`]) that polyvisor loads as a PVH or a
//! long-mode kernel ([`guest`]) — and run the real `polyvisor` binary on the host's
//! `/dev/kvm` with a timeout ([`runner`]). The guests talk through COM1 and end with an
//! i8042 reset, so a test reads the guest's serial output from polyvisor's stdout and checks
//! the exit code and the `guest reset` line on stderr.
//!
//! Everything here is portable std-only Rust; the unit tests check bytes and run on every
//! target (including big-endian s390x under qemu-user). The integration tests in `tests/`
//! need an x86_64 host with `/dev/kvm` and a built `polyvisor` (`cargo build -p vmm`).
#![forbid(unsafe_code)]

pub mod asm;
pub mod elf;
pub mod guest;
pub mod runner;
pub mod virtio_mmio;

pub use asm::{Asm, Cond, Label, Mem, Mode, Reg};
pub use elf::{ElfBuilder, PvhNote, Segment};
pub use runner::{run_kernel, Polyvisor, RunOutput, TempDir};
