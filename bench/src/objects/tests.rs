// SPDX-License-Identifier: Apache-2.0
use super::spec::{AARCH64_POLYVISOR_OBJECTS, S390X_POLYVISOR_OBJECTS};
use super::*;

#[test]
fn lists_parse_per_architecture_and_refuse_the_other_ones_objects() {
    let a = Objects::parse(AARCH64_POLYVISOR_OBJECTS, "aarch64").unwrap();
    assert!(a.has(Item::Vgic));
    assert_eq!(a.irqfd_spis().collect::<Vec<_>>(), [1, 2, 3]);
    let s = Objects::parse(S390X_POLYVISOR_OBJECTS, "s390x").unwrap();
    assert_eq!(s.items, [Item::UserSigp, Item::CssSupport]);
    assert_eq!(Objects::parse("bare", "s390x").unwrap(), Objects::default());
    assert_eq!(Objects::parse("", "aarch64").unwrap(), Objects::default());
    assert!(Objects::parse("flic", "aarch64").is_err());
    assert!(Objects::parse("vgic", "s390x").is_err());
    assert!(
        Objects::parse("irqfd=1", "aarch64").is_err(),
        "irqfd without the vGIC"
    );
    assert!(Objects::parse("vgic,irqfd=x", "aarch64").is_err());
    assert!(Objects::parse("vgic", "x86_64").is_err());
}

#[test]
fn every_floor_of_every_peer_list_parses_and_the_ratios_have_their_floors() {
    for arch in ["aarch64", "s390x"] {
        let peers = peers(arch).unwrap();
        for key in [
            "polyvisor",
            "polyvisor-noseccomp",
            "polyvisor-exec",
            "same",
            "irqchip",
            "bare",
            "floor-exec",
        ] {
            assert!(peers.iter().any(|p| p.key == key), "{arch}: no {key}");
        }
        for p in peers.iter().filter_map(Peer::objects) {
            Objects::parse(p, arch).unwrap();
        }
    }
    assert!(peers("x86_64").is_none());
}

#[test]
fn the_aarch64_guest_is_an_image_that_powers_off() {
    let g = guest_bytes("aarch64").unwrap();
    let word = |at: usize| u32::from_le_bytes(g[at..at + 4].try_into().unwrap());
    assert_eq!(word(56), 0x644d_5241, "ARM\\x64 magic");
    // b #64: imm26 = 64 / 4.
    assert_eq!(word(0), 0x1400_0000 | 16);
    // x0 = 0x84000008 (PSCI SYSTEM_OFF), then hvc #0.
    assert_eq!(word(64) >> 5 & 0xffff, 0x0008);
    assert_eq!(word(68) >> 5 & 0xffff, 0x8400);
    assert_eq!(word(72), 0xd400_0002);
    // polyvisor's own loader takes it: placed at the start of RAM, little-endian.
    let h = arch_aarch64::loader::parse_image_header(&g).unwrap();
    assert_eq!((h.text_offset, h.image_size, h.flags & 1), (0, 4096, 0));
}

#[test]
fn the_s390x_guest_loads_the_quiesce_wait_psw() {
    let g = guest_bytes("s390x").unwrap();
    // lgfi %r5,0x10100; lpswe 0(%r5)
    assert_eq!(
        &g[0x10000..0x1000a],
        &[0xc0, 0x51, 0, 1, 1, 0, 0xb2, 0xb2, 0x50, 0]
    );
    let be = |at: usize| u64::from_be_bytes(g[at..at + 8].try_into().unwrap());
    // A disabled (no I/O, external, machine-check bits) wait PSW in 64-bit mode at 0xfff.
    assert_eq!(be(0x10100), 0x0002_0001_8000_0000);
    assert_eq!(be(0x10108), 0xfff);
    assert!(guest_bytes("x86_64").is_err());
}
