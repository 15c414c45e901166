// SPDX-License-Identifier: Apache-2.0
//! The CLI contract for the host-backed virtio devices `--vsock` and `--net`: every bad
//! value, socket or tap is one line naming the flag, exit 2, before any guest runs.
//!
//! Needs an x86_64 host with /dev/kvm and a built polyvisor, as `cli.rs`.
#![cfg(target_arch = "x86_64")]

mod cli_common;
use cli_common::*;

use polyvisor_tests::runner::can_unshare_net;
use polyvisor_tests::{Polyvisor, RunOutput, TempDir};

// ---- --vsock: bad values and sockets are one line naming --vsock, exit 2 ----

/// `--vsock cid=3,socket=<path><extra>` with the good kernel.
fn run_with_vsock(path: &std::path::Path, extra: &str) -> RunOutput {
    run_with_good_kernel(&[
        "--vsock",
        &format!("cid=3,socket={}{extra}", path_str(path)),
    ])
}

#[test]
fn vsock_is_accepted_a_stale_socket_replaced_and_the_socket_removed_at_exit() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let sock = dir.path().join("v.sock");
    let out = run_with_vsock(&sock, ",id=vsock0");
    out.assert_guest_reset();
    out.assert_stdout_contains("ok");
    assert!(!sock.exists(), "the socket outlived the run");
    // A socket nobody listens on (a crashed VMM's) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    run_with_vsock(&sock, "").assert_guest_reset();
    assert!(!sock.exists());
}

#[test]
fn vsock_socket_in_use_not_a_socket_or_without_its_directory() {
    polyvisor_tests::require_kvm!();
    let dir = TempDir::new();
    let sock = dir.path().join("busy.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    run_with_vsock(&sock, "").assert_clean_error(CONFIG, &["--vsock", "busy.sock", "listens"]);
    assert!(sock.exists(), "someone else's socket was removed");
    let file = dir.write("plain-file", b"keep me");
    run_with_vsock(&file, "")
        .assert_clean_error(CONFIG, &["--vsock", "plain-file", "not a socket"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    let missing = dir.path().join("no-such-dir/v.sock");
    run_with_vsock(&missing, "")
        .assert_clean_error(CONFIG, &["--vsock", "no-such-dir", "does not exist"]);
}

#[test]
fn vsock_bad_values() {
    for (value, says) in [
        ("cid=2,socket=/tmp/pv-x.sock", "reserved"),
        ("cid=0,socket=/tmp/pv-x.sock", "reserved"),
        ("cid=4294967295,socket=/tmp/pv-x.sock", "reserved"),
        ("cid=three,socket=/tmp/pv-x.sock", "whole number"),
        ("cid=3", "socket="),
        ("socket=/tmp/pv-x.sock", "cid="),
        ("cid=3,socket=/tmp/pv-x.sock,port=1", "unknown option"),
        ("3,/tmp/pv-x.sock", "key=value"),
    ] {
        let out = run_with_good_kernel(&["--vsock", value]);
        out.assert_clean_error(CONFIG, &["--vsock", value, says]);
    }
}

#[test]
fn vsock_given_twice_is_refused() {
    // One vsock device per VM (one guest CID): a second --vsock, with the same CID or
    // another, is one line naming the flag.
    for second in ["cid=3,socket=/tmp/pv-y.sock", "cid=4,socket=/tmp/pv-y.sock"] {
        run_with_good_kernel(&["--vsock", "cid=3,socket=/tmp/pv-x.sock", "--vsock", second])
            .assert_clean_error(CONFIG, &["--vsock", "multiple times"]);
    }
}

// ---- --net: every bad tap or value is one line naming --net and the tap, exit 2 ----
// Taps are made only inside a network namespace of the test's own (`unshare --net`), so
// no host interface is touched.

/// `unshare --net polyvisor run --kernel <good kernel> <args...>`.
fn run_in_netns(args: &[&str]) -> RunOutput {
    let dir = TempDir::new();
    let k = good_kernel(&dir);
    Polyvisor::new()
        .under(&["unshare", "--net"])
        .arg("run")
        .arg("--kernel")
        .arg(&k)
        .args(args)
        .run()
}

#[test]
fn net_taps_are_created_configured_and_attached() {
    polyvisor_tests::require_kvm!();
    if !can_unshare_net("net_taps_are_created_configured_and_attached") {
        return;
    }
    let out = run_in_netns(&[
        "--net",
        "tap=pvt0,ip=192.168.100.1,mask=255.255.255.0,id=lan",
        "--net",
        "tap=pvt1,mac=02:00:00:00:00:01",
        "--rng",
    ]);
    out.assert_guest_reset();
    out.assert_stdout_contains("ok");
}

#[test]
fn net_bad_values() {
    polyvisor_tests::require_kvm!();
    for (value, needle) in [
        ("tap=pv0,mac=zz:00:00:00:00:00", "hexadecimal"),
        ("tap=pv0,mac=01:00:00:00:00:00", "multicast"),
        ("tap=pv0,mac=02:00:00", "six hex bytes"),
        ("tap=pv0,ip=192.168.1.1", "go together"),
        (
            "tap=pv0,ip=192.168.1.300,mask=255.255.255.0",
            "IPv4 address",
        ),
        ("tap=pv0,ip=192.168.1.1,mask=255.0.255.0", "contiguous"),
        ("tap=a234567890123456", "1 to 15"),
        ("tap=pv%d", "1 to 15"),
        ("mac=02:00:00:00:00:01", "tap= is required"),
        ("tap=pv0,speed=fast", "speed"),
    ] {
        run_with_good_kernel(&["--net", value]).assert_clean_error(CONFIG, &["--net", needle]);
    }
    // The same tap twice is refused before any tap is touched.
    run_with_good_kernel(&[
        "--net",
        "tap=pvq0",
        "--net",
        "tap=pvq0,mac=02:00:00:00:00:09",
    ])
    .assert_clean_error(CONFIG, &["--net", "tap=pvq0", "twice"]);
}

#[test]
fn net_not_a_tap_busy_and_too_many() {
    polyvisor_tests::require_kvm!();
    if !can_unshare_net("net_not_a_tap_busy_and_too_many") {
        return;
    }
    run_in_netns(&["--net", "tap=lo"])
        .assert_clean_error(CONFIG, &["--net", "tap=lo", "not a single-queue tap"]);
    // Busy: a tap another process holds (made and held here by a shell in the namespace).
    let dir = TempDir::new();
    let k = good_kernel(&dir);
    // Held by a first polyvisor in the namespace, which creates it.
    let mut a = polyvisor_tests::guest::pvh_asm();
    polyvisor_tests::guest::halt_forever(&mut a);
    let spinner = dir.write("spin.elf", &polyvisor_tests::guest::pvh_kernel(a.finish()));
    let bin = polyvisor_tests::runner::polyvisor_bin();
    let script = format!(
        "{bin} run --console off --kernel {spin} --net tap=pvb0 2>/dev/null & first=$!; \
         i=0; until ip link show pvb0 >/dev/null 2>&1; do \
           i=$((i+1)); [ $i -gt 250 ] && break; sleep 0.02; done; \
         {bin} run --kernel {k} --net tap=pvb0; rc=$?; exec 2>/dev/null; kill -9 $first; wait $first; exit $rc",
        bin = bin.display(),
        spin = path_str(&spinner),
        k = path_str(&k),
    );
    let out = Polyvisor::new()
        .under(&["unshare", "--net", "sh", "-c", &script, "sh"])
        .run();
    out.assert_clean_error(CONFIG, &["--net", "tap=pvb0", "busy"]);
    // Nine network devices on eight virtio-mmio slots.
    let values: Vec<String> = (0..9).map(|i| format!("tap=pvs{i}")).collect();
    let mut args = Vec::new();
    for v in &values {
        args.push("--net");
        args.push(v.as_str());
    }
    run_in_netns(&args).assert_clean_error(CONFIG, &["--net", "tap=pvs8", "at most 8"]);
    run_in_netns(&args[..16]).assert_guest_reset();
}

#[test]
fn net_without_permission_or_device() {
    polyvisor_tests::require_kvm!();
    if !can_unshare_net("net_without_permission_or_device") {
        return;
    }
    let dir = TempDir::new();
    let k = good_kernel(&dir);
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // polyvisor for `--net tap=TAP` in a namespace where root made tap pvp0 for uid 1234,
    // run through `setpriv SETPRIV`.
    let attach = |setpriv: &str, tap: &str| {
        let script = format!(
            "ip tuntap add dev pvp0 mode tap user 1234 && \
             exec setpriv {setpriv} {} run --kernel {} --net tap={tap}",
            polyvisor_tests::runner::polyvisor_bin().display(),
            path_str(&k)
        );
        Polyvisor::new()
            .under(&["unshare", "--net", "sh", "-c", &script, "sh"])
            .run()
    };
    // Root without capabilities (an empty bounding set: none come back at exec): it still
    // opens /dev/net/tun (root's, 0600), but may neither attach to another user's tap nor
    // create one, so both reasons are given here whatever the device node's mode.
    let no_caps = "--bounding-set=-all --inh-caps=-all";
    attach(no_caps, "pvp0").assert_clean_error(
        CONFIG,
        &["--net", "tap=pvp0", "no permission", "another user"],
    );
    attach(no_caps, "pvnone").assert_clean_error(
        CONFIG,
        &["--net", "tap=pvnone", "no such device", "CAP_NET_ADMIN"],
    );
    // An unprivileged user (nobody): /dev/net/tun is usually root's alone (0600), and then
    // that is the reason given; where it is open to all, the tap's.
    let nobody = "--reuid=65534 --regid=65534 --clear-groups --inh-caps=-all";
    let tun_open_to_all = std::fs::metadata("/dev/net/tun")
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o006 == 0o006)
        .unwrap_or(false);
    if tun_open_to_all {
        attach(nobody, "pvp0").assert_clean_error(CONFIG, &["--net", "tap=pvp0", "no permission"]);
        attach(nobody, "pvnone")
            .assert_clean_error(CONFIG, &["--net", "tap=pvnone", "no such device"]);
    } else {
        attach(nobody, "pvp0").assert_clean_error(
            CONFIG,
            &["--net", "tap=pvp0", "/dev/net/tun", "ermission denied"],
        );
    }
}
