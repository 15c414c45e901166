// SPDX-License-Identifier: Apache-2.0
//! CHANNEL SUBSYSTEM CALL (`CHSC`): the commands Linux's channel-subsystem driver issues
//! while it boots, answered for a machine with one channel path (CHPID 0, type virtio) and
//! no multiple-subchannel-set support. A request block is a 16-bit length and command
//! code followed by parameters; the response (length, response code, a reserved word,
//! data) is stored right after the request, in the same 4 KiB page.

use super::subchannel::{CHPID, CHPID_TYPE_VIRTIO};

/// Command codes.
pub mod command {
    pub const STORE_CHANNEL_PATH_DESCRIPTION: u16 = 0x0002;
    pub const STORE_EVENT_INFORMATION: u16 = 0x000e;
    pub const STORE_CHANNEL_SUBSYSTEM_CHARACTERISTICS: u16 = 0x0010;
    pub const SET_DOMAIN_ATTRIBUTES: u16 = 0x0031;
}

/// Response codes.
pub mod response {
    pub const OK: u16 = 0x0001;
    pub const INVALID_REQUEST: u16 = 0x0003;
    pub const NOT_SUPPORTED: u16 = 0x0004;
    pub const NO_EVENTS: u16 = 0x0005;
    pub const INVALID_FORMAT: u16 = 0x0007;
    pub const INVALID_CSS: u16 = 0x0008;
    pub const FACILITY_NOT_SUPPORTED: u16 = 0x0101;
}

/// The page a CHSC operand occupies.
pub const PAGE: usize = 4096;

/// Why a CHSC request is refused before any response (the guest gets an operand
/// exception).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadRequestLength(pub u16);

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Serve one request page in place: `Ok(range)` is the response's place in the page.
pub fn call(page: &mut [u8; PAGE]) -> Result<std::ops::Range<usize>, BadRequestLength> {
    let len = u16::from_be_bytes([page[0], page[1]]);
    if !(16..=4088).contains(&len) || len % 8 != 0 {
        return Err(BadRequestLength(len));
    }
    let code = u16::from_be_bytes([page[2], page[3]]);
    let req_len = usize::from(len);
    let (req, rest) = page.split_at_mut(req_len);
    rest.fill(0);
    let (resp_code, data_len) = match code {
        command::STORE_CHANNEL_SUBSYSTEM_CHARACTERISTICS if len == 0x10 => {
            store_css_characteristics(&mut rest[8..])
        }
        command::STORE_CHANNEL_PATH_DESCRIPTION => store_channel_path_description(req, rest),
        command::STORE_EVENT_INFORMATION => (response::NO_EVENTS, 0),
        // Only the multiple-subchannel-sets facility exists to enable; this machine has one
        // set, so Linux scans subchannel set 0 only.
        command::SET_DOMAIN_ATTRIBUTES => (response::FACILITY_NOT_SUPPORTED, 0),
        command::STORE_CHANNEL_SUBSYSTEM_CHARACTERISTICS => (response::INVALID_REQUEST, 0),
        other => {
            log::debug!("css: CHSC command {other:#06x} not supported");
            (response::NOT_SUPPORTED, 0)
        }
    };
    let resp_len = 8 + data_len;
    rest[0..2].copy_from_slice(&(resp_len as u16).to_be_bytes());
    rest[2..4].copy_from_slice(&resp_code.to_be_bytes());
    Ok(req_len..req_len + resp_len)
}

/// General characteristics (510 words) then CHSC characteristics (508 words), all zero:
/// no optional facility (no MCSS-E, no adapter-interruption facility, no measurement).
fn store_css_characteristics(data: &mut [u8]) -> (u16, usize) {
    let len = (510 + 508) * 4;
    data[..len].fill(0);
    (response::OK, len)
}

/// Format-0 descriptions (8 bytes each: flags 0x80 valid, logical switch, type, CHPID,
/// ...) of the installed paths between the first and last CHPID asked for.
fn store_channel_path_description(req: &[u8], rest: &mut [u8]) -> (u16, usize) {
    let (w0, w1) = (be32(req, 4), be32(req, 8));
    let m = w0 & 0x2000_0000 != 0;
    let c = w0 & 0x1000_0000 != 0;
    let fmt = (w0 >> 24) & 0xf;
    let cssid = (w0 >> 16) & 0xff;
    let rfmt = (w0 >> 8) & 0xf;
    let (first, last) = (w0 & 0xff, w1 & 0xff);
    if req.len() != 0x10 || w0 & 0xc000_f000 != 0 || w1 & 0xffff_ff00 != 0 || last < first {
        return (response::INVALID_REQUEST, 0);
    }
    if fmt != 0 || rfmt != 0 || c {
        return (response::INVALID_FORMAT, 0);
    }
    if cssid != 0 && !(m && cssid == u32::from(super::subchannel::VIRTUAL_CSSID)) {
        return (response::INVALID_CSS, 0);
    }
    let mut n = 0;
    if (first..=last).contains(&u32::from(CHPID)) {
        rest[8..16].copy_from_slice(&[0x80, 0, CHPID_TYPE_VIRTIO, CHPID, 0, 0, 0, 0]);
        n = 8;
    }
    (response::OK, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(code: u16, len: u16, words: &[u32]) -> [u8; PAGE] {
        let mut p = [0xaau8; PAGE];
        p[0..2].copy_from_slice(&len.to_be_bytes());
        p[2..4].copy_from_slice(&code.to_be_bytes());
        for (i, w) in words.iter().enumerate() {
            p[4 + 4 * i..8 + 4 * i].copy_from_slice(&w.to_be_bytes());
        }
        p
    }

    fn resp_code(p: &[u8; PAGE], at: usize) -> u16 {
        u16::from_be_bytes([p[at + 2], p[at + 3]])
    }

    #[test]
    fn characteristics_are_stored_after_the_request() {
        let mut p = request(0x0010, 0x10, &[0, 0, 0]);
        let r = call(&mut p).unwrap();
        assert_eq!(r.start, 0x10);
        assert_eq!(&p[0x10..0x14], &[0x0f, 0xf0, 0x00, 0x01]); // 8 + 4072 bytes, OK
        assert!(p[0x18..r.end].iter().all(|&b| b == 0));
        assert_eq!(r.end, 0x10 + 8 + 4072);
    }

    #[test]
    fn channel_path_zero_is_described() {
        // Linux: fmt 0, rfmt 0, cssid 0, first = last = 0.
        let mut p = request(0x0002, 0x10, &[0, 0, 0]);
        let r = call(&mut p).unwrap();
        assert_eq!(
            &p[r.clone()],
            &[0, 16, 0, 1, 0, 0, 0, 0, 0x80, 0, 0x32, 0, 0, 0, 0, 0]
        );
        // CHPIDs 1..=5: none installed.
        let mut p = request(0x0002, 0x10, &[1, 5, 0]);
        let r = call(&mut p).unwrap();
        assert_eq!(&p[r], &[0, 8, 0, 1, 0, 0, 0, 0]);
        // Response format 1 (Linux asks, optionally): not provided.
        let mut p = request(0x0002, 0x10, &[0x100, 0, 0]);
        call(&mut p).unwrap();
        assert_eq!(resp_code(&p, 0x10), response::INVALID_FORMAT);
        // Reserved bits, last < first.
        let mut p = request(0x0002, 0x10, &[0x8000_0000, 0, 0]);
        call(&mut p).unwrap();
        assert_eq!(resp_code(&p, 0x10), response::INVALID_REQUEST);
        let mut p = request(0x0002, 0x10, &[3, 2, 0]);
        call(&mut p).unwrap();
        assert_eq!(resp_code(&p, 0x10), response::INVALID_REQUEST);
    }

    #[test]
    fn facilities_events_and_unknown_commands() {
        let mut p = request(0x0031, 0x400, &[2]);
        let r = call(&mut p).unwrap();
        assert_eq!(r, 0x400..0x408);
        assert_eq!(resp_code(&p, 0x400), response::FACILITY_NOT_SUPPORTED);
        let mut p = request(0x000e, 0x10, &[]);
        call(&mut p).unwrap();
        assert_eq!(resp_code(&p, 0x10), response::NO_EVENTS);
        let mut p = request(0x0004, 0x10, &[]);
        call(&mut p).unwrap();
        assert_eq!(resp_code(&p, 0x10), response::NOT_SUPPORTED);
        for bad in [0u16, 8, 12, 4090, 0x1000] {
            let mut p = request(0x0010, bad, &[]);
            assert_eq!(call(&mut p), Err(BadRequestLength(bad)));
        }
    }
}
