// SPDX-License-Identifier: Apache-2.0
//! Resident memory of a VMM process from `/proc/PID/smaps_rollup` and `/proc/PID/smaps`,
//! split into the guest-memory mapping(s) and everything else.

/// Resident memory in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemSample {
    /// Whole process (smaps_rollup `Rss`, `Pss`).
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// Anonymous mappings at least as large as half the guest's memory: guest RAM.
    pub guest_rss_kib: u64,
    pub guest_pss_kib: u64,
}

impl MemSample {
    /// Everything but guest RAM.
    pub fn other_rss_kib(&self) -> u64 {
        self.rss_kib.saturating_sub(self.guest_rss_kib)
    }
    pub fn other_pss_kib(&self) -> u64 {
        self.pss_kib.saturating_sub(self.guest_pss_kib)
    }
}

fn field_kib(line: &str, name: &str) -> Option<u64> {
    let rest = line.strip_prefix(name)?.strip_prefix(':')?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `Rss` and `Pss` of a smaps_rollup text.
pub fn parse_rollup(text: &str) -> Option<(u64, u64)> {
    let mut rss = None;
    let mut pss = None;
    for line in text.lines() {
        rss = rss.or_else(|| field_kib(line, "Rss"));
        pss = pss.or_else(|| field_kib(line, "Pss"));
    }
    Some((rss?, pss?))
}

/// `(rss, pss)` summed over the anonymous mappings of at least `min_bytes` in a smaps text.
pub fn guest_mappings(text: &str, min_bytes: u64) -> (u64, u64) {
    let (mut rss, mut pss) = (0, 0);
    let mut in_guest = false;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) {
                // address perms offset dev inode [path]
                let path = words.nth(4);
                let anonymous = path.is_none() || path == Some("[anon]");
                in_guest = anonymous && hi - lo >= min_bytes;
                continue;
            }
        }
        if in_guest {
            if let Some(v) = field_kib(line, "Rss") {
                rss += v;
            } else if let Some(v) = field_kib(line, "Pss") {
                pss += v;
            }
        }
    }
    (rss, pss)
}

/// Samples process `pid` whose guest has `guest_bytes` of memory.
pub fn sample(pid: u32, guest_bytes: u64) -> Option<MemSample> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (rss_kib, pss_kib) = parse_rollup(&rollup)?;
    let (guest_rss_kib, guest_pss_kib) = guest_mappings(&smaps, guest_bytes / 2);
    Some(MemSample {
        rss_kib,
        pss_kib,
        guest_rss_kib,
        guest_pss_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
5600000000-5600001000 r-xp 00000000 08:01 1234    /usr/bin/vmm
Size:                  4 kB
Rss:                   4 kB
Pss:                   2 kB
7f0000000000-7f0008000000 rw-p 00000000 00:00 0 
Size:             131072 kB
Rss:                  64 kB
Pss:                  64 kB
Pss_Dirty:            64 kB
7f0008000000-7f0008021000 rw-p 00000000 00:00 0 
Size:                132 kB
Rss:                  16 kB
Pss:                  16 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  12 kB
Pss:                  12 kB
";

    #[test]
    fn guest_mapping_is_the_big_anonymous_one() {
        assert_eq!(guest_mappings(SMAPS, 64 << 20), (64, 64));
        // With a tiny threshold every anonymous mapping counts, but not the stack or file.
        assert_eq!(guest_mappings(SMAPS, 0), (80, 80));
    }

    #[test]
    fn rollup_fields() {
        let text = "55d-7ff ---p 00000000 00:00 0   [rollup]\nRss:                2048 kB\nPss:                1500 kB\nPss_Anon:  1000 kB\n";
        assert_eq!(parse_rollup(text), Some((2048, 1500)));
        assert_eq!(parse_rollup("Rss: 1 kB\n"), None);
    }

    #[test]
    fn other_is_total_minus_guest() {
        let s = MemSample {
            rss_kib: 100,
            pss_kib: 90,
            guest_rss_kib: 30,
            guest_pss_kib: 30,
        };
        assert_eq!((s.other_rss_kib(), s.other_pss_kib()), (70, 60));
    }
}
