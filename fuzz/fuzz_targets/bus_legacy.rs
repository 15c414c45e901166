// SPDX-License-Identifier: Apache-2.0
//! The port-I/O and MMIO buses with every legacy device of the x86_64 and the aarch64
//! platform where the platform puts it (16550 UART, i8042, CMOS RTC, ACPI PM, reset
//! control, ACPI GED, PL031, PL061, pvpanic, boot timer): a guest's accesses at any
//! address and size, console input, power-button presses.
#![no_main]

use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use arch::{BusKind, DeviceKind, Platform};
use devices::boot_timer::BootTimer;
use devices::legacy::{
    AcpiGed, AcpiGedPowerButton, AcpiPm, Cmos, CmosMemory, Pl061, Pl061PowerKey, PvPanic,
    ResetControl, RtcPl031, Serial16550, I8042,
};
use devices::{Bus, BusDevice, BusRange, ConsoleInput, PowerButton, VmControl};
use libfuzzer_sys::fuzz_target;
use polyvisor_fuzz::NullLine;

#[derive(Arbitrary, Debug)]
enum Op {
    /// An access relative to the `device`th platform device's base (so most hit it).
    Read {
        device: u8,
        offset: u16,
        len: u8,
        mmio: bool,
    },
    Write {
        device: u8,
        offset: u16,
        value: u64,
        len: u8,
        mmio: bool,
    },
    /// An access anywhere.
    ReadAt {
        addr: u64,
        len: u8,
        mmio: bool,
    },
    WriteAt {
        addr: u64,
        value: u64,
        len: u8,
        mmio: bool,
    },
    ConsoleInput(Vec<u8>),
    PowerButton {
        release: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    aarch64: bool,
    ops: Vec<Op>,
}

struct Machine {
    platform: Platform,
    pio: Bus,
    mmio: Bus,
    serial: Option<Arc<Mutex<Serial16550>>>,
    button: Option<Box<dyn PowerButton>>,
    _control: Arc<VmControl>,
}

fn machine(aarch64: bool) -> Machine {
    let platform = if aarch64 {
        arch_aarch64::layout::platform()
    } else {
        arch_x86_64::layout::platform()
    };
    let control = Arc::new(VmControl::new());
    let line = Arc::new(NullLine);
    let (mut pio, mut mmio) = (Bus::new(), Bus::new());
    let mut serial = None;
    let mut button: Option<Box<dyn PowerButton>> = None;
    for dev in &platform.devices {
        let model: Arc<Mutex<dyn BusDevice>> = match dev.kind {
            DeviceKind::Serial16550 => {
                let s = Arc::new(Mutex::new(Serial16550::new(
                    line.clone(),
                    Box::new(std::io::sink()),
                )));
                serial.get_or_insert(s.clone());
                s
            }
            DeviceKind::I8042 => {
                Arc::new(Mutex::new(I8042::new(control.clone(), Some(line.clone()))))
            }
            DeviceKind::Cmos => Arc::new(Mutex::new(Cmos::with_clock(
                CmosMemory {
                    below_4g: 3 << 30,
                    above_4g: 1 << 30,
                },
                || 1_700_000_000,
            ))),
            DeviceKind::AcpiPm => Arc::new(Mutex::new(AcpiPm::new(control.clone()))),
            DeviceKind::ResetControl => Arc::new(Mutex::new(ResetControl::new(control.clone()))),
            DeviceKind::Pl031Rtc => Arc::new(Mutex::new(RtcPl031::new())),
            DeviceKind::Pl061Gpio => {
                let g = Arc::new(Mutex::new(Pl061::new(line.clone())));
                button = Some(Box::new(Pl061PowerKey(g.clone())));
                g
            }
            DeviceKind::AcpiGed => {
                let g = Arc::new(Mutex::new(AcpiGed::new(line.clone())));
                button = Some(Box::new(AcpiGedPowerButton(g.clone())));
                g
            }
            DeviceKind::PvPanic => Arc::new(Mutex::new(PvPanic::new(control.clone()))),
            DeviceKind::BootTimer => {
                Arc::new(Mutex::new(BootTimer::new(std::time::Instant::now())))
            }
            DeviceKind::VirtioMmio => continue,
        };
        let bus = match dev.bus {
            BusKind::Pio => &mut pio,
            BusKind::Mmio => &mut mmio,
        };
        bus.insert(BusRange::new(dev.base, dev.len), model)
            .expect("the platform's devices do not overlap");
    }
    Machine {
        platform,
        pio,
        mmio,
        serial,
        button,
        _control: control,
    }
}

fn access(m: &Machine, mmio: bool, addr: u64, len: u8, write: Option<u64>) {
    let bus = if mmio { &m.mmio } else { &m.pio };
    let n = usize::from(len % 9);
    match write {
        Some(v) => {
            bus.write(addr, &v.to_le_bytes()[..n]);
        }
        None => {
            let mut data = [0u8; 8];
            bus.read(addr, &mut data[..n]);
        }
    }
}

fuzz_target!(|input: Input| {
    let m = machine(input.aarch64);
    let base = |device: u8, offset: u16| {
        let d = &m.platform.devices[usize::from(device) % m.platform.devices.len()];
        (
            d.bus == BusKind::Mmio,
            d.base.wrapping_add(u64::from(offset) % (d.len + 8)),
        )
    };
    for op in input.ops.iter().take(1024) {
        match op {
            Op::Read {
                device,
                offset,
                len,
                mmio,
            } => {
                let (on_mmio, addr) = base(*device, *offset);
                access(&m, on_mmio ^ mmio, addr, *len, None);
            }
            Op::Write {
                device,
                offset,
                value,
                len,
                mmio,
            } => {
                let (on_mmio, addr) = base(*device, *offset);
                access(&m, on_mmio ^ mmio, addr, *len, Some(*value));
            }
            Op::ReadAt { addr, len, mmio } => access(&m, *mmio, *addr, *len, None),
            Op::WriteAt {
                addr,
                value,
                len,
                mmio,
            } => access(&m, *mmio, *addr, *len, Some(*value)),
            Op::ConsoleInput(bytes) => {
                if let Some(s) = &m.serial {
                    let _ = s.enqueue_input(bytes);
                }
            }
            Op::PowerButton { release } => {
                if let Some(b) = &m.button {
                    if *release {
                        b.release();
                    } else {
                        b.press();
                    }
                }
            }
        }
    }
});
