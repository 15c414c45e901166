// SPDX-License-Identifier: Apache-2.0
//! The VM configuration and the parsers behind each CLI flag. Every error names the flag
//! and the value.

use std::path::PathBuf;

mod field;
pub use field::Field;

/// Serial console routing (`--console`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Guest output to stdout; stdin to the guest when it is a terminal or a pipe.
    Tty,
    /// Guest output to a file (created or truncated), at most `max_size` bytes of it when
    /// given; no input.
    File {
        path: PathBuf,
        max_size: Option<u64>,
    },
    /// Guest output discarded; no input.
    Off,
}

/// A `--disk` request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub readonly: bool,
    /// Open the image with `O_DIRECT` (the host's page cache is bypassed where the guest's
    /// buffers allow).
    pub direct: bool,
    /// What the guest reads as the disk's serial (`GET_ID`), 1 to 20 bytes.
    pub serial: Option<String>,
    /// A name for the disk in the VMM's messages and its id in the management API
    /// (without it, `_diskN`).
    pub id: Option<String>,
}

/// The longest `serial=` (virtio-blk's `GET_ID` answer is 20 bytes).
pub const MAX_SERIAL_LEN: usize = 20;

/// A `--vsock` request: the guest's CID and the Unix socket its host side listens on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VsockConfig {
    pub cid: u64,
    pub socket: PathBuf,
    /// A name for the device in the VMM's messages and its id in the management API
    /// (without it, `_vsock0`).
    pub id: Option<String>,
}

/// A `--net` request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// The host tap interface: opened if it exists, created otherwise (CAP_NET_ADMIN).
    pub tap: String,
    /// The guest's MAC address; without it, one derived from the tap's name.
    pub mac: Option<[u8; 6]>,
    /// The host side's IPv4 address and netmask, set on the tap (CAP_NET_ADMIN).
    pub ip: Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
    /// A name for the device in the VMM's messages and its id in the management API
    /// (without it, `_netN`).
    pub id: Option<String>,
}

/// Everything `polyvisor run` was asked to do, validated as far as it can be without
/// touching the hypervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disks: Vec<DiskConfig>,
    pub nets: Vec<NetConfig>,
    pub rng: bool,
    pub vsock: Option<VsockConfig>,
    pub console: ConsoleMode,
    /// How long SIGTERM waits for the guest to power off after its power button is pressed.
    pub shutdown_timeout: std::time::Duration,
    /// Map the boot-timer device (`--boot-timer`): the guest's "init reached" write is
    /// logged with the time since polyvisor started.
    pub boot_timer: bool,
    /// Create the in-kernel i8254 PIT (`--pit`; x86_64 only).
    pub pit: bool,
    /// What a guest reset does.
    pub on_reset: crate::cli::OnReset,
    /// The seccomp filters' mode (`--seccomp`).
    pub seccomp: crate::seccomp::Mode,
}

/// A configuration error: the field (its flag, its API name), the value and what is wrong
/// with it. Shown as `FLAG VALUE: REASON` on one line (`FLAG: REASON` for a flag without
/// a value, such as `--pit`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}{}{value}: {reason}", field.flag(), if value.is_empty() { "" } else { " " })]
pub struct ConfigError {
    pub field: Field,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: Field, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Smallest page size guests are given memory in.
pub const PAGE_SIZE: u64 = 4096;

/// Parse a size: a number of bytes with an optional K, M, G or T suffix (powers of 1024,
/// `KiB`/`KB`/`K` alike). The result is a whole number of 4 KiB pages.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bytes = parse_byte_count(s)?;
    if bytes % PAGE_SIZE != 0 {
        return Err("must be a whole number of 4 KiB pages".into());
    }
    Ok(bytes)
}

/// Parse a byte count: a number with an optional K, M, G or T suffix, greater than 0.
pub fn parse_byte_count(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() {
        return Err("expected a size such as 512M or 2G".into());
    }
    let n: u64 = num.parse().map_err(|_| "number too large".to_string())?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("unknown unit {suffix:?} (use K, M, G or T)")),
    };
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| "size too large".to_string())?;
    if bytes == 0 {
        return Err("must be greater than 0".into());
    }
    Ok(bytes)
}

/// Parse a vCPU count (at least 1; the upper bound is the host's, checked later).
pub fn parse_cpus(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| "expected a whole number of vCPUs".to_string())?;
    if n == 0 {
        return Err("a guest needs at least 1 vCPU".into());
    }
    Ok(n)
}

/// Split `key=value,key=value` into pairs, refusing empty keys.
fn key_values(s: &str) -> Result<Vec<(&str, &str)>, String> {
    s.split(',')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k, v)),
            _ => Err(format!("expected key=value, got {kv:?}")),
        })
        .collect()
}

fn parse_on_off(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("{key} must be on or off, not {v:?}")),
    }
}

/// Parse `path=P[,readonly=on|off][,direct=on|off][,serial=S][,id=ID]` (`true`/`false`
/// too, as Cloud Hypervisor accepts).
pub fn parse_disk(s: &str) -> Result<DiskConfig, String> {
    let mut disk = DiskConfig::default();
    let mut path = None;
    for (k, v) in key_values(s)? {
        match k {
            "path" if !v.is_empty() => path = Some(PathBuf::from(v)),
            "path" => return Err("path= needs a file".into()),
            "readonly" => disk.readonly = parse_on_off(k, v)?,
            "direct" => disk.direct = parse_on_off(k, v)?,
            "serial" if v.is_empty() || v.len() > MAX_SERIAL_LEN => {
                return Err(format!("serial {v:?} must be 1 to {MAX_SERIAL_LEN} bytes"))
            }
            "serial" => disk.serial = Some(v.to_string()),
            "id" if v.is_empty() => return Err("id= needs a name".into()),
            "id" => disk.id = Some(v.to_string()),
            _ => {
                return Err(format!(
                    "unknown option {k:?} (expected path=, readonly=, direct=, serial=, id=)"
                ))
            }
        }
    }
    disk.path = path.ok_or("path= is required")?;
    Ok(disk)
}

/// Parse `cid=N,socket=PATH[,id=ID]` (N from 3 to 2^32 - 2: 0, 1 and 2 are reserved, 2
/// being the host, and 2^32 - 1 is `VMADDR_CID_ANY`).
pub fn parse_vsock(s: &str) -> Result<VsockConfig, String> {
    use devices::virtio::vsock::{MAX_GUEST_CID, MIN_GUEST_CID};
    let (mut cid, mut socket, mut id) = (None, None, None);
    for (k, v) in key_values(s)? {
        match k {
            "cid" => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("cid {v:?} is not a whole number"))?;
                if !(MIN_GUEST_CID..=MAX_GUEST_CID).contains(&n) {
                    return Err(format!(
                        "cid {n} is reserved or too large (use {MIN_GUEST_CID} to {MAX_GUEST_CID})"
                    ));
                }
                cid = Some(n);
            }
            "socket" if !v.is_empty() => socket = Some(PathBuf::from(v)),
            "socket" => return Err("socket= needs a path".into()),
            "id" if v.is_empty() => return Err("id= needs a name".into()),
            "id" => id = Some(v.to_string()),
            _ => {
                return Err(format!(
                    "unknown option {k:?} (expected cid=, socket=, id=)"
                ))
            }
        }
    }
    Ok(VsockConfig {
        cid: cid.ok_or("cid= is required")?,
        socket: socket.ok_or("socket= is required")?,
        id,
    })
}

/// Parse a MAC address `aa:bb:cc:dd:ee:ff` (unicast).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("MAC {s:?} must be six hex bytes separated by ':'"));
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(format!("MAC {s:?} must be six hex bytes separated by ':'"));
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("MAC {s:?} is not hexadecimal"))?;
    }
    if mac[0] & 1 != 0 {
        return Err(format!("MAC {s:?} is a multicast address"));
    }
    Ok(mac)
}

/// Parse an IPv4 netmask (contiguous ones, e.g. 255.255.255.0).
fn parse_mask(v: &str) -> Result<std::net::Ipv4Addr, String> {
    let mask: std::net::Ipv4Addr = v
        .parse()
        .map_err(|_| format!("mask {v:?} is not an IPv4 netmask such as 255.255.255.0"))?;
    let bits = u32::from(mask);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(format!("mask {v:?} is not contiguous"));
    }
    Ok(mask)
}

/// Parse `tap=NAME[,mac=M][,ip=A,mask=M][,id=ID]`.
pub fn parse_net(s: &str) -> Result<NetConfig, String> {
    let mut net = NetConfig::default();
    let (mut ip, mut mask) = (None, None);
    for (k, v) in key_values(s)? {
        match k {
            "tap" if tap::valid_name(v) => net.tap = v.to_string(),
            "tap" => {
                return Err(format!(
                    "tap name {v:?} must be 1 to 15 bytes without '/', '%', ':' or blanks"
                ))
            }
            "mac" => net.mac = Some(parse_mac(v)?),
            "ip" => {
                ip = Some(
                    v.parse::<std::net::Ipv4Addr>()
                        .map_err(|_| format!("ip {v:?} is not an IPv4 address"))?,
                )
            }
            "mask" => mask = Some(parse_mask(v)?),
            "id" if v.is_empty() => return Err("id= needs a name".into()),
            "id" => net.id = Some(v.to_string()),
            _ => {
                return Err(format!(
                    "unknown option {k:?} (expected tap=, mac=, ip=, mask=, id=)"
                ))
            }
        }
    }
    if net.tap.is_empty() {
        return Err("tap= is required".into());
    }
    net.ip = match (ip, mask) {
        (Some(ip), Some(mask)) => Some((ip, mask)),
        (None, None) => None,
        _ => return Err("ip= and mask= go together".into()),
    };
    Ok(net)
}

/// Parse `tty`, `off` or `file=PATH`.
/// Longest `--shutdown-timeout`: an hour.
pub const MAX_SHUTDOWN_TIMEOUT_SECS: u64 = 3600;

/// Parse `--shutdown-timeout`: whole seconds, 0..=3600.
pub fn parse_shutdown_timeout(s: &str) -> Result<std::time::Duration, String> {
    let secs: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected whole seconds, 0..={MAX_SHUTDOWN_TIMEOUT_SECS}"))?;
    if secs > MAX_SHUTDOWN_TIMEOUT_SECS {
        return Err(format!("at most {MAX_SHUTDOWN_TIMEOUT_SECS} seconds"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Parse `tty`, `off` or `file=PATH[,max-size=SIZE]` (the path may itself contain commas;
/// only a trailing `,max-size=` is taken as the option).
pub fn parse_console(s: &str) -> Result<ConsoleMode, String> {
    match s {
        "tty" => Ok(ConsoleMode::Tty),
        "off" => Ok(ConsoleMode::Off),
        _ => {
            let Some(rest) = s.strip_prefix("file=") else {
                return Err("expected tty, off or file=PATH[,max-size=SIZE]".into());
            };
            let (path, max_size) = match rest.rsplit_once(",max-size=") {
                Some((path, size)) => {
                    let size = parse_byte_count(size).map_err(|e| format!("max-size: {e}"))?;
                    (path, Some(size))
                }
                None => (rest, None),
            };
            if path.is_empty() {
                return Err("file= needs a path".into());
            }
            Ok(ConsoleMode::File {
                path: PathBuf::from(path),
                max_size,
            })
        }
    }
}

/// Total RAM of this host in bytes, from /proc/meminfo.
pub fn host_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Human-readable size, e.g. "23.4 GiB".
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Config {
    /// Checks that need the host but not the hypervisor: guest RAM must fit in host RAM.
    pub fn check_host_memory(&self, memory_arg: &str) -> Result<(), ConfigError> {
        if let Some(host) = host_memory_bytes() {
            if self.memory_bytes > host {
                return Err(ConfigError::new(
                    Field::Memory,
                    memory_arg,
                    format!("larger than this host's {} of RAM", format_size(host)),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128M"), Ok(128 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert!(parse_size("0").unwrap_err().contains("greater than 0"));
        assert!(parse_size("0M").is_err());
        assert!(parse_size("banana")
            .unwrap_err()
            .contains("expected a size"));
        assert!(parse_size("12Q").unwrap_err().contains("unknown unit"));
        assert!(parse_size("1000").unwrap_err().contains("4 KiB"));
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("100000000T").unwrap_err().contains("too large"));
        assert!(parse_size("").is_err());
        assert!(parse_size("-1G").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("4"), Ok(4));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("two").is_err());
        assert!(parse_cpus("99999999999").is_err());
    }

    #[test]
    fn disks_nets_consoles() {
        assert_eq!(
            parse_disk("path=/tmp/a.img,readonly=on"),
            Ok(DiskConfig {
                path: "/tmp/a.img".into(),
                readonly: true,
                ..Default::default()
            })
        );
        assert_eq!(
            parse_disk("path=/a,readonly=false,direct=true,serial=01234567890123456789,id=root"),
            Ok(DiskConfig {
                path: "/a".into(),
                readonly: false,
                direct: true,
                serial: Some("01234567890123456789".into()),
                id: Some("root".into()),
            })
        );
        assert_eq!(
            parse_disk("path=/a"),
            Ok(DiskConfig {
                path: "/a".into(),
                ..Default::default()
            })
        );
        assert!(parse_disk("readonly=on").is_err());
        assert!(parse_disk("path=").is_err());
        assert!(parse_disk("path=/a,readonly=maybe").is_err());
        assert!(parse_disk("path=/a,direct=yes").is_err());
        assert!(parse_disk("path=/a,color=red")
            .unwrap_err()
            .contains("unknown option \"color\""));
        assert!(parse_disk("path=/a,serial=")
            .unwrap_err()
            .contains("1 to 20"));
        assert!(parse_disk("path=/a,serial=012345678901234567890")
            .unwrap_err()
            .contains("1 to 20"));
        assert!(parse_disk("path=/a,id=").is_err());
        assert!(parse_disk("/a").is_err());

        assert_eq!(
            parse_net("tap=tap0,mac=52:54:00:12:34:56"),
            Ok(NetConfig {
                tap: "tap0".into(),
                mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
                ..Default::default()
            })
        );
        assert_eq!(
            parse_net("tap=t1,ip=192.168.10.1,mask=255.255.255.0,id=lan"),
            Ok(NetConfig {
                tap: "t1".into(),
                ip: Some(([192, 168, 10, 1].into(), [255, 255, 255, 0].into())),
                id: Some("lan".into()),
                ..Default::default()
            })
        );
        assert!(parse_net("tap=t,ip=192.168.10.1")
            .unwrap_err()
            .contains("go together"));
        assert!(parse_net("tap=t,mask=255.0.0.0")
            .unwrap_err()
            .contains("go together"));
        assert!(parse_net("tap=t,ip=300.1.1.1,mask=255.0.0.0")
            .unwrap_err()
            .contains("IPv4 address"));
        assert!(parse_net("tap=t,ip=10.0.0.1,mask=255.0.255.0")
            .unwrap_err()
            .contains("contiguous"));
        assert!(parse_net("tap=t,ip=10.0.0.1,mask=24").is_err());
        assert!(parse_net("tap=t,id=").is_err());
        assert!(parse_net("tap=t,speed=10").unwrap_err().contains("unknown"));
        assert!(parse_net("tap=tap%d").is_err());
        assert!(parse_net("tap=").is_err());
        assert!(parse_net("tap=t,mac=52:54:00:12:34").is_err());
        assert!(parse_net("tap=averyveryverylongname").is_err());
        assert!(parse_net("tap=t,mac=01:00:00:00:00:00")
            .unwrap_err()
            .contains("multicast"));
        assert!(parse_net("tap=t,mac=zz:00:00:00:00:00").is_err());
        assert!(parse_net("mac=52:54:00:12:34:56").is_err());

        assert_eq!(parse_console("tty"), Ok(ConsoleMode::Tty));
        assert_eq!(parse_shutdown_timeout("0"), Ok(std::time::Duration::ZERO));
        assert_eq!(
            parse_shutdown_timeout("3600"),
            Ok(std::time::Duration::from_secs(3600))
        );
        assert!(parse_shutdown_timeout("3601").is_err());
        assert!(parse_shutdown_timeout("-1").is_err());
        assert!(parse_shutdown_timeout("1.5").is_err());
        assert_eq!(parse_console("off"), Ok(ConsoleMode::Off));
        assert_eq!(
            parse_console("file=/tmp/x"),
            Ok(ConsoleMode::File {
                path: "/tmp/x".into(),
                max_size: None
            })
        );
        assert!(parse_console("file=").is_err());
        assert_eq!(
            parse_console("file=/tmp/a,b,max-size=1M"),
            Ok(ConsoleMode::File {
                path: "/tmp/a,b".into(),
                max_size: Some(1 << 20)
            })
        );
        assert!(parse_console("file=/tmp/x,max-size=0")
            .unwrap_err()
            .contains("max-size"));
        assert!(parse_console("file=,max-size=1K").is_err());
        assert!(parse_console("pty").is_err());
    }

    #[test]
    fn vsock() {
        assert_eq!(
            parse_vsock("cid=3,socket=/tmp/v.sock"),
            Ok(VsockConfig {
                cid: 3,
                socket: "/tmp/v.sock".into(),
                id: None
            })
        );
        assert_eq!(
            parse_vsock("socket=/s,cid=4294967294,id=v0").map(|v| (v.cid, v.id)),
            Ok((4294967294, Some("v0".into())))
        );
        for cid in ["0", "1", "2", "4294967295", "18446744073709551615"] {
            let e = parse_vsock(&format!("cid={cid},socket=/s")).unwrap_err();
            assert!(e.contains("reserved"), "{cid}: {e}");
        }
        assert!(parse_vsock("cid=x,socket=/s")
            .unwrap_err()
            .contains("whole"));
        assert!(parse_vsock("cid=3").unwrap_err().contains("socket="));
        assert!(parse_vsock("socket=/s").unwrap_err().contains("cid="));
        assert!(parse_vsock("cid=3,socket=").is_err());
        assert!(parse_vsock("cid=3,socket=/s,port=5")
            .unwrap_err()
            .contains("unknown option \"port\""));
        assert!(parse_vsock("3,/s").is_err());
    }

    #[test]
    fn host_memory_and_sizes_print() {
        assert!(host_memory_bytes().unwrap() > 0);
        assert_eq!(format_size(512), "512 bytes");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        let e = ConfigError::new(Field::Memory, "0", "must be greater than 0");
        assert_eq!(e.to_string(), "--memory 0: must be greater than 0");
        assert_eq!(e.field.api_field(), Some("memory.size"));
    }
}
