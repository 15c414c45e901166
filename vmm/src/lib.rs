//! Polyvisor's VMM: configuration, the VM builder, vCPU threads and the console.
//!
//! Architecture-blind: the backend is chosen once in [`host`], and everything else goes
//! through the `arch` traits.

pub mod cli;
pub mod config;
pub mod console;
pub mod host;
pub mod logger;
pub mod machine;
pub mod signals;
mod vcpu_thread;

pub use config::{Config, ConfigError};
pub use machine::{run, Error, RunOutcome};

use std::sync::OnceLock;
use std::time::Instant;

static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// When this process started, as near as the VMM can tell: the first call wins, so the
/// binary calls it first thing in `main`.
pub fn process_start() -> Instant {
    *PROCESS_START.get_or_init(Instant::now)
}
