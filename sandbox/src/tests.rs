// SPDX-License-Identifier: Apache-2.0
use super::*;

/// Calls no thread kind may make: starting programs, ptrace, mounts, signals to other
/// processes; nor opening files, but for the main thread (which builds a restarted guest's
/// machine); nor new sockets, but for the vsock worker (a guest's connection to PATH_P)
/// and the threads it inherits its filter from (the vCPU that starts it, main).
fn forbidden(kind: ThreadKind) -> Vec<(libc::c_long, &'static str)> {
    let mut v = vec![
        (libc::SYS_execve, "execve"),
        (libc::SYS_execveat, "execveat"),
        (libc::SYS_chdir, "chdir"),
        (libc::SYS_ptrace, "ptrace"),
        (libc::SYS_process_vm_readv, "process_vm_readv"),
        (libc::SYS_mount, "mount"),
        (libc::SYS_kill, "kill"),
        (libc::SYS_setuid, "setuid"),
    ];
    // Main builds a restarted guest's machine; the API thread checks the files a
    // vm.create names.
    if !matches!(kind, ThreadKind::Main | ThreadKind::Api) {
        v.push((libc::SYS_openat, "openat"));
    }
    if !matches!(
        kind,
        ThreadKind::Main | ThreadKind::Vcpu | ThreadKind::VirtioVsock
    ) {
        v.push((libc::SYS_socket, "socket"));
        v.push((libc::SYS_connect, "connect"));
    }
    v
}

#[test]
fn every_kind_allows_its_list_and_nothing_forbidden() {
    for kind in ThreadKind::ALL {
        let list = allowed(kind);
        assert!(list.len() > 10, "{kind:?}: {} calls", list.len());
        for mode in [Mode::Kill, Mode::Log] {
            let p = program(kind, mode).unwrap();
            let otherwise = if mode == Mode::Kill {
                bpf::RET_KILL_PROCESS
            } else {
                bpf::RET_LOG
            };
            for s in &list {
                assert!(!s.why.is_empty());
                let nr = s.nr as u32;
                assert_eq!(
                    bpf::evaluate(&p, AUDIT_ARCH, nr),
                    bpf::RET_ALLOW,
                    "{}",
                    s.name
                );
            }
            for (nr, name) in forbidden(kind) {
                assert_eq!(
                    bpf::evaluate(&p, AUDIT_ARCH, nr as u32),
                    otherwise,
                    "{kind:?} allows {name}"
                );
            }
        }
        assert!(program(kind, Mode::Off).is_none());
    }
}

#[test]
fn workers_are_narrower_than_the_vcpu_that_starts_them() {
    let vcpu: Vec<_> = allowed(ThreadKind::Vcpu).iter().map(|s| s.nr).collect();
    for kind in [
        ThreadKind::VirtioRng,
        ThreadKind::VirtioBlk,
        ThreadKind::VirtioNet,
        ThreadKind::VirtioVsock,
    ] {
        // A worker inherits the vCPU thread's filter: anything it needs beyond it would
        // kill the process.
        for s in allowed(kind) {
            assert!(
                vcpu.contains(&s.nr),
                "{kind:?} needs {} the vCPU lacks",
                s.name
            );
        }
    }
    // The main thread starts every other kind (again on a restart, under its filter).
    let main: Vec<_> = allowed(ThreadKind::Main).iter().map(|s| s.nr).collect();
    for kind in ThreadKind::ALL {
        for s in allowed(kind) {
            assert!(main.contains(&s.nr), "{kind:?} needs {} main lacks", s.name);
        }
    }
    let rng = allowed(ThreadKind::VirtioRng);
    assert!(!rng.iter().any(|s| s.nr == libc::SYS_pwritev));
    assert!(!rng.iter().any(|s| s.nr == libc::SYS_accept4));
}

#[test]
fn modes_parse_as_cloud_hypervisor_names_them() {
    assert_eq!("true".parse::<Mode>(), Ok(Mode::Kill));
    assert_eq!("log".parse::<Mode>(), Ok(Mode::Log));
    assert_eq!("false".parse::<Mode>(), Ok(Mode::Off));
    assert!("yes".parse::<Mode>().is_err());
    for m in [Mode::Kill, Mode::Log, Mode::Off] {
        assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
    }
    assert_eq!(Mode::default(), Mode::Kill);
}

#[test]
fn worker_names_map_to_their_kinds() {
    assert_eq!(
        ThreadKind::of_worker("virtio-blk"),
        Some(ThreadKind::VirtioBlk)
    );
    assert_eq!(
        ThreadKind::of_worker("virtio-vsock"),
        Some(ThreadKind::VirtioVsock)
    );
    assert_eq!(ThreadKind::of_worker("vcpu0"), None);
}

/// The `Seccomp:` and `NoNewPrivs:` lines of the calling thread's status.
fn thread_status() -> (String, String) {
    let s = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (field("Seccomp:"), field("NoNewPrivs:"))
}

/// Whether this kernel runs seccomp filters: qemu-user (the foreign-target unit tests)
/// does not; there the BPF is checked by `evaluate` only, and the nested runs check the
/// real kernels.
fn kernel_has_seccomp() -> bool {
    std::thread::spawn(|| install(ThreadKind::Vcpu, Mode::Log).is_ok() && thread_status().0 == "2")
        .join()
        .unwrap()
}

#[test]
fn log_mode_lets_a_forbidden_call_through_and_marks_the_thread() {
    if !kernel_has_seccomp() {
        eprintln!("no seccomp filters here (qemu-user?): checked by evaluate only");
        return;
    }
    let before = thread_status().0;
    std::thread::spawn(|| {
        install(ThreadKind::Vcpu, Mode::Log).unwrap();
        assert_eq!(thread_status(), ("2".to_string(), "1".to_string()));
        // SAFETY: socket() takes integers; the fd is closed at once.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0, "socket was refused in log mode");
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    })
    .join()
    .unwrap();
    // The filter belongs to that thread only: this one is as it was (0, or 2 where a
    // container runtime filters every process, as Docker's default profile does).
    assert_eq!(thread_status().0, before);
}

#[test]
fn off_sets_no_new_privs_only() {
    // What the thread had before (a container runtime may filter every process already).
    let before = thread_status().0;
    std::thread::spawn(move || {
        install(ThreadKind::Vcpu, Mode::Off).unwrap();
        assert_eq!(thread_status(), (before, "1".to_string()));
    })
    .join()
    .unwrap();
}

const CHILD_ENV: &str = "POLYVISOR_SANDBOX_TEST_CHILD";

/// Run in a child process by `a_forbidden_call_from_a_vcpu_thread_kills_the_process`:
/// a vCPU-filtered thread calls `chdir`, which must never return.
#[test]
fn child_calls_chdir_under_the_vcpu_filter() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return; // only meaningful as the child below
    }
    std::thread::spawn(|| {
        install(ThreadKind::Vcpu, Mode::Kill).unwrap();
        // SAFETY: chdir reads a NUL-terminated string that lives for the call.
        let rc = unsafe { libc::chdir(c"/".as_ptr()) };
        // Not reached when the filter works; exit_group is allowed.
        // SAFETY: ends the process with a status the parent reads as failure.
        unsafe { libc::_exit(if rc == 0 { 10 } else { 11 }) };
    })
    .join()
    .unwrap();
}

#[test]
fn a_forbidden_call_from_a_vcpu_thread_kills_the_process() {
    use std::os::unix::process::ExitStatusExt;
    if !kernel_has_seccomp() {
        eprintln!("no seccomp filters here (qemu-user?): checked by evaluate only");
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::child_calls_chdir_under_the_vcpu_filter",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGSYS),
        "child ended with {status:?}"
    );
}

#[test]
fn every_list_stays_small_and_workers_smallest() {
    for kind in ThreadKind::ALL {
        let n = allowed(kind).len();
        eprintln!("{kind:?}: {n} system calls on {}", std::env::consts::ARCH);
        assert!(n < 100, "{kind:?} allows {n} calls");
    }
    let n = |k| allowed(k).len();
    assert!(n(ThreadKind::VirtioRng) < n(ThreadKind::Vcpu));
    assert!(n(ThreadKind::Vcpu) < n(ThreadKind::Main));
}
