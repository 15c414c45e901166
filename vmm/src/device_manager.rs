// SPDX-License-Identifier: Apache-2.0
//! The device manager: walks the list of platform devices a backend's `Platform` gives
//! (each with its kind, bus, base, length and interrupt), creates the model each kind
//! names, and puts it and the virtio transports the backend made on the VM's PIO and MMIO
//! buses, with their interrupt lines, in one place. `machine` builds the VM, asks for its
//! devices here, then runs it.

use std::sync::{Arc, Mutex};

use arch::{BusKind, DeviceKind, PlatformDevice, VirtioTransport, Vm};
use devices::boot_timer::BootTimer;
use devices::legacy::{
    AcpiGed, AcpiGedPowerButton, AcpiPm, Cmos, CmosMemory, Pl061, Pl061PowerKey, PvPanic,
    ResetControl, RtcPl031, Serial16550, I8042,
};
use devices::{Bus, BusDevice, BusRange, PowerButton, VmControl};

use crate::config::Config;
use crate::console::ConsoleOutput;
use crate::console_input::StdinInput;
use crate::machine::{io_err, Error};
use crate::vcpu_thread::Buses;

/// A machine's devices, on their buses.
pub struct Devices {
    pub buses: Buses,
    /// The power button SIGTERM presses, when the platform has one as a device.
    pub power_button: Option<Box<dyn PowerButton>>,
    /// Stdin feeding the guest's console (and the terminal's raw mode), served by the
    /// main loop.
    pub input: Option<StdinInput>,
}

pub(crate) fn place(
    bus: &mut Buses,
    dev: &PlatformDevice,
    device: Arc<Mutex<dyn BusDevice>>,
) -> Result<(), Error> {
    let target: &mut Bus = match dev.bus {
        BusKind::Pio => &mut bus.pio,
        BusKind::Mmio => &mut bus.mmio,
    };
    target.insert(BusRange::new(dev.base, dev.len), device)?;
    Ok(())
}

/// The interrupt line of a platform device that cannot work without one.
fn required_line<V: Vm>(
    vm: &V,
    dev: &PlatformDevice,
    what: &str,
) -> Result<Arc<dyn devices::InterruptLine>, Error> {
    match dev.irq {
        Some(irq) => vm.interrupt_line(irq).map_err(Error::Backend),
        None => Err(Error::Guest(format!(
            "the platform's {what} has no interrupt"
        ))),
    }
}

/// Create and place every device `vm`'s platform has and `config` asks for, the virtio
/// transports included; the console's output goes to `console_out`, exit requests to
/// `control`.
pub fn attach<V: Vm>(
    vm: &mut V,
    config: &Config,
    control: &Arc<VmControl>,
    console_out: &ConsoleOutput,
    virtio: Vec<VirtioTransport>,
) -> Result<Devices, Error> {
    let mut buses = Buses {
        pio: Bus::new(),
        mmio: Bus::new(),
    };
    let platform = vm.platform().clone();
    let mut input_guard = None;
    let mut power_button: Option<Box<dyn PowerButton>> = None;
    let mut has_uart = false;
    for dev in &platform.devices {
        match dev.kind {
            DeviceKind::Serial16550 => {
                let line = required_line(&*vm, dev, "UART")?;
                let serial = Arc::new(Mutex::new(Serial16550::new(
                    line,
                    Box::new(console_out.sink()),
                )));
                place(&mut buses, dev, serial.clone())?;
                // The first UART is the console the guest's input goes to.
                if !has_uart {
                    input_guard = StdinInput::start(&config.console, serial)
                        .map_err(io_err("console input"))?;
                }
                has_uart = true;
            }
            DeviceKind::I8042 => {
                let line = dev
                    .irq
                    .map(|irq| vm.interrupt_line(irq))
                    .transpose()
                    .map_err(Error::Backend)?;
                let i8042 = I8042::new(control.clone(), line);
                place(&mut buses, dev, Arc::new(Mutex::new(i8042)))?;
            }
            DeviceKind::Cmos => {
                let (below_4g, above_4g) = vm.layout().ram.iter().fold((0, 0), |(lo, hi), r| {
                    if r.start < 1 << 32 {
                        (lo + r.size, hi)
                    } else {
                        (lo, hi + r.size)
                    }
                });
                let cmos = Cmos::new(CmosMemory { below_4g, above_4g });
                place(&mut buses, dev, Arc::new(Mutex::new(cmos)))?;
            }
            DeviceKind::AcpiPm => {
                let pm = AcpiPm::new(control.clone());
                place(&mut buses, dev, Arc::new(Mutex::new(pm)))?;
            }
            DeviceKind::ResetControl => {
                let reset = ResetControl::new(control.clone());
                place(&mut buses, dev, Arc::new(Mutex::new(reset)))?;
            }
            DeviceKind::Pl031Rtc => {
                // The PL031 model raises no interrupt (no alarm), so it takes no line.
                place(&mut buses, dev, Arc::new(Mutex::new(RtcPl031::new())))?;
            }
            DeviceKind::Pl061Gpio => {
                let line = required_line(&*vm, dev, "GPIO")?;
                let gpio = Arc::new(Mutex::new(Pl061::new(line)));
                place(&mut buses, dev, gpio.clone())?;
                power_button = Some(Box::new(Pl061PowerKey(gpio)));
            }
            DeviceKind::AcpiGed => {
                let line = required_line(&*vm, dev, "ACPI GED")?;
                let ged = Arc::new(Mutex::new(AcpiGed::new(line)));
                place(&mut buses, dev, ged.clone())?;
                power_button = Some(Box::new(AcpiGedPowerButton(ged)));
            }
            DeviceKind::PvPanic => {
                let pvpanic = PvPanic::new(control.clone());
                place(&mut buses, dev, Arc::new(Mutex::new(pvpanic)))?;
            }
            DeviceKind::BootTimer if config.boot_timer => {
                let timer = BootTimer::new(crate::process_start());
                place(&mut buses, dev, Arc::new(Mutex::new(timer)))?;
            }
            DeviceKind::BootTimer => {}
            DeviceKind::VirtioMmio => {
                return Err(Error::Guest(format!(
                    "the platform lists a virtio-mmio window at {:#x}: virtio devices are \
                     attached through the backend's transport",
                    dev.base
                )))
            }
        }
    }
    if !has_uart {
        // No UART: the backend serves the console itself (s390x SCLP).
        match vm.attach_console(Box::new(console_out.sink())) {
            Some(input) => {
                input_guard =
                    StdinInput::start(&config.console, input).map_err(io_err("console input"))?;
            }
            None => log::debug!("{}: no console device", "the backend"),
        }
    }
    for transport in virtio {
        place(&mut buses, &transport.window, transport.device)?;
    }
    Ok(Devices {
        buses,
        power_button,
        input: input_guard,
    })
}
