// SPDX-License-Identifier: Apache-2.0
//! HTTP/1.1 framing for the management API: `httparse` parses the request line and
//! headers; this file only finds the body by `Content-Length`, bounds every part of a
//! request, and writes responses. No chunked bodies, no pipelining beyond one request at a
//! time per connection (keep-alive works: requests are answered in order).

/// The longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// The largest request body accepted (a `VmConfig` is a few KiB).
pub const MAX_BODY: usize = 256 * 1024;
/// Headers parsed per request.
const MAX_HEADERS: usize = 32;

/// One parsed request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// The client asked to close the connection after the answer (or spoke HTTP/1.0).
    pub close: bool,
}

/// A request the framing refuses: answered with this status and message, then the
/// connection is closed (what follows in the stream cannot be trusted).
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Parse the first request in `buf`: `Ok(None)` when more bytes are needed, otherwise the
/// request and how many bytes of `buf` it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(refuse(431, format!("request head over {MAX_HEAD} bytes")))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refuse(431, format!("more than {MAX_HEADERS} headers")))
        }
        Err(e) => return Err(refuse(400, format!("malformed HTTP request: {e}"))),
    };
    if head > MAX_HEAD {
        return Err(refuse(431, format!("request head over {MAX_HEAD} bytes")));
    }
    let mut length: Option<usize> = None;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| refuse(400, format!("bad Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(refuse(400, "conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(refuse(
                501,
                format!("Transfer-Encoding {value:?} is not supported: send a Content-Length"),
            ));
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY {
        return Err(refuse(
            413,
            format!("request body of {length} bytes is over the limit of {MAX_BODY}"),
        ));
    }
    let Some(body) = buf.get(head..head + length) else {
        return Ok(None);
    };
    let request = Request {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("").to_string(),
        body: body.to_vec(),
        close,
    };
    Ok(Some((request, head + length)))
}

/// The reason phrase of the statuses the API answers with.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A response: the status, extra headers and the JSON body (none for 204).
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub allow: Option<&'static str>,
    pub body: Option<String>,
}

impl Response {
    pub fn json(status: u16, body: String) -> Self {
        Self {
            status,
            allow: None,
            body: Some(body),
        }
    }

    pub fn no_content() -> Self {
        Self {
            status: 204,
            allow: None,
            body: None,
        }
    }

    /// An error answer: Cloud Hypervisor's error body, a JSON array of messages.
    pub fn error(status: u16, message: &str) -> Self {
        let body = serde_json::to_string(&[message]).unwrap_or_else(|_| "[]".into());
        Self::json(status, body)
    }

    /// The bytes on the wire.
    pub fn encode(&self, close: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nServer: Polyvisor API\r\n",
            self.status,
            reason(self.status)
        );
        if let Some(allow) = self.allow {
            head.push_str(&format!("Allow: {allow}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        let body = self.body.as_deref().unwrap_or("");
        if self.body.is_some() {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_framed_by_its_content_length() {
        let wire =
            b"PUT /api/v1/vm.pause HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}GET";
        for cut in 0..wire.len() - 5 {
            assert_eq!(parse(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        let (req, used) = parse(wire).unwrap().unwrap();
        assert_eq!(used, wire.len() - 3);
        assert_eq!(req.method, "PUT");
        assert_eq!(req.path, "/api/v1/vm.pause");
        assert_eq!(req.body, b"{}");
        assert!(!req.close);
        let (req, _) = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(req.close && req.body.is_empty());
        let (req, _) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(req.close);
    }

    #[test]
    fn bad_requests_are_refused_with_a_status() {
        let status = |w: &[u8]| parse(w).unwrap_err().status;
        assert_eq!(status(b"\x01\x02 nonsense\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        let big = format!("PUT / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert_eq!(status(big.as_bytes()), 413);
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(status(long.as_bytes()), 431);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(status(many.as_bytes()), 431);
    }

    #[test]
    fn responses_carry_a_json_body_and_its_length() {
        let wire = String::from_utf8(Response::error(405, "the VM is already paused").encode(true))
            .unwrap();
        assert!(
            wire.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{wire}"
        );
        assert!(wire.contains("Connection: close\r\n"));
        assert!(wire.contains("Content-Type: application/json\r\n"));
        assert!(
            wire.ends_with("\r\n\r\n[\"the VM is already paused\"]"),
            "{wire}"
        );
        let body = "[\"the VM is already paused\"]";
        assert!(wire.contains(&format!("Content-Length: {}\r\n", body.len())));
        let wire = String::from_utf8(Response::no_content().encode(false)).unwrap();
        assert_eq!(
            wire,
            "HTTP/1.1 204 No Content\r\nServer: Polyvisor API\r\n\r\n"
        );
    }
}
