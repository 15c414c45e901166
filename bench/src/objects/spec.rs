// SPDX-License-Identifier: Apache-2.0
//! Which objects an aarch64 or s390x floor creates (`--objects LIST`), and the peers
//! `polyvisor-bench objects` measures on each architecture.

/// One KVM object (or VM-wide switch) beyond the VM, its memory slot and one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// aarch64: the in-kernel vGIC (v3, else v2) at polyvisor's addresses, with
    /// polyvisor's interrupt count, initialised after the vCPU.
    Vgic,
    /// aarch64: an irqfd on this SPI (needs `vgic`).
    Irqfd(u32),
    /// s390x: `KVM_CAP_S390_USER_SIGP` (SIGP orders reach userspace).
    UserSigp,
    /// s390x: `KVM_CAP_S390_CSS_SUPPORT` (channel I/O reaches userspace).
    CssSupport,
    /// s390x: `KVM_CAP_S390_IRQCHIP`, `KVM_CREATE_IRQCHIP` and the FLIC with an adapter
    /// per ISC: what the first virtio-ccw device with adapter interrupts sets up.
    Flic,
}

/// The objects of one floor run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objects {
    pub items: Vec<Item>,
}

impl Objects {
    /// Parse `LIST` for `arch`: comma-separated `vgic`, `irqfd=SPI` (aarch64) or
    /// `user-sigp`, `css-support`, `flic` (s390x); `bare` or nothing is none of them.
    pub fn parse(list: &str, arch: &str) -> Result<Self, String> {
        let mut items = Vec::new();
        for word in list.split(',').filter(|s| !s.is_empty() && *s != "bare") {
            let item = match (arch, word.split_once('=')) {
                ("aarch64", None) if word == "vgic" => Item::Vgic,
                ("aarch64", Some(("irqfd", spi))) => Item::Irqfd(
                    spi.parse()
                        .map_err(|_| format!("--objects: irqfd={spi}: not an SPI number"))?,
                ),
                ("s390x", None) if word == "user-sigp" => Item::UserSigp,
                ("s390x", None) if word == "css-support" => Item::CssSupport,
                ("s390x", None) if word == "flic" => Item::Flic,
                _ => {
                    return Err(format!(
                        "--objects: '{word}' is not an object of an {arch} floor \
                         (aarch64: vgic, irqfd=SPI; s390x: user-sigp, css-support, flic; bare)"
                    ))
                }
            };
            items.push(item);
        }
        let o = Self { items };
        if o.irqfd_spis().next().is_some() && !o.has(Item::Vgic) {
            return Err("--objects: irqfd needs vgic".into());
        }
        Ok(o)
    }

    pub fn has(&self, item: Item) -> bool {
        self.items.contains(&item)
    }

    pub fn irqfd_spis(&self) -> impl Iterator<Item = u32> + '_ {
        self.items.iter().filter_map(|i| match i {
            Item::Irqfd(spi) => Some(*spi),
            _ => None,
        })
    }
}

/// What a peer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `objects-floor --objects LIST`.
    Floor(&'static str),
    /// `polyvisor run` on the tiny guest, with these extra arguments.
    Polyvisor(&'static [&'static str]),
    /// `polyvisor --version`: loading and starting the binary, no VM (what polyvisor's
    /// start → exit owes to the executable itself).
    PolyvisorExec,
    /// `polyvisor-bench --help`: the same for the floors' executable.
    FloorExec,
}

/// One peer of the objects table.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// Short name in the `objects:` lines (`polyvisor`, `bare`, `irqchip`, `same`, ...).
    pub key: &'static str,
    pub name: &'static str,
    pub kind: Kind,
}

impl Peer {
    /// The floor's object list, for floors.
    pub fn objects(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Floor(list) => Some(list),
            _ => None,
        }
    }
}

/// What polyvisor creates for a guest without devices, as the floors spell it. aarch64:
/// the vGIC and an irqfd for each platform device's SPI (UART 1, RTC 2, GPIO 3:
/// `arch_aarch64::layout`). s390x: user SIGP and CSS support (enabled for every VM, so a
/// device can be hotplugged into one booted without); the FLIC is made with the first
/// virtio-ccw device that asks for adapter interrupts.
pub const AARCH64_POLYVISOR_OBJECTS: &str = "vgic,irqfd=1,irqfd=2,irqfd=3";
pub const S390X_POLYVISOR_OBJECTS: &str = "user-sigp,css-support";

/// The peers measured on `arch`, or `None` where this benchmark does not run.
pub fn peers(arch: &str) -> Option<Vec<Peer>> {
    let floor = |key, name, objects| Peer {
        key,
        name,
        kind: Kind::Floor(objects),
    };
    // polyvisor as users run it, then without its seccomp filters, then only started:
    // what of polyvisor's start → exit is its own code, its sandbox, and its executable.
    let polyvisor = [
        Peer {
            key: "polyvisor",
            name: "polyvisor",
            kind: Kind::Polyvisor(&[]),
        },
        Peer {
            key: "polyvisor-noseccomp",
            name: "polyvisor --seccomp false",
            kind: Kind::Polyvisor(&["--seccomp", "false"]),
        },
        Peer {
            key: "polyvisor-exec",
            name: "polyvisor --version",
            kind: Kind::PolyvisorExec,
        },
    ];
    // What differs per architecture: polyvisor's objects, the irqchip floor, and extras.
    let (same, irqchip, extra): (_, _, &[Peer]) = match arch {
        "aarch64" => (
            AARCH64_POLYVISOR_OBJECTS,
            floor("irqchip", "floor: vGIC only (irqchip)", "vgic"),
            &[],
        ),
        // s390x has no irqchip to create: its interrupt controller is always in the
        // kernel. The "irqchip floor" is user SIGP alone, which every SMP guest needs.
        "s390x" => (
            S390X_POLYVISOR_OBJECTS,
            floor("irqchip", "floor: user SIGP only", "user-sigp"),
            &[Peer {
                key: "flic",
                name: "floor: polyvisor's + FLIC",
                kind: Kind::Floor("user-sigp,css-support,flic"),
            }],
        ),
        _ => return None,
    };
    let mut list = polyvisor.to_vec();
    list.push(floor("same", "floor: polyvisor's objects", same));
    list.push(irqchip);
    list.push(floor("bare", "floor: bare", "bare"));
    list.extend_from_slice(extra);
    list.push(Peer {
        key: "floor-exec",
        name: "polyvisor-bench --help",
        kind: Kind::FloorExec,
    });
    Some(list)
}
