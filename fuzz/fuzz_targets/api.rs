// SPDX-License-Identifier: Apache-2.0
//! The management API's bytes: HTTP/1.1 request framing (`vmm::api::http::parse`, what the
//! API thread runs on every client's buffer) and a `vm.create` body (Cloud Hypervisor's
//! `VmConfig` JSON) mapped onto polyvisor's configuration (`vm_create::to_config`, one
//! validation path with the command line). Whatever a client sends, the answer is a
//! request, "more bytes", a refusal or a configuration error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::api::{http, vm_create};

fuzz_target!(|data: &[u8]| {
    // Framing: every prefix a slow client could have sent so far, then the whole buffer.
    let mut at = 0;
    while at < data.len() {
        match http::parse(&data[at..]) {
            Ok(Some((request, used))) => {
                assert!(used > 0 && used <= data.len() - at);
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&request.body) {
                    let _ = vm_create::to_config(&v);
                }
                at += used;
            }
            Ok(None) | Err(_) => break,
        }
    }
    // The body alone, as `polyvisor run --config FILE` reads it.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = vm_create::to_args(&v);
        let _ = vm_create::to_config(&v);
    }
});
