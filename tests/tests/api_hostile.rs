// SPDX-License-Identifier: Apache-2.0
//! Bad input to the management API: malformed HTTP and JSON, unknown paths and verbs,
//! oversized bodies, clients that vanish mid-request, a slow client, many clients at once.
//! Each gets a clear 4xx/5xx with Cloud Hypervisor's JSON error body (or, for a client
//! that is gone, nothing), while the guest goes on counting and the socket keeps serving.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor (`cargo build -p vmm`).
#![cfg(target_arch = "x86_64")]

mod api_common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use api_common::{call, exchange, get, read_answer, Answer, Vmm};

/// The VM is unaffected: still running and counting; the socket still answers.
fn unaffected(vmm: &Vmm) {
    assert_eq!(vmm.state(), "Running");
    let size = vmm.console_size();
    assert!(
        vmm.grows(size, Duration::from_secs(10)),
        "the guest stopped counting"
    );
}

fn refused(a: &Answer, status: u16, needle: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert!(a.head.contains("Content-Type: application/json"), "{a:?}");
    let message = a.error();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

#[test]
fn bad_requests_get_a_clear_error_and_the_vm_runs_on() {
    let Some(mut vmm) = Vmm::start(&[]) else {
        return;
    };
    let sock = vmm.socket.clone();
    // Unknown paths, outside the API root, wrong verbs (with Allow).
    refused(&get(&sock, "vm.frobnicate"), 404, "no such endpoint");
    refused(
        &exchange(
            &sock,
            b"GET /vmm.ping HTTP/1.1\r\nConnection: close\r\n\r\n",
        ),
        404,
        "/api/v1/",
    );
    let wrong = call(&sock, "GET", "vm.pause", None);
    refused(&wrong, 405, "PUT");
    assert!(wrong.head.contains("Allow: PUT"), "{wrong:?}");
    refused(&call(&sock, "POST", "vm.info", None), 405, "GET");
    refused(&call(&sock, "DELETE", "vmm.ping", None), 405, "GET");
    // Known Cloud Hypervisor calls Polyvisor does not do yet: 501 naming them.
    refused(
        &call(
            &sock,
            "PUT",
            "vm.add-pmem",
            Some(r#"{"file":"/tmp/d.img"}"#),
        ),
        501,
        "vm.add-pmem",
    );
    refused(
        &call(&sock, "PUT", "vm.snapshot", Some("{}")),
        501,
        "vm.snapshot",
    );
    // Malformed JSON bodies.
    refused(
        &call(&sock, "PUT", "vm.pause", Some("{\"a\":")),
        400,
        "not valid JSON",
    );
    refused(
        &call(&sock, "PUT", "vm.create", Some("[1,2")),
        400,
        "not valid JSON",
    );
    refused(
        &call(&sock, "PUT", "vm.reboot", Some("\u{1}")),
        400,
        "not valid JSON",
    );
    // Malformed HTTP.
    refused(
        &exchange(&sock, b"\x00\x01\x02 garbage\r\n\r\n"),
        400,
        "malformed",
    );
    refused(
        &exchange(
            &sock,
            b"GET /api/v1/vmm.ping HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        ),
        400,
        "Content-Length",
    );
    refused(
        &exchange(
            &sock,
            b"PUT /api/v1/vm.pause HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        501,
        "Transfer-Encoding",
    );
    // Oversized: a body over the limit is refused from its Content-Length, before it is
    // read; so is a head past 16 KiB.
    refused(
        &exchange(
            &sock,
            b"PUT /api/v1/vm.create HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n{",
        ),
        413,
        "over the limit",
    );
    let long = format!("GET /api/v1/{} HTTP/1.1\r\n", "x".repeat(20_000));
    refused(&exchange(&sock, long.as_bytes()), 431, "head");
    // None of it reached the VM.
    unaffected(&vmm);
    assert_eq!(vmm.state(), "Running");
    assert_eq!(call(&sock, "PUT", "vmm.shutdown", None).status, 204);
    assert_eq!(vmm.wait(Duration::from_secs(10)), Some(0));
}

#[test]
fn vanishing_slow_and_many_clients_do_not_block_the_socket() {
    let Some(mut vmm) = Vmm::start(&[]) else {
        return;
    };
    let sock = vmm.socket.clone();
    // Clients that go away mid-request (head cut short, body cut short, nothing at all).
    for partial in [
        &b"GET /api/v1/vmm.pi"[..],
        b"PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"a\"",
        b"",
    ] {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(partial).unwrap();
        drop(s);
    }
    // A slow client holding a half-sent request does not block others; it gets 408 after
    // the read timeout (5 s).
    let mut slow = UnixStream::connect(&sock).unwrap();
    slow.write_all(b"GET /api/v1/vmm.ping HTTP/1.1\r\nHost: loc")
        .unwrap();
    let t0 = Instant::now();
    assert_eq!(get(&sock, "vmm.ping").status, 200);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "a ping waited {:?} behind a slow client",
        t0.elapsed()
    );
    // Several connections at once, each sending its request in pieces, answered in any
    // order; and a kept-alive connection carrying three requests.
    let mut open: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    for s in &mut open {
        s.write_all(b"GET /api/v1/vm.info HTTP/1.1\r\n").unwrap();
    }
    for s in open.iter_mut().rev() {
        s.write_all(b"Connection: close\r\n\r\n").unwrap();
    }
    for mut s in open {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let a = read_answer(&mut s);
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.json()["state"], "Running");
    }
    let three = b"GET /api/v1/vmm.ping HTTP/1.1\r\n\r\nGET /api/v1/vm.info HTTP/1.1\r\n\r\nGET /api/v1/vmm.ping HTTP/1.1\r\nConnection: close\r\n\r\n";
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(three).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    // Many clients one after another.
    for i in 0..200 {
        let a = get(&sock, "vmm.ping");
        assert_eq!(a.status, 200, "ping {i}: {a:?}");
    }
    // More connections than the server holds at once: the extra one is told 503.
    let idle: Vec<UnixStream> = (0..64)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    refused(&get(&sock, "vmm.ping"), 503, "too many connections");
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(&sock, "vmm.ping").status, 200);
    // The slow client's time ran out.
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    refused(&read_answer(&mut slow), 408, "not complete within");
    assert!(t0.elapsed() >= Duration::from_secs(4), "{:?}", t0.elapsed());
    unaffected(&vmm);
    assert_eq!(call(&sock, "PUT", "vmm.shutdown", None).status, 204);
    assert_eq!(vmm.wait(Duration::from_secs(10)), Some(0));
}
