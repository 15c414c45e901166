// SPDX-License-Identifier: Apache-2.0
//! The flattened device tree the guest kernel boots with, written with vm-fdt.
//!
//! It describes: RAM (`/memory`), one `cpu@` node per vCPU (`enable-method = "psci"`, `reg`
//! = MPIDR affinity), PSCI 0.2 over HVC, the architected timer's PPIs, the GIC (v3, or v2),
//! `/chosen` (command line, initrd, stdout path), the 16550 UART, the PL031 RTC with the
//! APB clock it names, the PL061 GPIO controller with a `gpio-keys` power key on its line 3
//! (`KEY_POWER`, what the VMM presses on SIGTERM), and any virtio-mmio devices.
//!
//! # Adding virtio-mmio devices
//! A virtio-mmio transport the VMM places on the MMIO bus appears to the guest through a
//! [`VirtioMmioNode`] in [`FdtConfig::virtio`]: its register window and the SPI its
//! interrupt line (from `Vm::interrupt_line(spi)`) is bound to. [`VirtioMmioNode::slot`]
//! gives slot `n` of the fixed virtio window in [`crate::layout`]. The backend keeps the
//! list in its VM (see `KvmVm::add_virtio_mmio` on aarch64 hosts) and writes the FDT in
//! `Vm::load`, so devices must be added before `load`. Each becomes a node
//! `virtio_mmio@<base>` with `compatible = "virtio,mmio"`, `dma-coherent` and an
//! edge-triggered SPI (the line is an irqfd, which pulses).
//!
//! The FDT format itself is big-endian; vm-fdt writes it so on every host.

use arch::{DeviceKind, PlatformDevice, RamRange};
use vm_fdt::{Error as FdtError, FdtWriter};

type FdtResult<T> = std::result::Result<T, FdtError>;

use crate::layout::{self, mpidr_affinity};

/// Which GIC the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    V2,
    V3,
}

/// A virtio-mmio device's window and interrupt, for its FDT node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmioNode {
    pub base: u64,
    pub size: u64,
    /// SPI number (0-based; the GIC INTID is `32 + spi`), also the irqfd GSI.
    pub spi: u32,
}

impl VirtioMmioNode {
    /// Slot `n` of the fixed virtio-mmio window, or `None` past the last slot.
    pub fn slot(n: u32) -> Option<Self> {
        (n < layout::VIRTIO_MMIO_SLOTS).then(|| Self {
            base: layout::VIRTIO_MMIO_BASE + u64::from(n) * layout::VIRTIO_MMIO_SIZE,
            size: layout::VIRTIO_MMIO_SIZE,
            spi: layout::VIRTIO_MMIO_FIRST_SPI + n,
        })
    }
}

/// Everything the device tree describes.
#[derive(Clone, Debug)]
pub struct FdtConfig<'a> {
    pub vcpus: u32,
    pub ram: &'a [RamRange],
    pub gic: GicVersion,
    pub cmdline: &'a str,
    /// `(start, size)` of the initrd in guest memory.
    pub initrd: Option<(u64, u64)>,
    /// The platform's devices, described in this order: the 16550 (also `stdout-path`),
    /// the PL031, the PL061 (line [`POWER_KEY_LINE`] is the power key), pvpanic
    /// (`qemu,pvpanic-mmio`). The boot timer is for test guests and not described; the x86
    /// kinds have no node.
    pub devices: &'a [PlatformDevice],
    pub virtio: &'a [VirtioMmioNode],
}

const PHANDLE_GIC: u32 = 1;
const PHANDLE_APB_PCLK: u32 = 2;
const PHANDLE_GPIO: u32 = 3;

/// The GPIO line of the power key, and the input event it reports (as QEMU `virt`; the
/// same numbers as `devices::legacy::pl061`, which the VMM presses).
pub const POWER_KEY_LINE: u32 = 3;
const KEY_POWER: u32 = 116;
const GPIO_ACTIVE_HIGH: u32 = 0;

/// Interrupt specifier cells (`#interrupt-cells = 3`): type, number, flags.
const GIC_FDT_IRQ_TYPE_SPI: u32 = 0;
const GIC_FDT_IRQ_TYPE_PPI: u32 = 1;
const IRQ_TYPE_EDGE_RISING: u32 = 1;
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;

/// Architected timer PPIs: secure physical, non-secure physical, virtual, hypervisor.
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// The GIC maintenance interrupt (PPI 9).
const GIC_MAINTENANCE_PPI: u32 = 9;
/// The 16550's input clock: the classic 1.8432 MHz crystal (divisor 1 = 115200 baud).
pub const UART_CLOCK_HZ: u32 = 1_843_200;
const APB_PCLK_HZ: u32 = 24_000_000;
/// GICv2's distributor is 4 KiB.
const GICV2_DIST_SIZE: u64 = 0x1000;

/// Build the device tree blob for `cfg`.
pub fn build(cfg: &FdtConfig) -> FdtResult<Vec<u8>> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_string("model", "polyvisor")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", PHANDLE_GIC)?;

    memory_node(&mut fdt, cfg.ram)?;
    cpus_node(&mut fdt, cfg.vcpus)?;
    psci_node(&mut fdt)?;
    timer_node(&mut fdt, cfg)?;
    gic_node(&mut fdt, cfg)?;
    chosen_node(&mut fdt, cfg)?;
    apb_pclk_node(&mut fdt)?;
    for dev in cfg.devices {
        match dev.kind {
            DeviceKind::Serial16550 => uart_node(&mut fdt, dev)?,
            DeviceKind::Pl031Rtc => rtc_node(&mut fdt, dev)?,
            DeviceKind::Pl061Gpio => gpio_nodes(&mut fdt, dev)?,
            DeviceKind::PvPanic => pvpanic_node(&mut fdt, dev)?,
            DeviceKind::BootTimer
            | DeviceKind::I8042
            | DeviceKind::Cmos
            | DeviceKind::AcpiPm
            | DeviceKind::ResetControl
            | DeviceKind::AcpiGed
            | DeviceKind::VirtioMmio => {}
        }
    }
    for dev in cfg.virtio {
        virtio_node(&mut fdt, dev)?;
    }

    fdt.end_node(root)?;
    fdt.finish()
}

/// `stdout-path`/node name of the UART at `base`.
pub fn uart_path(base: u64) -> String {
    format!("/uart@{base:x}")
}

fn memory_node(fdt: &mut FdtWriter, ram: &[RamRange]) -> FdtResult<()> {
    let base = ram.first().map(|r| r.start).unwrap_or(layout::RAM_START);
    let node = fdt.begin_node(&format!("memory@{base:x}"))?;
    fdt.property_string("device_type", "memory")?;
    let reg: Vec<u64> = ram.iter().flat_map(|r| [r.start, r.size]).collect();
    fdt.property_array_u64("reg", &reg)?;
    fdt.end_node(node)
}

fn cpus_node(fdt: &mut FdtWriter, vcpus: u32) -> FdtResult<()> {
    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 0)?;
    for index in 0..vcpus {
        let mpidr = mpidr_affinity(index);
        let cpu = fdt.begin_node(&format!("cpu@{mpidr:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,arm-v8")?;
        fdt.property_string("enable-method", "psci")?;
        fdt.property_u64("reg", mpidr)?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)
}

fn psci_node(fdt: &mut FdtWriter) -> FdtResult<()> {
    let node = fdt.begin_node("psci")?;
    fdt.property_string("compatible", "arm,psci-0.2")?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(node)
}

/// PPI flags: level-high, and for GICv2 the mask of CPUs the PPI goes to.
fn ppi_flags(cfg: &FdtConfig) -> u32 {
    match cfg.gic {
        GicVersion::V3 => IRQ_TYPE_LEVEL_HIGH,
        GicVersion::V2 => {
            let mask = (1u32 << cfg.vcpus.min(8)) - 1;
            (mask << 8) | IRQ_TYPE_LEVEL_HIGH
        }
    }
}

fn timer_node(fdt: &mut FdtWriter, cfg: &FdtConfig) -> FdtResult<()> {
    let node = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    let flags = ppi_flags(cfg);
    let irqs: Vec<u32> = TIMER_PPIS
        .iter()
        .flat_map(|&ppi| [GIC_FDT_IRQ_TYPE_PPI, ppi, flags])
        .collect();
    fdt.property_array_u32("interrupts", &irqs)?;
    fdt.end_node(node)
}

fn gic_node(fdt: &mut FdtWriter, cfg: &FdtConfig) -> FdtResult<()> {
    let node = fdt.begin_node(&format!("intc@{:x}", layout::GIC_DIST_BASE))?;
    match cfg.gic {
        GicVersion::V3 => {
            fdt.property_string("compatible", "arm,gic-v3")?;
            fdt.property_array_u64(
                "reg",
                &[
                    layout::GIC_DIST_BASE,
                    layout::GIC_DIST_SIZE,
                    layout::GIC_REDIST_BASE,
                    layout::gic_redist_size(cfg.vcpus),
                ],
            )?;
        }
        GicVersion::V2 => {
            fdt.property_string("compatible", "arm,cortex-a15-gic")?;
            fdt.property_array_u64(
                "reg",
                &[
                    layout::GIC_DIST_BASE,
                    GICV2_DIST_SIZE,
                    layout::GIC_CPU_BASE,
                    layout::GIC_CPU_SIZE,
                ],
            )?;
        }
    }
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_null("ranges")?;
    fdt.property_array_u32(
        "interrupts",
        &[GIC_FDT_IRQ_TYPE_PPI, GIC_MAINTENANCE_PPI, ppi_flags(cfg)],
    )?;
    fdt.property_phandle(PHANDLE_GIC)?;
    fdt.end_node(node)
}

fn chosen_node(fdt: &mut FdtWriter, cfg: &FdtConfig) -> FdtResult<()> {
    let node = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", cfg.cmdline)?;
    if let Some(uart) = cfg
        .devices
        .iter()
        .find(|d| d.kind == DeviceKind::Serial16550)
    {
        fdt.property_string("stdout-path", &uart_path(uart.base))?;
    }
    if let Some((start, size)) = cfg.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", start + size)?;
    }
    fdt.end_node(node)
}

fn apb_pclk_node(fdt: &mut FdtWriter) -> FdtResult<()> {
    let node = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", APB_PCLK_HZ)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(PHANDLE_APB_PCLK)?;
    fdt.end_node(node)
}

fn spi(number: u32, flags: u32) -> [u32; 3] {
    [GIC_FDT_IRQ_TYPE_SPI, number, flags]
}

/// The 16550: Linux's `of_serial` defaults to `reg-shift = 0` and `reg-io-width = 1`
/// (registers one byte apart, byte accesses), which is what `Serial16550` decodes; both
/// are stated so the guest cannot guess otherwise. Its interrupt is an irqfd pulse, hence
/// edge-triggered.
fn uart_node(fdt: &mut FdtWriter, uart: &PlatformDevice) -> FdtResult<()> {
    let node = fdt.begin_node(&uart_path(uart.base)[1..])?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.property_array_u64("reg", &[uart.base, uart.len])?;
    fdt.property_u32("clock-frequency", UART_CLOCK_HZ)?;
    fdt.property_u32("reg-shift", 0)?;
    fdt.property_u32("reg-io-width", 1)?;
    if let Some(irq) = uart.irq {
        fdt.property_array_u32("interrupts", &spi(irq, IRQ_TYPE_EDGE_RISING))?;
    }
    fdt.end_node(node)
}

/// The pvpanic register, as QEMU's `virt` machine describes its `pvpanic-mmio` (Linux's
/// `pvpanic-mmio` driver binds `qemu,pvpanic-mmio`); two bytes of the window are decoded.
fn pvpanic_node(fdt: &mut FdtWriter, dev: &PlatformDevice) -> FdtResult<()> {
    let node = fdt.begin_node(&format!("pvpanic@{:x}", dev.base))?;
    fdt.property_string("compatible", "qemu,pvpanic-mmio")?;
    fdt.property_array_u64("reg", &[dev.base, 2])?;
    fdt.end_node(node)
}

/// The PL031: an AMBA PrimeCell, so it names the APB clock the amba bus enables.
fn rtc_node(fdt: &mut FdtWriter, rtc: &PlatformDevice) -> FdtResult<()> {
    let node = fdt.begin_node(&format!("rtc@{:x}", rtc.base))?;
    fdt.property_string_list(
        "compatible",
        vec!["arm,pl031".to_string(), "arm,primecell".to_string()],
    )?;
    fdt.property_array_u64("reg", &[rtc.base, rtc.len])?;
    if let Some(irq) = rtc.irq {
        fdt.property_array_u32("interrupts", &spi(irq, IRQ_TYPE_LEVEL_HIGH))?;
    }
    fdt.property_u32("clocks", PHANDLE_APB_PCLK)?;
    fdt.property_string("clock-names", "apb_pclk")?;
    fdt.end_node(node)
}

/// The PL061 (an AMBA PrimeCell like the PL031) and the `gpio-keys` node that makes its
/// line 3 the power key. Its interrupt is an irqfd pulse, hence edge-triggered.
fn gpio_nodes(fdt: &mut FdtWriter, gpio: &PlatformDevice) -> FdtResult<()> {
    let node = fdt.begin_node(&format!("pl061@{:x}", gpio.base))?;
    fdt.property_string_list(
        "compatible",
        vec!["arm,pl061".to_string(), "arm,primecell".to_string()],
    )?;
    fdt.property_array_u64("reg", &[gpio.base, gpio.len])?;
    if let Some(irq) = gpio.irq {
        fdt.property_array_u32("interrupts", &spi(irq, IRQ_TYPE_EDGE_RISING))?;
    }
    fdt.property_null("gpio-controller")?;
    fdt.property_u32("#gpio-cells", 2)?;
    fdt.property_u32("clocks", PHANDLE_APB_PCLK)?;
    fdt.property_string("clock-names", "apb_pclk")?;
    fdt.property_phandle(PHANDLE_GPIO)?;
    fdt.end_node(node)?;

    let keys = fdt.begin_node("gpio-keys")?;
    fdt.property_string("compatible", "gpio-keys")?;
    let key = fdt.begin_node("poweroff")?;
    fdt.property_string("label", "GPIO Key Poweroff")?;
    fdt.property_u32("linux,code", KEY_POWER)?;
    fdt.property_array_u32("gpios", &[PHANDLE_GPIO, POWER_KEY_LINE, GPIO_ACTIVE_HIGH])?;
    fdt.end_node(key)?;
    fdt.end_node(keys)
}

fn virtio_node(fdt: &mut FdtWriter, dev: &VirtioMmioNode) -> FdtResult<()> {
    let node = fdt.begin_node(&format!("virtio_mmio@{:x}", dev.base))?;
    fdt.property_string("compatible", "virtio,mmio")?;
    fdt.property_array_u64("reg", &[dev.base, dev.size])?;
    fdt.property_array_u32("interrupts", &spi(dev.spi, IRQ_TYPE_EDGE_RISING))?;
    fdt.property_null("dma-coherent")?;
    fdt.end_node(node)
}

#[cfg(test)]
mod tests;
