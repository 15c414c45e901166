// SPDX-License-Identifier: Apache-2.0
//! Warnings a guest can cause, limited per site: the first [`WARN_FIRST`] are logged at
//! warn level, the last of them saying so; the rest at debug level with their running
//! count. The count never resets, so a guest cannot flood the log by spacing its mistakes.
//! Portable, tested on every target.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Occurrences of one site logged at warn level.
pub const WARN_FIRST: u64 = 16;

/// The level one occurrence was logged at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logged {
    Warn,
    Debug,
}

/// One site's counter (a `static` per site in the vCPU code, a field per device).
#[derive(Debug)]
pub struct LogLimit {
    site: &'static str,
    seen: AtomicU64,
}

impl LogLimit {
    /// A counter for warnings about `site` (which prefixes each line).
    pub const fn new(site: &'static str) -> Self {
        Self {
            site,
            seen: AtomicU64::new(0),
        }
    }

    /// Log one occurrence.
    pub fn warn(&self, args: fmt::Arguments<'_>) -> Logged {
        let n = self.seen.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if n < WARN_FIRST {
            log::warn!("{}: {args}", self.site);
            Logged::Warn
        } else if n == WARN_FIRST {
            log::warn!(
                "{}: {args} (the {WARN_FIRST}th such warning; further ones at debug level)",
                self.site
            );
            Logged::Warn
        } else {
            log::debug!("{}: {args} ({n} so far)", self.site);
            Logged::Debug
        }
    }

    /// The site this counter is for.
    pub fn site(&self) -> &'static str {
        self.site
    }

    /// Occurrences so far.
    pub fn count(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_few_are_warnings_the_rest_debug_and_the_count_never_resets() {
        let limit = LogLimit::new("test site");
        for i in 0..WARN_FIRST {
            assert_eq!(limit.warn(format_args!("{i}")), Logged::Warn);
        }
        for i in 0..1000 {
            assert_eq!(limit.warn(format_args!("{i}")), Logged::Debug);
        }
        assert_eq!(limit.count(), WARN_FIRST + 1000);
        // Sites are independent.
        let other = LogLimit::new("other site");
        assert_eq!(other.warn(format_args!("x")), Logged::Warn);
        assert_eq!(limit.warn(format_args!("x")), Logged::Debug);
    }

    #[test]
    fn concurrent_callers_get_exactly_the_limit_of_warnings() {
        let limit = LogLimit::new("shared");
        let warned: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..100)
                            .filter(|_| limit.warn(format_args!("x")) == Logged::Warn)
                            .count() as u64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(warned, WARN_FIRST);
        assert_eq!(limit.count(), 400);
    }
}
