// SPDX-License-Identifier: Apache-2.0
//! The CPUID a vCPU sees: the host's KVM-supported leaves with the topology, APIC id and
//! hypervisor bits made true for this VM. Vendor-neutral: Intel leaves (4, 0xB, 0x1F) and
//! AMD leaves (0x8000_0008, 0x8000_001E) are fixed when present and left alone otherwise.

/// One CPUID entry (function/index → registers), independent of KVM's structures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    pub function: u32,
    pub index: u32,
    pub flags: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Where this vCPU sits in the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    /// This vCPU's index, also its APIC id.
    pub cpu_index: u32,
    /// vCPUs in the VM; modelled as one package with that many single-thread cores.
    pub cpu_count: u32,
}

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_V2_EXT_TOPOLOGY: u32 = 0x1f;
const LEAF_AMD_SIZES: u32 = 0x8000_0008;
const LEAF_AMD_EXT_APIC_ID: u32 = 0x8000_001e;

const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Bits needed to number `count` items (ceil(log2(count))).
fn id_bits(count: u32) -> u32 {
    count.max(1).next_power_of_two().trailing_zeros()
}

/// Apply this VM's topology to `entries` in place.
pub fn apply_topology(entries: &mut [CpuidEntry], topo: Topology) {
    let apic_id = topo.cpu_index;
    let count = topo.cpu_count.max(1);
    let core_bits = id_bits(count);
    for e in entries.iter_mut() {
        match e.function {
            LEAF_FEATURES => {
                e.ebx = (e.ebx & 0x0000_ffff)
                    | ((apic_id & 0xff) << 24)
                    | ((count.min(255) & 0xff) << 16);
                e.ecx |= ECX_HYPERVISOR;
                if count > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE_PARAMS => {
                // EAX[31:26]: addressable core ids in the package, minus one.
                let cores = (1u32 << core_bits).min(64) - 1;
                e.eax = (e.eax & 0x03ff_ffff) | (cores << 26);
                // EAX[25:14]: logical CPUs sharing this cache, minus one: one thread per
                // core shares L1/L2; the last level is shared by the package.
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 {
                    (1u32 << core_bits) - 1
                } else {
                    0
                };
                e.eax = (e.eax & !(0xfff << 14)) | ((sharing & 0xfff) << 14);
            }
            LEAF_EXT_TOPOLOGY | LEAF_V2_EXT_TOPOLOGY => {
                let (eax, ebx, level_type) = match e.index {
                    0 => (0, 1, LEVEL_TYPE_SMT),
                    1 => (core_bits, count, LEVEL_TYPE_CORE),
                    _ => (0, 0, 0),
                };
                e.eax = eax;
                e.ebx = ebx;
                e.ecx = (level_type << 8) | (e.index & 0xff);
                e.edx = apic_id;
            }
            LEAF_AMD_SIZES => {
                // ECX[15:12]: APIC id bits for cores; ECX[7:0]: cores minus one.
                e.ecx = (e.ecx & !0xf0ff) | ((core_bits & 0xf) << 12) | ((count - 1) & 0xff);
            }
            LEAF_AMD_EXT_APIC_ID => {
                e.eax = apic_id;
                e.ebx = apic_id & 0xff; // one thread per core, core id = apic id
                e.ecx = 0; // node 0
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32) -> CpuidEntry {
        CpuidEntry {
            function,
            index,
            ebx: 0x0008_0800,
            ..Default::default()
        }
    }

    #[test]
    fn leaf_1_carries_apic_id_count_and_hypervisor_bit() {
        let mut e = vec![leaf(1, 0)];
        apply_topology(
            &mut e,
            Topology {
                cpu_index: 3,
                cpu_count: 4,
            },
        );
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_eq!(e[0].ebx & 0xffff, 0x0800, "CLFLUSH size kept");
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(e[0].edx & EDX_HTT, 0);

        let mut single = vec![CpuidEntry {
            edx: EDX_HTT,
            ..leaf(1, 0)
        }];
        apply_topology(
            &mut single,
            Topology {
                cpu_index: 0,
                cpu_count: 1,
            },
        );
        assert_eq!(single[0].edx & EDX_HTT, 0);
    }

    #[test]
    fn extended_topology_levels() {
        let mut e = vec![leaf(0xb, 0), leaf(0xb, 1), leaf(0xb, 2)];
        apply_topology(
            &mut e,
            Topology {
                cpu_index: 5,
                cpu_count: 6,
            },
        );
        assert_eq!((e[0].eax, e[0].ebx, e[0].ecx, e[0].edx), (0, 1, 0x100, 5));
        assert_eq!((e[1].eax, e[1].ebx, e[1].ecx, e[1].edx), (3, 6, 0x201, 5));
        assert_eq!((e[2].eax, e[2].ebx, e[2].ecx), (0, 0, 2));
    }

    #[test]
    fn amd_and_cache_leaves() {
        let mut e = vec![
            leaf(0x8000_0008, 0),
            leaf(0x8000_001e, 0),
            CpuidEntry {
                eax: 3 << 5,
                ..leaf(4, 3)
            },
            CpuidEntry {
                eax: 1 << 5,
                ..leaf(4, 0)
            },
        ];
        apply_topology(
            &mut e,
            Topology {
                cpu_index: 2,
                cpu_count: 3,
            },
        );
        assert_eq!(e[0].ecx & 0xf0ff, (2 << 12) | 2);
        assert_eq!(e[1].eax, 2);
        assert_eq!(e[2].eax >> 26, 3);
        assert_eq!((e[2].eax >> 14) & 0xfff, 3, "L3 shared by the package");
        assert_eq!((e[3].eax >> 14) & 0xfff, 0, "L1 private");
        assert_eq!(id_bits(1), 0);
        assert_eq!(id_bits(2), 1);
        assert_eq!(id_bits(5), 3);
    }
}
