// SPDX-License-Identifier: Apache-2.0
//! Checks of the blob: a small independent reader walks the structure block, and `dtc`
//! decompiles it.

use std::collections::BTreeMap;

use super::*;
use crate::layout::{BOOT_TIMER, GPIO, GPIO_SPI, RTC, RTC_SPI, UART, UART_SPI};

/// Properties by `"<node path>:<name>"`, read back from the blob's structure block.
fn read_fdt(blob: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let be32 = |off: usize| u32::from_be_bytes(blob[off..off + 4].try_into().unwrap());
    assert_eq!(be32(0), 0xd00d_feed, "magic");
    assert_eq!(be32(4) as usize, blob.len(), "totalsize");
    let structs = be32(8) as usize;
    let strings = be32(12) as usize;
    let cstr = |off: usize| {
        let end = off + blob[off..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8(blob[off..end].to_vec()).unwrap()
    };
    let mut props = BTreeMap::new();
    let mut path: Vec<String> = Vec::new();
    let mut off = structs;
    loop {
        let token = be32(off);
        off += 4;
        match token {
            1 => {
                let name = cstr(off);
                off += (name.len() + 1).div_ceil(4) * 4;
                path.push(name);
            }
            2 => {
                path.pop();
            }
            3 => {
                let len = be32(off) as usize;
                let name = cstr(strings + be32(off + 4) as usize);
                off += 8;
                let node = if path.len() <= 1 {
                    "/".to_string()
                } else {
                    path[1..].iter().map(|p| format!("/{p}")).collect()
                };
                props.insert(format!("{node}:{name}"), blob[off..off + len].to_vec());
                off += len.div_ceil(4) * 4;
            }
            4 => {}
            9 => break,
            t => panic!("bad token {t} at {off:#x}"),
        }
    }
    assert!(path.is_empty());
    props
}

fn cells(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn str_prop(props: &BTreeMap<String, Vec<u8>>, key: &str) -> String {
    let v = props.get(key).unwrap_or_else(|| panic!("no {key}"));
    String::from_utf8(v.clone()).unwrap()
}

const RAM: [RamRange; 1] = [RamRange {
    start: 0x4000_0000,
    size: 256 << 20,
}];

const PLATFORM: [PlatformDevice; 5] = [UART, RTC, GPIO, crate::layout::PVPANIC, BOOT_TIMER];

fn config(vcpus: u32, gic: GicVersion, virtio: &[VirtioMmioNode]) -> FdtConfig<'_> {
    FdtConfig {
        vcpus,
        ram: &RAM,
        gic,
        cmdline: "console=ttyS0 panic=-1",
        initrd: Some((0x4f00_0000, 0x12345)),
        devices: &PLATFORM,
        virtio,
    }
}

#[test]
fn gicv3_machine_blob() {
    let blob = build(&config(2, GicVersion::V3, &[])).unwrap();
    let p = read_fdt(&blob);

    assert_eq!(str_prop(&p, "/:compatible"), "linux,dummy-virt\0");
    assert_eq!(cells(&p["/:#address-cells"]), [2]);
    assert_eq!(cells(&p["/:interrupt-parent"]), [PHANDLE_GIC]);

    assert_eq!(str_prop(&p, "/memory@40000000:device_type"), "memory\0");
    assert_eq!(u64s(&p["/memory@40000000:reg"]), [0x4000_0000, 256 << 20]);

    for (i, node) in ["cpu@0", "cpu@1"].iter().enumerate() {
        let n = format!("/cpus/{node}");
        assert_eq!(str_prop(&p, &format!("{n}:enable-method")), "psci\0");
        assert_eq!(str_prop(&p, &format!("{n}:device_type")), "cpu\0");
        assert_eq!(u64s(&p[&format!("{n}:reg")]), [i as u64]);
    }
    assert!(!p.contains_key("/cpus/cpu@2:reg"));

    assert_eq!(str_prop(&p, "/psci:compatible"), "arm,psci-0.2\0");
    assert_eq!(str_prop(&p, "/psci:method"), "hvc\0");

    assert_eq!(str_prop(&p, "/timer:compatible"), "arm,armv8-timer\0");
    assert_eq!(
        cells(&p["/timer:interrupts"]),
        [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]
    );

    let gic = "/intc@8000000";
    assert_eq!(str_prop(&p, &format!("{gic}:compatible")), "arm,gic-v3\0");
    assert_eq!(cells(&p[&format!("{gic}:#interrupt-cells")]), [3]);
    assert!(p[&format!("{gic}:interrupt-controller")].is_empty());
    assert_eq!(cells(&p[&format!("{gic}:phandle")]), [PHANDLE_GIC]);
    assert_eq!(
        u64s(&p[&format!("{gic}:reg")]),
        [0x0800_0000, 0x1_0000, 0x080a_0000, 2 * 0x2_0000]
    );

    assert_eq!(str_prop(&p, "/chosen:bootargs"), "console=ttyS0 panic=-1\0");
    assert_eq!(str_prop(&p, "/chosen:stdout-path"), "/uart@9000000\0");
    assert_eq!(u64s(&p["/chosen:linux,initrd-start"]), [0x4f00_0000]);
    assert_eq!(u64s(&p["/chosen:linux,initrd-end"]), [0x4f01_2345]);

    let uart = "/uart@9000000";
    assert_eq!(str_prop(&p, &format!("{uart}:compatible")), "ns16550a\0");
    assert_eq!(u64s(&p[&format!("{uart}:reg")]), [0x0900_0000, 0x1000]);
    assert_eq!(cells(&p[&format!("{uart}:interrupts")]), [0, UART_SPI, 1]);
    assert_eq!(cells(&p[&format!("{uart}:reg-shift")]), [0]);
    assert_eq!(cells(&p[&format!("{uart}:reg-io-width")]), [1]);
    assert_eq!(cells(&p[&format!("{uart}:clock-frequency")]), [1_843_200]);

    let rtc = "/rtc@9010000";
    assert_eq!(
        str_prop(&p, &format!("{rtc}:compatible")),
        "arm,pl031\0arm,primecell\0"
    );
    assert_eq!(cells(&p[&format!("{rtc}:clocks")]), [PHANDLE_APB_PCLK]);
    assert_eq!(str_prop(&p, &format!("{rtc}:clock-names")), "apb_pclk\0");
    assert_eq!(cells(&p[&format!("{rtc}:interrupts")]), [0, RTC_SPI, 4]);
    assert_eq!(
        cells(&p["/apb-pclk:phandle"]),
        [PHANDLE_APB_PCLK],
        "the clock the RTC names exists"
    );
    assert_eq!(str_prop(&p, "/apb-pclk:compatible"), "fixed-clock\0");

    let pvpanic = "/pvpanic@9040000";
    assert_eq!(
        str_prop(&p, &format!("{pvpanic}:compatible")),
        "qemu,pvpanic-mmio\0"
    );
    assert_eq!(u64s(&p[&format!("{pvpanic}:reg")]), [0x0904_0000, 2]);

    let gpio = "/pl061@9030000";
    assert_eq!(
        str_prop(&p, &format!("{gpio}:compatible")),
        "arm,pl061\0arm,primecell\0"
    );
    assert_eq!(u64s(&p[&format!("{gpio}:reg")]), [0x0903_0000, 0x1000]);
    assert_eq!(cells(&p[&format!("{gpio}:interrupts")]), [0, GPIO_SPI, 1]);
    assert!(p[&format!("{gpio}:gpio-controller")].is_empty());
    assert_eq!(cells(&p[&format!("{gpio}:#gpio-cells")]), [2]);
    assert_eq!(cells(&p[&format!("{gpio}:clocks")]), [PHANDLE_APB_PCLK]);
    assert_eq!(cells(&p[&format!("{gpio}:phandle")]), [PHANDLE_GPIO]);
    assert_eq!(str_prop(&p, "/gpio-keys:compatible"), "gpio-keys\0");
    let key = "/gpio-keys/poweroff";
    assert_eq!(cells(&p[&format!("{key}:linux,code")]), [116], "KEY_POWER");
    assert_eq!(
        cells(&p[&format!("{key}:gpios")]),
        [PHANDLE_GPIO, 3, 0],
        "line 3 of the PL061, active high"
    );
    assert_eq!(
        u32::from(devices::legacy::pl061::POWER_KEY_LINE),
        POWER_KEY_LINE,
        "the FDT and the device model agree on the line"
    );
}

#[test]
fn gicv2_many_cpus_no_initrd_and_virtio() {
    let virtio = [
        VirtioMmioNode::slot(0).unwrap(),
        VirtioMmioNode::slot(3).unwrap(),
    ];
    let mut cfg = config(3, GicVersion::V2, &virtio);
    cfg.initrd = None;
    let p = read_fdt(&build(&cfg).unwrap());
    let gic = "/intc@8000000";
    assert_eq!(
        str_prop(&p, &format!("{gic}:compatible")),
        "arm,cortex-a15-gic\0"
    );
    assert_eq!(
        u64s(&p[&format!("{gic}:reg")]),
        [0x0800_0000, 0x1000, 0x0801_0000, 0x2000]
    );
    // PPIs routed to CPUs 0..2 (mask 0b111 in bits 8..15).
    assert_eq!(cells(&p["/timer:interrupts"])[2], 0x704);
    assert!(!p.contains_key("/chosen:linux,initrd-start"));
    assert_eq!(u64s(&p["/cpus/cpu@2:reg"]), [2]);

    let v = "/virtio_mmio@a000600";
    assert_eq!(str_prop(&p, &format!("{v}:compatible")), "virtio,mmio\0");
    assert_eq!(u64s(&p[&format!("{v}:reg")]), [0x0a00_0600, 0x200]);
    assert_eq!(cells(&p[&format!("{v}:interrupts")]), [0, 19, 1]);
    assert!(p.contains_key("/virtio_mmio@a000000:dma-coherent"));
    assert!(VirtioMmioNode::slot(32).is_none());
}

#[test]
fn cpu_nodes_use_mpidr_affinity() {
    let p = read_fdt(&build(&config(18, GicVersion::V3, &[])).unwrap());
    assert_eq!(u64s(&p["/cpus/cpu@f:reg"]), [0xf]);
    assert_eq!(u64s(&p["/cpus/cpu@100:reg"]), [0x100]);
    assert_eq!(u64s(&p["/cpus/cpu@101:reg"]), [0x101]);
    assert_eq!(u64s(&p["/intc@8000000:reg"])[3], 18 * 0x2_0000);
}

#[test]
fn machine_without_serial_or_rtc() {
    let mut cfg = config(1, GicVersion::V3, &[]);
    let only_pvpanic = [crate::layout::PVPANIC];
    cfg.devices = &only_pvpanic;
    let p = read_fdt(&build(&cfg).unwrap());
    assert!(!p.contains_key("/chosen:stdout-path"));
    assert!(!p
        .keys()
        .any(|k| k.starts_with("/uart@") || k.starts_with("/rtc@") || k.contains("gpio")));
}

/// The tree describes exactly the devices the backend's platform lists (the boot timer,
/// for test guests only, excepted), each at its address.
#[test]
fn every_listed_device_has_its_node() {
    let platform = crate::layout::platform();
    let mut cfg = config(1, GicVersion::V3, &[]);
    cfg.devices = &platform.devices;
    let p = read_fdt(&build(&cfg).unwrap());
    for dev in &platform.devices {
        let at = format!("@{:x}:reg", dev.base);
        let described = p.keys().any(|k| k.ends_with(&at));
        assert_eq!(described, dev.kind != DeviceKind::BootTimer, "{dev:?}");
    }
}

/// An independent check: Debian's `dtc` must accept the blob and decompile it to the
/// nodes and properties we meant.
#[test]
fn dtc_decompiles_the_blob() {
    use std::process::Command;
    let virtio = [VirtioMmioNode::slot(1).unwrap()];
    let blob = build(&config(2, GicVersion::V3, &virtio)).unwrap();
    let dir = std::env::temp_dir().join(format!("pv-fdt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("guest.dtb");
    std::fs::write(&path, &blob).unwrap();
    let out = match test_support::run_tool(|| {
        let mut c = Command::new("dtc");
        c.args(["-I", "dtb", "-O", "dts", "-o", "-"]).arg(&path);
        c
    }) {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = std::fs::remove_dir_all(&dir);
            let why = "`dtc` is not on PATH (Debian package device-tree-compiler)";
            // In CI a missing tool is a failure, not a pass (cross/setup installs it).
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why}; CI=true, so the check cannot be skipped"
            );
            // Straight to stderr: libtest does not capture this, so the skip is seen.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("SKIPPED dtc_decompiles_the_blob: {why}\n").as_bytes(),
            );
            return;
        }
        Err(e) => panic!("running dtc: {e}"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let dts = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dtc failed: {stderr}");
    // dtc warns about structural mistakes (bad unit addresses, missing cells) on stderr.
    assert!(!stderr.contains("Warning"), "dtc warnings:\n{stderr}");
    for needle in [
        "compatible = \"linux,dummy-virt\";",
        "memory@40000000 {",
        "device_type = \"memory\";",
        "reg = <0x00 0x40000000 0x00 0x10000000>;",
        "cpu@1 {",
        "enable-method = \"psci\";",
        "reg = <0x00 0x01>;",
        "compatible = \"arm,psci-0.2\";",
        "method = \"hvc\";",
        "compatible = \"arm,armv8-timer\";",
        "interrupts = <0x01 0x0d 0x04 0x01 0x0e 0x04 0x01 0x0b 0x04 0x01 0x0a 0x04>;",
        "intc@8000000 {",
        "compatible = \"arm,gic-v3\";",
        "#interrupt-cells = <0x03>;",
        "interrupt-controller;",
        "reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x40000>;",
        "bootargs = \"console=ttyS0 panic=-1\";",
        "stdout-path = \"/uart@9000000\";",
        "linux,initrd-start = <0x00 0x4f000000>;",
        "linux,initrd-end = <0x00 0x4f012345>;",
        "uart@9000000 {",
        "compatible = \"ns16550a\";",
        "reg-shift = <0x00>;",
        "reg-io-width = <0x01>;",
        "interrupts = <0x00 0x01 0x01>;",
        "compatible = \"arm,pl031\\0arm,primecell\";",
        "clock-names = \"apb_pclk\";",
        "compatible = \"fixed-clock\";",
        "pl061@9030000 {",
        "compatible = \"arm,pl061\\0arm,primecell\";",
        "gpio-controller;",
        "gpios = <0x03 0x03 0x00>;",
        "linux,code = <0x74>;",
        "virtio_mmio@a000200 {",
        "compatible = \"virtio,mmio\";",
        "interrupts = <0x00 0x11 0x01>;",
    ] {
        assert!(dts.contains(needle), "dtc output lacks `{needle}`:\n{dts}");
    }
}
