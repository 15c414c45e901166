// SPDX-License-Identifier: Apache-2.0
//! The driver's side of a split virtqueue, for tests: descriptors, the available ring and
//! the used ring laid out in guest memory byte by byte, little-endian on every host.

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::{features, ActivateError, GuestMemory, VirtioDevice, VirtioInterrupt};

/// Descriptor flags (virtio 1.2 §2.7.5).
pub const DESC_F_NEXT: u16 = 1;
pub const DESC_F_WRITE: u16 = 2;

/// Guest memory for tests: 1 MiB at 0.
pub fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
}

/// A split virtqueue as a driver lays it out.
#[derive(Clone, Copy, Debug)]
pub struct DriverRing {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

impl DriverRing {
    /// A ring of `size` entries at `base`: descriptor table, then the available ring,
    /// then the used ring on the next 4 KiB boundary. Memory is zeroed.
    pub fn new(mem: &GuestMemory, base: u64, size: u16) -> Self {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 0xfff) & !0xfff;
        let end = used + 6 + 8 * u64::from(size);
        mem.write_slice(&vec![0; (end - base) as usize], GuestAddress(base))
            .unwrap();
        Self {
            size,
            desc,
            avail,
            used,
        }
    }

    /// Write descriptor `index`: address, length, flags, next, each little-endian.
    pub fn set_desc(
        &self,
        mem: &GuestMemory,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let mut bytes = Vec::with_capacity(16);
        bytes.extend_from_slice(&addr.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&flags.to_le_bytes());
        bytes.extend_from_slice(&next.to_le_bytes());
        mem.write_slice(&bytes, GuestAddress(self.desc + 16 * u64::from(index)))
            .unwrap();
    }

    /// Make the chain starting at `head` available: the next ring slot, then `idx`.
    pub fn offer(&self, mem: &GuestMemory, head: u16) {
        let idx = self.avail_idx(mem);
        let slot = self.avail + 4 + 2 * u64::from(idx % self.size);
        mem.write_slice(&head.to_le_bytes(), GuestAddress(slot))
            .unwrap();
        self.set_avail_idx(mem, idx.wrapping_add(1));
    }

    pub fn avail_idx(&self, mem: &GuestMemory) -> u16 {
        u16::from_le_bytes(mem.read_obj(GuestAddress(self.avail + 2)).unwrap())
    }

    pub fn set_avail_idx(&self, mem: &GuestMemory, idx: u16) {
        mem.write_slice(&idx.to_le_bytes(), GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// `used_event` (after the available ring), for `VIRTIO_F_EVENT_IDX`.
    pub fn set_used_event(&self, mem: &GuestMemory, idx: u16) {
        let at = self.avail + 4 + 2 * u64::from(self.size);
        mem.write_slice(&idx.to_le_bytes(), GuestAddress(at))
            .unwrap();
    }

    /// `avail_event` (after the used ring), which the device writes for
    /// `VIRTIO_F_EVENT_IDX`: the driver notifies once its `idx` passes it.
    pub fn avail_event(&self, mem: &GuestMemory) -> u16 {
        let at = self.used + 4 + 8 * u64::from(self.size);
        u16::from_le_bytes(mem.read_obj(GuestAddress(at)).unwrap())
    }

    /// The used ring's `idx`, read as raw little-endian bytes.
    pub fn used_idx(&self, mem: &GuestMemory) -> u16 {
        u16::from_le_bytes(mem.read_obj(GuestAddress(self.used + 2)).unwrap())
    }

    /// Wait (up to 10 s) until the device's worker has used `n` buffers in total.
    pub fn wait_used(&self, mem: &GuestMemory, n: u16) {
        let start = std::time::Instant::now();
        while self.used_idx(mem) != n {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "the device used {} buffers, not {n}",
                self.used_idx(mem)
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The raw 8 bytes of used ring element `slot` (`id` then `len`, little-endian).
    pub fn used_elem_bytes(&self, mem: &GuestMemory, slot: u16) -> [u8; 8] {
        mem.read_obj(GuestAddress(self.used + 4 + 8 * u64::from(slot)))
            .unwrap()
    }

    /// Used ring element `slot` as `(id, len)`.
    pub fn used_elem(&self, mem: &GuestMemory, slot: u16) -> (u32, u32) {
        let b = self.used_elem_bytes(mem, slot);
        (
            u32::from_le_bytes(b[..4].try_into().unwrap()),
            u32::from_le_bytes(b[4..].try_into().unwrap()),
        )
    }
}

impl DriverRing {
    /// The device's view of this ring, as a transport builds it.
    pub fn queue(&self, max_size: u16) -> virtio_queue::Queue {
        use virtio_queue::QueueT;
        let mut q = virtio_queue::Queue::new(max_size).unwrap();
        q.try_set_size(self.size).unwrap();
        q.try_set_desc_table_address(GuestAddress(self.desc))
            .unwrap();
        q.try_set_avail_ring_address(GuestAddress(self.avail))
            .unwrap();
        q.try_set_used_ring_address(GuestAddress(self.used))
            .unwrap();
        q.set_ready(true);
        q
    }
}

/// Records what a device signalled.
#[derive(Default)]
pub struct CountingInterrupt {
    pub used: std::sync::atomic::AtomicUsize,
    pub config: std::sync::atomic::AtomicUsize,
}

impl CountingInterrupt {
    pub fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl super::VirtioInterrupt for CountingInterrupt {
    fn signal_used_queue(&self, _index: u16) {
        self.used.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn signal_config_changed(&self) {
        self.config
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A host entropy source that counts up from 0 (wrapping), so tests know every byte.
pub struct CountingSource(pub u8);

impl std::io::Read for CountingSource {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for b in buf.iter_mut() {
            *b = self.0;
            self.0 = self.0.wrapping_add(1);
        }
        Ok(buf.len())
    }
}

/// What the fake device saw (features: what `set_driver_features` got last).
#[derive(Default)]
pub struct Seen {
    pub features: Option<u64>,
    pub notifies: Vec<u16>,
    /// (desc, avail, used, size, event_idx) of each activated queue.
    pub queues: Vec<(u64, u64, u64, u16, bool)>,
    pub resets: usize,
    pub config_writes: Vec<(u64, Vec<u8>)>,
    pub interrupt: Option<Arc<dyn VirtioInterrupt>>,
}

pub struct FakeDevice {
    pub seen: Arc<Mutex<Seen>>,
    pub sizes: Vec<u16>,
    pub refuse: bool,
}

impl VirtioDevice for FakeDevice {
    fn device_type(&self) -> u32 {
        42
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }
    fn device_features(&self) -> u64 {
        features::VERSION_1 | features::RING_EVENT_IDX | 1 << 3
    }
    fn set_driver_features(&mut self, features: u64) {
        self.seen.lock().unwrap().features = Some(features);
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = 0xc0 + offset as u8 + i as u8;
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.seen
            .lock()
            .unwrap()
            .config_writes
            .push((offset, data.to_vec()));
    }
    fn activate(
        &mut self,
        _mem: GuestMemory,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<Queue>,
    ) -> Result<(), ActivateError> {
        if self.refuse {
            return Err(ActivateError::Device("refused".into()));
        }
        let mut seen = self.seen.lock().unwrap();
        seen.queues = queues
            .iter()
            .map(|q| {
                (
                    q.desc_table(),
                    q.avail_ring(),
                    q.used_ring(),
                    q.size(),
                    q.event_idx_enabled(),
                )
            })
            .collect();
        seen.interrupt = Some(interrupt);
        Ok(())
    }
    fn queue_notify(&mut self, index: u16) {
        self.seen.lock().unwrap().notifies.push(index);
    }
    fn reset(&mut self) {
        let mut seen = self.seen.lock().unwrap();
        seen.resets += 1;
        seen.interrupt = None;
    }
}

impl FakeDevice {
    /// A fake with queues of `sizes` that refuses to start when `refuse`, and what it sees.
    pub fn boxed(sizes: &[u16], refuse: bool) -> (Box<dyn VirtioDevice>, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let device = FakeDevice {
            seen: seen.clone(),
            sizes: sizes.to_vec(),
            refuse,
        };
        (Box::new(device), seen)
    }
}
