// SPDX-License-Identifier: Apache-2.0
//! virtio-blk against a driver's queue in guest memory and a real image file: good
//! requests, and every kind of garbage a hostile driver can send.

use std::path::PathBuf;
use std::sync::Arc;

use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::tempdir::TempDir;

use super::request::{kind, status};
use super::*;
use crate::virtio::test_util::{self, CountingInterrupt, DriverRing, DESC_F_NEXT, DESC_F_WRITE};
use crate::virtio::worker::{ActiveQueue, QueueHandler};

const DESC_F_INDIRECT: u16 = 4;
/// Image size in the fixture: 64 sectors.
const IMAGE_LEN: usize = 64 * 512;
const HDR: u64 = 0x2_0000;
const DATA: u64 = 0x3_0000;
const STATUS: u64 = 0x2_1000;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

struct Fixture {
    q: BlockQueue,
    mem: GuestMemory,
    ring: DriverRing,
    irq: Arc<CountingInterrupt>,
    path: PathBuf,
    _dir: TempDir,
}

fn image_file(dir: &TempDir, contents: &[u8]) -> PathBuf {
    let path = dir.as_path().join("disk.img");
    std::fs::write(&path, contents).unwrap();
    path
}

fn fixture_with(readonly: bool, size: u16, serial: &[u8]) -> Fixture {
    let dir = TempDir::new_with_prefix("/tmp/pv-blk-test").unwrap();
    let path = image_file(&dir, &pattern(IMAGE_LEN, 1));
    let image = DiskImage::open(
        &path,
        &ImageOptions {
            readonly,
            direct: false,
        },
    )
    .unwrap();
    let mem = test_util::memory();
    let ring = DriverRing::new(&mem, 0x1_0000, size);
    let irq = Arc::new(CountingInterrupt::default());
    let device = Block::new(
        Arc::new(image),
        BlockOptions {
            serial: serial.to_vec(),
            name: "virtio-blk test".into(),
            block_device: false,
        },
    );
    let q = BlockQueue::new(
        device.image.clone(),
        device.serial,
        device.offered,
        device.limits,
        ActiveQueue {
            mem: mem.clone(),
            interrupt: irq.clone(),
            queue: ring.queue(QUEUE_SIZE),
        },
        "virtio-blk test".into(),
    );
    Fixture {
        q,
        mem,
        ring,
        irq,
        path,
        _dir: dir,
    }
}

fn fixture() -> Fixture {
    fixture_with(false, 16, b"serial-1")
}

impl Fixture {
    fn serve(&mut self) {
        let mut passes = 0;
        while self.q.serve() {
            passes += 1;
            assert!(passes < 1000, "the queue never ran dry");
        }
    }

    fn header(&self, at: u64, kind: u32, sector: u64) {
        let mut h = Vec::new();
        h.extend_from_slice(&kind.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&h, GuestAddress(at)).unwrap();
    }

    /// Descriptors from index `first`: header, `data` (addr, len, flags), status; offered.
    fn request(&self, first: u16, kind: u32, sector: u64, data: &[(u64, u32, u16)]) {
        self.header(HDR + u64::from(first) * 0x10, kind, sector);
        self.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
        let mut i = first;
        self.ring.set_desc(
            &self.mem,
            i,
            HDR + u64::from(first) * 0x10,
            16,
            DESC_F_NEXT,
            i + 1,
        );
        for &(addr, len, flags) in data {
            i += 1;
            self.ring
                .set_desc(&self.mem, i, addr, len, flags | DESC_F_NEXT, i + 1);
        }
        i += 1;
        self.ring
            .set_desc(&self.mem, i, STATUS + u64::from(first), 1, DESC_F_WRITE, 0);
        self.ring.offer(&self.mem, first);
    }

    fn status_of(&self, first: u16) -> u8 {
        self.mem
            .read_obj(GuestAddress(STATUS + u64::from(first)))
            .unwrap()
    }

    fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    fn file(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }

    /// One request at descriptor 0, served; its status and used length.
    fn one(&mut self, kind: u32, sector: u64, data: &[(u64, u32, u16)]) -> (u8, u32) {
        self.request(0, kind, sector, data);
        self.serve();
        let used = self.ring.used_idx(&self.mem);
        let (id, len) = self
            .ring
            .used_elem(&self.mem, used.wrapping_sub(1) % self.ring.size);
        assert_eq!(id, 0);
        (self.status_of(0), len)
    }
}

#[test]
fn offers_its_features_and_a_little_endian_config_space() {
    let f = fixture();
    let ro = fixture_with(true, 16, b"");
    let dev = Block::new(ro.q.image.clone(), BlockOptions::default());
    assert_eq!(dev.device_type(), 2);
    assert_eq!(dev.queue_max_sizes(), &[256]);
    let ro = dev.device_features();
    assert_ne!(ro & blk_features::RO, 0);
    assert_eq!(ro & (blk_features::DISCARD | blk_features::WRITE_ZEROES), 0);
    let rw = f.q.features;
    for bit in [
        features::VERSION_1,
        features::RING_EVENT_IDX,
        features::RING_INDIRECT_DESC,
        blk_features::SIZE_MAX,
        blk_features::SEG_MAX,
        blk_features::BLK_SIZE,
        blk_features::FLUSH,
        blk_features::DISCARD,
        blk_features::WRITE_ZEROES,
    ] {
        assert_ne!(rw & bit, 0, "{bit:#x}");
    }
    assert_eq!(rw & blk_features::RO, 0);

    let mut cfg = [0xffu8; 64];
    dev.read_config(0, &mut cfg);
    assert_eq!(cfg[0..8], [64, 0, 0, 0, 0, 0, 0, 0], "capacity in sectors");
    assert_eq!(cfg[8..12], [0, 0, 4, 0], "size_max 256 KiB");
    assert_eq!(cfg[12..16], [254, 0, 0, 0], "seg_max");
    assert_eq!(cfg[20..24], [0, 2, 0, 0], "blk_size 512");
    assert_eq!(cfg[36..40], (2u32 << 20).to_le_bytes(), "1 GiB discards");
    assert_eq!(cfg[40..44], [16, 0, 0, 0]);
    assert_eq!(cfg[44..48], [8, 0, 0, 0]);
    assert_eq!(cfg[48..52], (64u32 << 10).to_le_bytes(), "32 MiB zeroes");
    assert_eq!(cfg[52..56], [16, 0, 0, 0]);
    assert_eq!(cfg[56], 1, "a regular file's zeroes may unmap");
    assert_eq!(cfg[60..], [0; 4], "past the end reads 0");
    let mut cap_hi = [0xffu8; 4];
    dev.read_config(4, &mut cap_hi);
    assert_eq!(cap_hi, [0; 4]);
    dev.read_config(u64::MAX, &mut cap_hi);
    assert_eq!(cap_hi, [0; 4]);
}

#[test]
fn reads_sectors_into_several_buffers() {
    let mut f = fixture();
    let (st, len) = f.one(
        kind::IN,
        3,
        &[
            (DATA, 512, DESC_F_WRITE),
            (DATA + 0x1000, 1024, DESC_F_WRITE),
        ],
    );
    assert_eq!((st, len), (status::OK, 1537));
    let file = f.file();
    assert_eq!(f.bytes(DATA, 512), file[3 * 512..4 * 512]);
    assert_eq!(f.bytes(DATA + 0x1000, 1024), file[4 * 512..6 * 512]);
    assert_eq!(f.irq.used(), 1);
}

#[test]
fn writes_sectors_and_flushes() {
    let mut f = fixture();
    let data = pattern(1024, 77);
    f.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    let (st, len) = f.one(kind::OUT, 62, &[(DATA, 512, 0), (DATA + 512, 512, 0)]);
    assert_eq!((st, len), (status::OK, 1));
    let file = f.file();
    assert_eq!(file[62 * 512..], data[..]);
    assert_eq!(file[..62 * 512], pattern(IMAGE_LEN, 1)[..62 * 512]);
    let (st, len) = f.one(kind::FLUSH, 0, &[]);
    assert_eq!((st, len), (status::OK, 1));
}

#[test]
fn get_id_answers_the_serial() {
    let mut f = fixture_with(false, 16, b"0123456789abcdefghijXYZ");
    let (st, len) = f.one(kind::GET_ID, 0, &[(DATA, 64, DESC_F_WRITE)]);
    assert_eq!((st, len), (status::OK, 21));
    assert_eq!(f.bytes(DATA, 21), b"0123456789abcdefghij\0");
    // A short buffer gets what fits; an empty serial is zeros.
    let mut f = fixture_with(false, 16, b"ab");
    let (st, len) = f.one(kind::GET_ID, 0, &[(DATA, 4, DESC_F_WRITE)]);
    assert_eq!((st, len), (status::OK, 5));
    assert_eq!(f.bytes(DATA, 5), b"ab\0\0\0");
}

fn segment(sector: u64, sectors: u32, flags: u32) -> Vec<u8> {
    let mut s = sector.to_le_bytes().to_vec();
    s.extend_from_slice(&sectors.to_le_bytes());
    s.extend_from_slice(&flags.to_le_bytes());
    s
}

#[test]
fn discard_and_write_zeroes_leave_zeros() {
    let mut f = fixture();
    let mut segs = segment(8, 8, 0);
    segs.extend(segment(32, 1, 0));
    f.mem.write_slice(&segs, GuestAddress(DATA)).unwrap();
    assert_eq!(f.one(kind::DISCARD, 0, &[(DATA, 32, 0)]), (status::OK, 1));
    let file = f.file();
    assert_eq!(file.len(), IMAGE_LEN, "the size stays");
    assert!(file[8 * 512..16 * 512].iter().all(|&b| b == 0));
    assert!(file[32 * 512..33 * 512].iter().all(|&b| b == 0));
    assert_eq!(
        file[16 * 512..32 * 512],
        pattern(IMAGE_LEN, 1)[16 * 512..32 * 512]
    );

    for (sector, flags) in [(40u64, 0u32), (50, 1)] {
        f.mem
            .write_slice(&segment(sector, 2, flags), GuestAddress(DATA))
            .unwrap();
        assert_eq!(
            f.one(kind::WRITE_ZEROES, 0, &[(DATA, 16, 0)]),
            (status::OK, 1)
        );
        let file = f.file();
        let at = sector as usize * 512;
        assert!(file[at..at + 1024].iter().all(|&b| b == 0));
        assert_eq!(
            file[at + 1024..at + 1536],
            pattern(IMAGE_LEN, 1)[at + 1024..at + 1536]
        );
    }
}

#[test]
fn bad_discard_segments() {
    let mut f = fixture();
    let before = f.file();
    let cases: [(u32, Vec<u8>, u8); 6] = [
        // Unmap on a discard, and reserved flags, are UNSUPP.
        (kind::DISCARD, segment(0, 1, 1), status::UNSUPP),
        (kind::WRITE_ZEROES, segment(0, 1, 2), status::UNSUPP),
        // Past the end, overflowing, over the limit, no whole segment.
        (kind::DISCARD, segment(63, 2, 0), status::IOERR),
        (
            kind::WRITE_ZEROES,
            segment(u64::MAX / 256, 1, 0),
            status::IOERR,
        ),
        (kind::WRITE_ZEROES, segment(0, 1 << 20, 0), status::IOERR),
        (kind::DISCARD, vec![0; 8], status::IOERR),
    ];
    for (k, seg, want) in cases {
        f.mem.write_slice(&seg, GuestAddress(DATA)).unwrap();
        let (st, len) = f.one(k, 0, &[(DATA, seg.len() as u32, 0)]);
        assert_eq!((st, len), (want, 1), "{k} {seg:?}");
    }
    // 17 segments: more than max_discard_seg.
    let many: Vec<u8> = (0..17).flat_map(|i| segment(i, 1, 0)).collect();
    f.mem.write_slice(&many, GuestAddress(DATA)).unwrap();
    assert_eq!(
        f.one(kind::DISCARD, 0, &[(DATA, many.len() as u32, 0)]).0,
        status::IOERR
    );
    assert_eq!(f.file(), before, "nothing was touched");
}

#[test]
fn out_of_range_sectors_get_ioerr() {
    let mut f = fixture();
    for sector in [64, 63, u64::MAX, u64::MAX / 512, (u64::MAX / 512) - 1] {
        let (st, len) = f.one(kind::IN, sector, &[(DATA, 1024, DESC_F_WRITE)]);
        assert_eq!((st, len), (status::IOERR, 1), "sector {sector:#x}");
    }
    // The last sector itself is fine.
    assert_eq!(
        f.one(kind::IN, 63, &[(DATA, 512, DESC_F_WRITE)]),
        (status::OK, 513)
    );
}

#[test]
fn unknown_types_get_unsupp() {
    let mut f = fixture();
    for k in [2, 3, 7, 9, 14, 0xffff_ffff] {
        assert_eq!(f.one(k, 0, &[]), (status::UNSUPP, 1), "type {k}");
    }
}

#[test]
fn malformed_headers_get_ioerr_or_are_dropped() {
    let mut f = fixture();
    f.header(HDR, kind::IN, 0);
    // Short header.
    f.ring.set_desc(&f.mem, 0, HDR, 8, DESC_F_NEXT, 1);
    f.ring
        .set_desc(&f.mem, 1, DATA, 512, DESC_F_WRITE | DESC_F_NEXT, 2);
    f.ring.set_desc(&f.mem, 2, STATUS, 1, DESC_F_WRITE, 0);
    f.ring.offer(&f.mem, 0);
    // Writable header.
    f.ring
        .set_desc(&f.mem, 3, HDR, 16, DESC_F_WRITE | DESC_F_NEXT, 4);
    f.ring.set_desc(&f.mem, 4, STATUS + 4, 1, DESC_F_WRITE, 0);
    f.ring.offer(&f.mem, 3);
    // Status alone.
    f.ring.set_desc(&f.mem, 5, STATUS + 5, 1, DESC_F_WRITE, 0);
    f.ring.offer(&f.mem, 5);
    // Status read-only: dropped. Status of length 0: dropped.
    f.ring.set_desc(&f.mem, 6, HDR, 16, DESC_F_NEXT, 7);
    f.ring.set_desc(&f.mem, 7, STATUS + 7, 1, 0, 0);
    f.ring.offer(&f.mem, 6);
    f.ring.set_desc(&f.mem, 8, HDR, 16, DESC_F_NEXT, 9);
    f.ring.set_desc(&f.mem, 9, STATUS + 9, 0, DESC_F_WRITE, 0);
    f.ring.offer(&f.mem, 8);
    // Header outside guest memory.
    f.ring
        .set_desc(&f.mem, 10, 0x10_0000 - 8, 16, DESC_F_NEXT, 11);
    f.ring.set_desc(&f.mem, 11, STATUS + 11, 1, DESC_F_WRITE, 0);
    f.ring.offer(&f.mem, 10);
    // Status outside guest memory: nothing to write, used length 0.
    f.ring.set_desc(&f.mem, 12, HDR, 16, DESC_F_NEXT, 13);
    f.ring.set_desc(&f.mem, 13, 0x20_0000, 1, DESC_F_WRITE, 0);
    f.ring.offer(&f.mem, 12);
    for s in [0u64, 4, 5, 7, 9, 11] {
        f.mem.write_obj(0xeeu8, GuestAddress(STATUS + s)).unwrap();
    }
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), 7);
    let want = [(0, 2), (3, 2), (5, 1), (6, 0), (8, 0), (10, 2), (12, 0)];
    for (slot, &(id, len)) in want.iter().enumerate() {
        let (got_id, got_len) = f.ring.used_elem(&f.mem, slot as u16);
        assert_eq!(got_id, id);
        assert_eq!(got_len, if len == 0 { 0 } else { 1 }, "request {id}");
    }
    for s in [0u64, 4, 5, 11] {
        assert_eq!(f.status_of(s as u16), status::IOERR, "status at +{s}");
    }
    assert_eq!(f.status_of(7), 0xee, "a read-only status is not written");
    assert_eq!(
        f.bytes(DATA, 512),
        vec![0; 512],
        "the short-header read did nothing"
    );
}

#[test]
fn data_in_the_wrong_direction_gets_ioerr() {
    let mut f = fixture();
    f.mem.write_slice(&[0x55; 512], GuestAddress(DATA)).unwrap();
    // A read into a device-readable buffer, a write from a device-writable one.
    assert_eq!(f.one(kind::IN, 0, &[(DATA, 512, 0)]), (status::IOERR, 1));
    assert_eq!(
        f.one(
            kind::OUT,
            0,
            &[(DATA, 512, 0), (DATA + 512, 512, DESC_F_WRITE)]
        ),
        (status::IOERR, 1)
    );
    assert_eq!(f.one(kind::GET_ID, 0, &[(DATA, 20, 0)]), (status::IOERR, 1));
    assert_eq!(f.bytes(DATA, 512), vec![0x55; 512]);
    assert_eq!(f.file(), pattern(IMAGE_LEN, 1));
}

#[test]
fn data_outside_guest_memory_or_not_whole_sectors_gets_ioerr() {
    let mut f = fixture();
    for (addr, len) in [
        (0x10_0000u64, 512u32),
        (0x10_0000 - 256, 512),
        (u64::MAX - 255, 512),
        (DATA, 100),
        (DATA, 513),
    ] {
        assert_eq!(
            f.one(kind::IN, 0, &[(addr, len, DESC_F_WRITE)]),
            (status::IOERR, 1),
            "{addr:#x}+{len}"
        );
        assert_eq!(f.one(kind::OUT, 0, &[(addr, len, 0)]), (status::IOERR, 1));
    }
    assert_eq!(f.file(), pattern(IMAGE_LEN, 1));
}

#[test]
fn huge_requests_get_ioerr_without_touching_anything() {
    // 0x41 descriptors of 1 MiB (all of guest memory each): 65 MiB > MAX_REQUEST_BYTES.
    let mut f = fixture_with(false, 128, b"");
    let data: Vec<_> = (0..65).map(|_| (0u64, 1u32 << 20, DESC_F_WRITE)).collect();
    f.mem
        .write_slice(&[0xab; 64], GuestAddress(0x8_0000))
        .unwrap();
    assert_eq!(f.one(kind::IN, 0, &data), (status::IOERR, 1));
    assert_eq!(f.bytes(0x8_0000, 64), vec![0xab; 64], "nothing was read");
    // A single descriptor of almost 4 GiB too.
    assert_eq!(
        f.one(kind::OUT, 0, &[(0, 0xffff_fe00, 0)]),
        (status::IOERR, 1)
    );
    // A chain of more than 4 GiB in all breaks the rules: virtio-queue stops walking it
    // and it is dropped.
    assert_eq!(f.one(kind::OUT, 0, &[(0, u32::MAX, 0)]), (0xee, 0));
    assert_eq!(f.file(), pattern(IMAGE_LEN, 1));
}

#[test]
fn looping_and_runaway_chains_are_dropped() {
    let mut f = fixture();
    f.header(HDR, kind::IN, 0);
    f.ring.set_desc(&f.mem, 0, HDR, 16, DESC_F_NEXT, 1);
    f.ring
        .set_desc(&f.mem, 1, DATA, 512, DESC_F_WRITE | DESC_F_NEXT, 2);
    f.ring
        .set_desc(&f.mem, 2, STATUS, 1, DESC_F_WRITE | DESC_F_NEXT, 0);
    f.ring.offer(&f.mem, 0);
    // A next index past the table.
    f.ring.set_desc(&f.mem, 3, HDR, 16, DESC_F_NEXT, 4);
    f.ring
        .set_desc(&f.mem, 4, STATUS + 4, 1, DESC_F_WRITE | DESC_F_NEXT, 999);
    f.ring.offer(&f.mem, 3);
    f.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), 2);
    assert_eq!(f.ring.used_elem(&f.mem, 0), (0, 0));
    assert_eq!(f.ring.used_elem(&f.mem, 1), (3, 0));
    assert_eq!(f.status_of(0), 0xee);
    // The device goes on: a good request after them works.
    assert_eq!(
        f.one(kind::IN, 1, &[(DATA, 512, DESC_F_WRITE)]),
        (status::OK, 513)
    );
}

#[test]
fn an_indirect_table_carries_a_request() {
    let mut f = fixture();
    let table = 0x4_0000u64;
    f.header(HDR, kind::IN, 2);
    f.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
    let mut t = Vec::new();
    for (addr, len, flags, next) in [
        (HDR, 16u32, DESC_F_NEXT, 1u16),
        (DATA, 512, DESC_F_WRITE | DESC_F_NEXT, 2),
        (STATUS, 1, DESC_F_WRITE, 0),
    ] {
        t.extend_from_slice(&addr.to_le_bytes());
        t.extend_from_slice(&len.to_le_bytes());
        t.extend_from_slice(&flags.to_le_bytes());
        t.extend_from_slice(&next.to_le_bytes());
    }
    f.mem.write_slice(&t, GuestAddress(table)).unwrap();
    f.ring.set_desc(&f.mem, 0, table, 48, DESC_F_INDIRECT, 0);
    f.ring.offer(&f.mem, 0);
    f.serve();
    assert_eq!(f.ring.used_elem(&f.mem, 0), (0, 513));
    assert_eq!(f.status_of(0), status::OK);
    assert_eq!(f.bytes(DATA, 512), f.file()[1024..1536]);
}

#[test]
fn a_read_only_disk_refuses_every_write_and_keeps_its_file() {
    let mut f = fixture_with(true, 16, b"");
    let before = f.file();
    f.mem.write_slice(&[0x77; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(f.one(kind::OUT, 0, &[(DATA, 512, 0)]), (status::IOERR, 1));
    f.mem
        .write_slice(&segment(0, 8, 0), GuestAddress(DATA + 0x1000))
        .unwrap();
    for k in [kind::DISCARD, kind::WRITE_ZEROES] {
        assert_eq!(f.one(k, 0, &[(DATA + 0x1000, 16, 0)]), (status::IOERR, 1));
    }
    // Reads and flushes still work.
    assert_eq!(
        f.one(kind::IN, 0, &[(DATA, 512, DESC_F_WRITE)]),
        (status::OK, 513)
    );
    assert_eq!(f.one(kind::FLUSH, 0, &[]), (status::OK, 1));
    assert_eq!(f.file(), before);
}

#[test]
fn passes_are_bounded() {
    let mut f = fixture_with(false, 256, b"");
    for i in 0..100u16 {
        f.request(i * 2, kind::FLUSH, 0, &[]);
    }
    assert!(f.q.serve(), "64 of 100 in the first pass, more pending");
    assert_eq!(f.ring.used_idx(&f.mem), MAX_REQUESTS_PER_PASS as u16);
    f.serve();
    assert_eq!(f.ring.used_idx(&f.mem), 100);
}

#[test]
fn event_idx_sets_avail_event_and_suppresses_interrupts() {
    let mut f = fixture();
    f.q.active.queue.set_event_idx(true);
    f.ring.set_used_event(&f.mem, 5); // interrupt only once the used idx passes 5
    assert_eq!(f.one(kind::FLUSH, 0, &[]), (status::OK, 1));
    assert_eq!(f.irq.used(), 0);
    assert_eq!(f.ring.avail_event(&f.mem), 1);
}

#[cfg_attr(
    feature = "fuzzing",
    ignore = "a worker thread's timing; the fuzzing feature serves inline"
)]
#[test]
fn the_device_serves_its_queue_on_a_worker_and_resets() {
    let dir = TempDir::new_with_prefix("/tmp/pv-blk-test").unwrap();
    let path = image_file(&dir, &pattern(IMAGE_LEN, 9));
    let image = Arc::new(DiskImage::open(&path, &ImageOptions::default()).unwrap());
    let mut dev = Block::new(image, BlockOptions::default());
    let mem = test_util::memory();
    let ring = DriverRing::new(&mem, 0x1_0000, 8);
    let irq = Arc::new(CountingInterrupt::default());
    dev.set_driver_features(u64::MAX);
    assert_eq!(dev.driver_features(), dev.device_features());
    dev.activate(mem.clone(), irq.clone(), vec![ring.queue(QUEUE_SIZE)])
        .unwrap();
    let mut h = kind::IN.to_le_bytes().to_vec();
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&5u64.to_le_bytes());
    mem.write_slice(&h, GuestAddress(HDR)).unwrap();
    ring.set_desc(&mem, 0, HDR, 16, DESC_F_NEXT, 1);
    ring.set_desc(&mem, 1, DATA, 512, DESC_F_WRITE | DESC_F_NEXT, 2);
    ring.set_desc(&mem, 2, STATUS, 1, DESC_F_WRITE, 0);
    ring.offer(&mem, 0);
    dev.queue_events()[0].write(1).unwrap(); // what the ioeventfd does
    ring.wait_used(&mem, 1);
    let mut got = vec![0; 512];
    mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    assert_eq!(got, pattern(IMAGE_LEN, 9)[5 * 512..6 * 512]);
    assert_eq!(ring.used_elem(&mem, 0), (0, 513));
    dev.reset();
    assert_eq!(dev.driver_features(), 0);
    assert!(dev
        .activate(mem, irq, vec![])
        .is_err_and(|e| matches!(e, ActivateError::QueueCount { got: 0, want: 1 })));
}

mod images;
mod inflight;
