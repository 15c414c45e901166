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
/// the tap: the same tap twice, two devices with one `id=` or one MAC, a tap that cannot be
/// opened or created (and why), an address that cannot be set.
pub fn open(nets: &[NetConfig]) -> Result<Vec<OpenNet>, Error> {
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
    }
    let mut open: Vec<OpenNet> = Vec::with_capacity(nets.len());
    for (i, net) in nets.iter().enumerate() {
        let mac = net.mac.unwrap_or_else(|| default_mac(&net.tap));
        if let Some(other) = open.iter().find(|o| o.mac == mac) {
            return Err(input(
                net,
                format!(
                    "the guest address {} is also {}'s",
                    format_mac(mac),
                    other.flag_value()
                ),
            ));
        }
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
        open.push(OpenNet {
            tap: Arc::new(tap),
            config: net.clone(),
            mac,
            name: net.id.clone().unwrap_or_else(|| format!("net{i}")),
        });
    }
    Ok(open)
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
    }

    #[test]
    fn macs() {
        assert_eq!(format_mac([2, 0xab, 0, 1, 2, 0xff]), "02:ab:00:01:02:ff");
    }
}
