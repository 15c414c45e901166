// SPDX-License-Identifier: Apache-2.0
//! Requests kept in flight: with a fake ring the tests complete in the order they choose
//! (out of order, short, never), and with the host's io_uring where it has one.

use std::fs::File;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;
use crate::virtio::block::engine::{AsyncIo, Completion, Direction, MAX_IN_FLIGHT};
use vm_memory::GuestMemoryBackend as _;
use vmm_sys_util::eventfd::EventFd;

/// A [`DiskImage`] that asks for its requests to be kept in flight, buffered or not.
struct Queued(DiskImage);

impl IoBackend for Queued {
    fn capacity(&self) -> u64 {
        self.0.capacity()
    }
    fn readonly(&self) -> bool {
        self.0.readonly()
    }
    fn read_at(&self, offset: u64, bufs: &[vm_memory::VolatileSlice<'_, ()>]) -> io::Result<()> {
        self.0.read_at(offset, bufs)
    }
    fn write_at(&self, offset: u64, bufs: &[vm_memory::VolatileSlice<'_, ()>]) -> io::Result<()> {
        self.0.write_at(offset, bufs)
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.0.discard(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        self.0.write_zeroes(offset, len, unmap)
    }
    fn queued_flush_file(&self) -> Option<Arc<File>> {
        Some(self.0.file().clone())
    }
    fn queued_file(&self, _: u64, _: &[vm_memory::VolatileSlice<'_, ()>]) -> Option<Arc<File>> {
        Some(self.0.file().clone())
    }
}

use std::io;

struct Submitted {
    tag: u64,
    what: &'static str,
    file: Arc<File>,
    offset: u64,
    mem: GuestMemory,
    bufs: Vec<(GuestAddress, usize)>,
}

/// What the fake ring saw and holds.
#[derive(Default)]
struct Fake {
    in_flight: Vec<Submitted>,
    completed: Vec<Completion>,
    /// Submissions, completions read and drains, in order.
    log: Vec<String>,
    submits: usize,
}

impl Fake {
    /// Do the request submitted `nth` (counting those still in flight), `limit` bytes of
    /// it at most, and post its completion.
    fn complete(&mut self, nth: usize, limit: usize) {
        let s = self.in_flight.remove(nth);
        let mut moved = 0usize;
        let result = if s.what == "fdatasync" {
            s.file.sync_data().map(|()| 0)
        } else {
            let mut slices = Vec::new();
            let mut left = limit;
            for &(addr, len) in &s.bufs {
                let n = len.min(left);
                left -= n;
                if n > 0 {
                    slices.extend(s.mem.get_slices(addr, n).map(Result::unwrap));
                }
            }
            moved = slices.iter().map(|v| v.len()).sum();
            if s.what == "read" {
                block_io::read_all_at(&s.file, s.offset, &slices)
            } else {
                block_io::write_all_at(&s.file, s.offset, &slices)
            }
            .map(|()| moved as u32)
        };
        self.log.push(format!("done {} {}", s.what, s.offset));
        let _ = moved;
        self.completed.push(Completion { tag: s.tag, result });
    }
}

struct FakeIo {
    fake: Arc<Mutex<Fake>>,
    event: EventFd,
}

impl FakeIo {
    fn push(
        &mut self,
        what: &'static str,
        file: &Arc<File>,
        offset: u64,
        mem: &GuestMemory,
        bufs: &[(GuestAddress, usize)],
        tag: u64,
    ) -> io::Result<()> {
        let mut f = self.fake.lock().unwrap();
        f.log.push(format!("{what} {offset}"));
        f.in_flight.push(Submitted {
            tag,
            what,
            file: file.clone(),
            offset,
            mem: mem.clone(),
            bufs: bufs.to_vec(),
        });
        Ok(())
    }
}

impl AsyncIo for FakeIo {
    fn event_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.event)
    }
    fn in_flight(&self) -> usize {
        let f = self.fake.lock().unwrap();
        f.in_flight.len() + f.completed.len()
    }
    fn transfer(
        &mut self,
        dir: Direction,
        file: &Arc<File>,
        offset: u64,
        mem: &GuestMemory,
        bufs: &[(GuestAddress, usize)],
        tag: u64,
    ) -> io::Result<()> {
        let what = if dir == Direction::Read {
            "read"
        } else {
            "write"
        };
        self.push(what, file, offset, mem, bufs, tag)
    }
    fn fdatasync(&mut self, file: &Arc<File>, tag: u64) -> io::Result<()> {
        let mem = test_util::memory();
        self.push("fdatasync", file, 0, &mem, &[], tag)
    }
    fn submit(&mut self) -> io::Result<()> {
        self.fake.lock().unwrap().submits += 1;
        Ok(())
    }
    fn reap(&mut self, out: &mut Vec<Completion>) {
        let mut f = self.fake.lock().unwrap();
        let done: Vec<Completion> = f.completed.drain(..).collect();
        if !done.is_empty() {
            f.log.push(format!("reaped {}", done.len()));
        }
        out.extend(done);
    }
    fn drain(&mut self, _deadline: Duration) -> usize {
        let mut f = self.fake.lock().unwrap();
        let n = f.in_flight.len();
        f.log.push(format!("drained {n}"));
        // As a ring does: what was in flight ends (cancelled) before drain returns.
        f.in_flight.clear();
        f.completed.clear();
        0
    }
}

/// A fixture whose disk keeps requests in flight on the fake ring.
fn with_fake(size: u16) -> (Fixture, Arc<Mutex<Fake>>) {
    let mut f = fixture_with(false, size, b"");
    drop(f.q);
    let image = DiskImage::open(&f.path, &ImageOptions::default());
    let image: Arc<dyn IoBackend> = Arc::new(Queued(image.unwrap()));
    let dev = Block::new(image.clone(), BlockOptions::default());
    let fake = Arc::new(Mutex::new(Fake::default()));
    f.q = BlockQueue::new(
        image,
        dev.serial,
        dev.offered,
        dev.limits,
        ActiveQueue {
            mem: f.mem.clone(),
            interrupt: f.irq.clone(),
            queue: f.ring.queue(QUEUE_SIZE),
        },
        "virtio-blk test".into(),
    );
    f.q.use_async(Box::new(FakeIo {
        fake: fake.clone(),
        event: EventFd::new(0).unwrap(),
    }));
    (f, fake)
}

/// Read requests at descriptors 3i: sector `sectors[i]` into DATA + 512 i.
fn offer_reads(f: &Fixture, sectors: &[u64]) {
    for (i, &sector) in sectors.iter().enumerate() {
        let data = DATA + 512 * i as u64;
        f.request(3 * i as u16, kind::IN, sector, &[(data, 512, DESC_F_WRITE)]);
    }
}

/// The used ring's entries: (head, length).
fn used(f: &Fixture) -> Vec<(u32, u32)> {
    let n = f.ring.used_idx(&f.mem);
    (0..n)
        .map(|i| f.ring.used_elem(&f.mem, i % f.ring.size))
        .collect()
}

#[test]
fn reads_complete_out_of_order_with_their_data() {
    let (mut f, fake) = with_fake(16);
    offer_reads(&f, &[7, 2, 40]);
    assert!(!f.q.serve(), "all three submitted, nothing more to do");
    assert_eq!(
        f.ring.used_idx(&f.mem),
        0,
        "nothing completes before the ring says so"
    );
    assert_eq!(fake.lock().unwrap().in_flight.len(), 3);
    assert_eq!(f.q.in_flight.as_ref().unwrap().count(), 3);
    // The last first, then the first; the middle one stays in flight.
    fake.lock().unwrap().complete(2, usize::MAX);
    fake.lock().unwrap().complete(0, usize::MAX);
    f.q.serve();
    assert_eq!(used(&f), vec![(6, 513), (0, 513)]);
    assert_eq!(f.irq.used(), 1, "one interrupt for the batch");
    fake.lock().unwrap().complete(0, usize::MAX);
    f.q.serve();
    assert_eq!(used(&f), vec![(6, 513), (0, 513), (3, 513)]);
    let image = pattern(IMAGE_LEN, 1);
    for (i, sector) in [7usize, 2, 40].into_iter().enumerate() {
        assert_eq!(
            f.bytes(DATA + 512 * i as u64, 512),
            image[sector * 512..][..512]
        );
        assert_eq!(f.status_of(3 * i as u16), status::OK);
    }
    assert_eq!(f.q.in_flight.as_ref().unwrap().count(), 0);
}

#[test]
fn writes_land_and_a_short_completion_is_finished_synchronously() {
    let (mut f, fake) = with_fake(16);
    let data = pattern(2048, 77);
    f.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    f.request(0, kind::OUT, 10, &[(DATA, 1024, 0), (DATA + 1024, 1024, 0)]);
    f.q.serve();
    // The kernel wrote 1.5 KiB of the 2: the device writes the rest itself.
    fake.lock().unwrap().complete(0, 1536);
    f.q.serve();
    assert_eq!(used(&f), vec![(0, 1)]);
    assert_eq!(f.status_of(0), status::OK);
    assert_eq!(f.file()[10 * 512..][..2048], data[..]);

    // EAGAIN (a file marked non-blocking) is done synchronously.
    f.request(4, kind::IN, 3, &[(DATA + 0x1000, 512, DESC_F_WRITE)]);
    f.q.serve();
    let tag = fake.lock().unwrap().in_flight[0].tag;
    fake.lock().unwrap().in_flight.clear();
    fake.lock().unwrap().completed.push(Completion {
        tag,
        result: Err(io::Error::from_raw_os_error(11)),
    });
    f.q.serve();
    assert_eq!(used(&f)[1], (4, 513));
    assert_eq!(f.status_of(4), status::OK);
    assert_eq!(
        f.bytes(DATA + 0x1000, 512),
        pattern(IMAGE_LEN, 1)[3 * 512..][..512]
    );

    // A failed completion is IOERR.
    f.request(8, kind::IN, 0, &[(DATA, 512, DESC_F_WRITE)]);
    f.q.serve();
    let tag = fake.lock().unwrap().in_flight[0].tag;
    fake.lock().unwrap().in_flight.clear();
    fake.lock().unwrap().completed.push(Completion {
        tag,
        result: Err(io::Error::from_raw_os_error(5)),
    });
    f.q.serve();
    assert_eq!(used(&f)[2], (8, 1));
    assert_eq!(f.status_of(8), status::IOERR);
}

#[test]
fn a_flush_is_submitted_after_the_completions_before_it_are_read() {
    let (mut f, fake) = with_fake(16);
    f.mem
        .write_slice(&pattern(512, 3), GuestAddress(DATA))
        .unwrap();
    f.request(0, kind::OUT, 1, &[(DATA, 512, 0)]);
    f.q.serve();
    // The write completes in the kernel; the driver then sends a flush (it has not seen
    // the write completed yet, but the device has it when it pops the flush).
    fake.lock().unwrap().complete(0, usize::MAX);
    f.request(3, kind::FLUSH, 0, &[]);
    f.q.serve();
    let log = fake.lock().unwrap().log.clone();
    assert_eq!(
        log,
        vec!["write 512", "done write 512", "reaped 1", "fdatasync 0"],
        "the flush's fdatasync goes to the kernel after the write's completion was read"
    );
    assert_eq!(used(&f), vec![(0, 1)], "the flush waits for its fdatasync");
    fake.lock().unwrap().complete(0, usize::MAX);
    f.q.serve();
    assert_eq!(used(&f), vec![(0, 1), (3, 1)]);
    assert_eq!(f.status_of(3), status::OK);
}

#[test]
fn requests_in_flight_are_bounded_and_the_rest_wait_in_the_ring() {
    let (mut f, fake) = with_fake(256);
    let n = 80usize;
    let sectors: Vec<u64> = (0..n as u64).map(|i| i % 64).collect();
    offer_reads(&f, &sectors);
    // Passes until the bound: no busy loop, the worker waits for completions.
    let mut passes = 0;
    while f.q.serve() {
        passes += 1;
        assert!(passes < 10);
    }
    assert_eq!(fake.lock().unwrap().in_flight.len(), MAX_IN_FLIGHT);
    assert_eq!(f.ring.used_idx(&f.mem), 0);
    assert!(!f.q.serve(), "at the bound a pass takes nothing more");
    assert_eq!(fake.lock().unwrap().in_flight.len(), MAX_IN_FLIGHT);
    // Completions make room for the rest.
    for _ in 0..MAX_IN_FLIGHT {
        fake.lock().unwrap().complete(0, usize::MAX);
    }
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), MAX_IN_FLIGHT as u16);
    assert_eq!(fake.lock().unwrap().in_flight.len(), n - MAX_IN_FLIGHT);
    while !fake.lock().unwrap().in_flight.is_empty() {
        fake.lock().unwrap().complete(0, usize::MAX);
    }
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), n as u16);
    let image = pattern(IMAGE_LEN, 1);
    for (i, &sector) in sectors.iter().enumerate() {
        let sector = sector as usize;
        assert_eq!(
            f.bytes(DATA + 512 * i as u64, 512),
            image[sector * 512..][..512],
            "{i}"
        );
    }
}

#[test]
fn hostile_chains_are_refused_before_anything_is_submitted() {
    let (mut f, fake) = with_fake(16);
    // Past the end, outside memory, the wrong direction: IOERR, nothing submitted.
    f.request(0, kind::IN, 64, &[(DATA, 512, DESC_F_WRITE)]);
    f.request(3, kind::IN, 0, &[(0xff_fe00, 1024, DESC_F_WRITE)]);
    f.request(6, kind::OUT, 0, &[(DATA, 512, DESC_F_WRITE)]);
    f.serve();
    assert_eq!(used(&f), vec![(0, 1), (3, 1), (6, 1)]);
    for head in [0, 3, 6] {
        assert_eq!(f.status_of(head), status::IOERR);
    }
    assert!(fake.lock().unwrap().log.is_empty());
}

#[test]
fn a_reset_gives_up_requests_in_flight_without_completing_them() {
    let (mut f, fake) = with_fake(16);
    offer_reads(&f, &[1, 2, 3]);
    f.q.serve();
    fake.lock().unwrap().complete(1, usize::MAX);
    f.q.stop();
    assert_eq!(
        f.ring.used_idx(&f.mem),
        0,
        "nothing written to a reset queue"
    );
    assert_eq!(f.q.in_flight.as_ref().unwrap().count(), 0);
    let log = fake.lock().unwrap().log.clone();
    assert_eq!(log.last().unwrap(), "drained 2");
}

/// Serve until `n` requests are used (completions arrive from the kernel).
fn serve_until_used(f: &mut Fixture, n: u16) {
    let start = Instant::now();
    while f.ring.used_idx(&f.mem) < n {
        f.q.serve();
        assert!(start.elapsed() < Duration::from_secs(10), "timed out");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The host's io_uring when it has one; where it has none (a target the crate has no
/// bindings for, qemu-user, an old kernel) the same requests go the synchronous way.
#[test]
fn the_host_io_uring_reads_writes_and_flushes() {
    let (mut f, _) = with_fake(16);
    match super::super::engine::Ring::new(MAX_IN_FLIGHT as u32) {
        Ok(ring) => f.q.use_async(Box::new(ring)),
        Err(e) => {
            // Not built for the target (s390x), or qemu-user / the kernel lacks it.
            let missing =
                e.kind() == io::ErrorKind::Unsupported || matches!(e.raw_os_error(), Some(1 | 38));
            assert!(missing, "io_uring_setup: {e}");
            f.q.in_flight = None;
        }
    }
    let data = pattern(4096, 5);
    f.mem
        .write_slice(&data, GuestAddress(DATA + 0x8000))
        .unwrap();
    f.request(0, kind::OUT, 8, &[(DATA + 0x8000, 4096, 0)]);
    f.request(3, kind::IN, 0, &[(DATA, 512, DESC_F_WRITE)]);
    f.request(6, kind::IN, 63, &[(DATA + 512, 512, DESC_F_WRITE)]);
    serve_until_used(&mut f, 3);
    for head in [0, 3, 6] {
        assert_eq!(f.status_of(head), status::OK, "{head}");
    }
    f.request(9, kind::FLUSH, 0, &[]);
    serve_until_used(&mut f, 4);
    assert_eq!(f.status_of(9), status::OK);
    assert_eq!(f.file()[8 * 512..][..4096], data[..]);
    let image = pattern(IMAGE_LEN, 1);
    assert_eq!(f.bytes(DATA, 512), image[..512]);
    assert_eq!(f.bytes(DATA + 512, 512), image[63 * 512..][..512]);
    // A reset with reads in flight waits for them.
    offer_reads(&f, &[1, 2, 3]);
    f.q.serve();
    f.q.stop();
    if let Some(inf) = &f.q.in_flight {
        assert_eq!(inf.count(), 0);
    }
}

/// A `direct=on` disk on its worker thread: the worker sets up the ring (where the host has
/// one), waits on its completions with epoll, and a reset with reads in flight returns
/// with nothing completed after it.
#[test]
fn a_direct_disk_keeps_reads_in_flight_on_its_worker_and_resets() {
    // O_DIRECT needs a disk filesystem (tmpfs has none).
    let dir = TempDir::new_with_prefix("/var/tmp/pv-blk-direct").unwrap();
    let path = image_file(&dir, &pattern(IMAGE_LEN, 4));
    let options = ImageOptions {
        readonly: false,
        direct: true,
    };
    let image = match DiskImage::open(&path, &options) {
        Ok(image) => Arc::new(image),
        Err(ImageError::Direct { .. }) => panic!("/var/tmp has no O_DIRECT"),
        Err(e) => panic!("{e}"),
    };
    assert!(
        image.queued_flush_file().is_some(),
        "direct=on keeps requests in flight"
    );
    let mut dev = Block::new(image, BlockOptions::default());
    let mem = test_util::memory();
    let ring = DriverRing::new(&mem, 0x1_0000, 64);
    let irq = Arc::new(CountingInterrupt::default());
    dev.set_driver_features(u64::MAX);
    dev.activate(mem.clone(), irq.clone(), vec![ring.queue(QUEUE_SIZE)])
        .unwrap();
    let offer = |first: u16, sector: u64, data: u64| {
        let hdr = HDR + u64::from(first) * 0x10;
        let mut h = kind::IN.to_le_bytes().to_vec();
        h.extend_from_slice(&[0; 4]);
        h.extend_from_slice(&sector.to_le_bytes());
        mem.write_slice(&h, GuestAddress(hdr)).unwrap();
        ring.set_desc(&mem, first, hdr, 16, DESC_F_NEXT, first + 1);
        ring.set_desc(
            &mem,
            first + 1,
            data,
            4096,
            DESC_F_WRITE | DESC_F_NEXT,
            first + 2,
        );
        ring.set_desc(
            &mem,
            first + 2,
            STATUS + u64::from(first),
            1,
            DESC_F_WRITE,
            0,
        );
        ring.offer(&mem, first);
    };
    // Eight aligned 4 KiB reads (O_DIRECT), backwards through the image.
    for i in 0..8u16 {
        offer(3 * i, u64::from(7 - i) * 8, DATA + 4096 * u64::from(i));
    }
    dev.queue_events()[0].write(1).unwrap();
    ring.wait_used(&mem, 8);
    let image = pattern(IMAGE_LEN, 4);
    for i in 0..8usize {
        let mut got = vec![0; 4096];
        mem.read_slice(&mut got, GuestAddress(DATA + 4096 * i as u64))
            .unwrap();
        assert_eq!(got, image[(7 - i) * 4096..][..4096], "read {i}");
        let st: u8 = mem.read_obj(GuestAddress(STATUS + 3 * i as u64)).unwrap();
        assert_eq!(st, status::OK);
    }
    let mut heads: Vec<u32> = (0..8).map(|i| ring.used_elem(&mem, i).0).collect();
    heads.sort_unstable();
    assert_eq!(heads, (0..8).map(|i| 3 * i).collect::<Vec<_>>());
    // Eight more, and a reset right away: whatever was in flight is waited for, and the
    // used ring does not move after the reset returns.
    for i in 8..16u16 {
        offer(3 * i, u64::from(i - 8) * 8, DATA + 4096 * u64::from(i));
    }
    dev.queue_events()[0].write(1).unwrap();
    dev.reset();
    let after = ring.used_idx(&mem);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ring.used_idx(&mem), after);
}

/// io_uring answers EAGAIN on a file marked non-blocking: the image's descriptor must not
/// be, though it is opened with O_NONBLOCK (a FIFO must not block the open).
#[test]
fn the_image_is_not_left_non_blocking() {
    let (f, _) = with_fake(16);
    drop(f.q);
    let image = DiskImage::open(&f.path, &ImageOptions::default()).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&**image.file());
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    assert_eq!(flags & 0o4000, 0, "O_NONBLOCK still set: {info}");
}
