// SPDX-License-Identifier: Apache-2.0
//! The `--net` taps: attached (or created) and configured once per run, before any guest
//! runs, and held across every boot `--on-reset restart` makes; each boot gets fresh
//! virtio-net devices on the same taps. A tap created here goes away when polyvisor ends.

use std::sync::Arc;

use devices::virtio::net::{default_mac, Backend};
use devices::virtio::Net;

use crate::config::{Field, NetConfig};
use crate::machine::Error;

/// One `--net`, its tap attached.
pub struct OpenNet {
    pub tap: Arc<tap::Tap>,
    pub config: NetConfig,
    /// The guest's address: `mac=` or [`default_mac`] of the tap's name.
    pub mac: [u8; 6],
    /// How the VMM's messages name it: `id=` or `netN` (N counted from 0 in flag order).
    pub name: String,
}

impl OpenNet {
    /// A virtio-net device on this tap, for one boot.
    pub fn device(&self) -> Net {
        let backend: Arc<dyn Backend> = self.tap.clone();
        Net::new(backend, self.mac, format!("virtio-net {}", self.name))
    }

    /// `tap=NAME`, how errors name this device.
    pub fn flag_value(&self) -> String {
        format!("tap={}", self.config.tap)
    }
}

fn input(net: &NetConfig, message: impl std::fmt::Display) -> Error {
    Error::Input {
        field: Field::Net,
        message: format!("tap={}: {message}", net.tap),
    }
}

/// Attach every `--net` tap in order and give the host side its address. Refuses, naming
/// the tap: what [`check`] refuses, a tap that cannot be opened or created (and why), an
/// address that cannot be set.
pub fn open(nets: &[NetConfig]) -> Result<Vec<OpenNet>, Error> {
    check(nets)?;
    nets.iter()
        .enumerate()
        .map(|(i, net)| open_one(net, net.id.clone().unwrap_or_else(|| format!("net{i}"))))
        .collect()
}

/// Check a VM's networks together before any tap is touched (the last one may be a device
/// to plug in beside the others): the same tap twice, two devices with one `id=` or one
/// guest MAC address.
pub fn check(nets: &[NetConfig]) -> Result<(), Error> {
    for (i, net) in nets.iter().enumerate() {
        let earlier = &nets[..i];
        if earlier.iter().any(|n| n.tap == net.tap) {
            return Err(input(net, "the same tap is given twice"));
        }
        if let Some(id) = &net.id {
            if earlier.iter().any(|n| n.id.as_ref() == Some(id)) {
                return Err(input(net, format!("id={id}: two devices have this id")));
            }
        }
        let mac = mac_of(net);
        if let Some(other) = earlier.iter().find(|o| mac_of(o) == mac) {
            return Err(input(
                net,
                format!(
                    "the guest address {} is also tap={}'s",
                    format_mac(mac),
                    other.tap
                ),
            ));
        }
    }
    Ok(())
}

/// The guest's address: `mac=` or [`default_mac`] of the tap's name.
fn mac_of(net: &NetConfig) -> [u8; 6] {
    net.mac.unwrap_or_else(|| default_mac(&net.tap))
}

/// Attach (or create) one tap and give the host side its address; `name` is how the
/// VMM's messages name the device.
pub fn open_one(net: &NetConfig, name: String) -> Result<OpenNet, Error> {
    let mac = mac_of(net);
    let tap = tap::Tap::open(&net.tap).map_err(|e| input(net, e))?;
    if let Some((ip, mask)) = net.ip {
        tap.set_ipv4(ip, mask)
            .map_err(|e| input(net, format!("setting the host address {ip}/{mask}: {e}")))?;
    }
    if net.ip.is_some() || tap.created() {
        tap.set_up()
            .map_err(|e| input(net, format!("bringing the tap up: {e}")))?;
    }
    log::debug!(
        "--net tap={}: {} tap, guest address {}",
        net.tap,
        if tap.created() { "created" } else { "existing" },
        format_mac(mac)
    );
    Ok(OpenNet {
        tap: Arc::new(tap),
        config: net.clone(),
        mac,
        name,
    })
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<Vec<OpenNet>, Error>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2);
                let line = e.to_string();
                assert!(line.starts_with("--net tap="), "{line}");
                assert!(!line.contains('\n'), "{line}");
                line
            }
        }
    }

    fn net(tap: &str) -> NetConfig {
        NetConfig {
            tap: tap.into(),
            ..Default::default()
        }
    }

    #[test]
    fn refused_before_any_tap_is_touched() {
        let line = message(open(&[net("pvx0"), net("pvx0")]));
        assert!(line.contains("twice"), "{line}");
        let id = |t: &str| NetConfig {
            id: Some("a".into()),
            ..net(t)
        };
        let line = message(open(&[id("pvx0"), id("pvx1")]));
        assert!(line.contains("id=a"), "{line}");
        let mac = |t: &str| NetConfig {
            mac: Some([2, 0, 0, 0, 0, 1]),
            ..net(t)
        };
        let line = message(open(&[mac("pvx0"), mac("pvx1")]));
        assert!(
            line.contains("tap=pvx1") && line.contains("02:00:00:00:00:01 is also tap=pvx0"),
            "{line}"
        );
    }

    #[test]
    fn macs() {
        assert_eq!(format_mac([2, 0xab, 0, 1, 2, 0xff]), "02:ab:00:01:02:ff");
    }
}
