// SPDX-License-Identifier: Apache-2.0
//! Guest RAM for the floors: a private anonymous mapping, aligned as the architecture's
//! KVM wants it (s390x: 1 MiB segments), unmapped on drop.

/// A mapping of `len` bytes at `host`, aligned to the `align` it was made with.
pub struct Mapping {
    /// The aligned start the guest's memory slot uses.
    pub host: *mut u8,
    pub len: usize,
    raw: *mut libc::c_void,
    total: usize,
}

impl Mapping {
    /// `len` bytes whose start is a multiple of `align` (a power of two; 1 for none).
    pub fn new(len: usize, align: usize) -> Result<Self, String> {
        let total = len
            .checked_add(align.saturating_sub(1))
            .ok_or_else(|| format!("mmap {len} bytes: too large"))?;
        // SAFETY: a fresh private anonymous mapping at an address the kernel chooses; the
        // result is checked below and only used inside `total` bytes while `self` lives.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(format!(
                "mmap {total} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        let offset = (raw as usize).next_multiple_of(align.max(1)) - raw as usize;
        Ok(Self {
            // SAFETY: `offset` < `align` <= `total - len`, so the result lies inside the mapping.
            host: unsafe { raw.cast::<u8>().add(offset) },
            len,
            raw,
            total,
        })
    }

    /// Copies `data` to `offset` bytes into the mapping.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), String> {
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(format!(
                "{} bytes at {offset:#x} do not fit {} bytes of RAM",
                data.len(),
                self.len
            ));
        }
        // SAFETY: the destination range was checked to lie inside the mapping, which
        // nothing else writes while the floor loads its guest.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.host.add(offset), data.len()) };
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.raw, self.total) };
    }
}

#[cfg(test)]
mod tests {
    use super::Mapping;

    #[test]
    fn aligned_and_bounded() {
        let m = Mapping::new(3 << 20, 1 << 20).unwrap();
        assert_eq!(m.host as usize % (1 << 20), 0);
        m.write(0, b"abc").unwrap();
        m.write((3 << 20) - 3, b"xyz").unwrap();
        assert!(m.write((3 << 20) - 2, b"xyz").is_err());
        assert!(m.write(usize::MAX, b"x").is_err());
        let n = Mapping::new(4096, 1).unwrap();
        assert_eq!(n.len, 4096);
    }
}
