// SPDX-License-Identifier: Apache-2.0
//! The driver: argument parsing, the three peers' command lines, the measurement plan and
//! the report.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::args::{number, value};
use crate::guests::{self, Workload, MARK_BEGIN, MARK_END, MARK_EXIT, MARK_FIRST};
use crate::runner::{self, MarkSource, MemProbe, RunResult};
use crate::stats::{self, Figure};

const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;
/// Guest memory for the timing figures.
const BOOT_MIB: u64 = 128;
/// Guest memory sizes for the resident-memory figures.
const MEM_SIZES_MIB: [u64; 2] = [128, 2048];
/// Memory samples per size and peer (each run spins ~0.3 s).
const MAX_MEM_RUNS: usize = 5;
/// virtio-blk requests per run of the block guest.
const BLK_REQUESTS: u32 = 5000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Polyvisor,
    /// The floor with the kernel objects polyvisor creates by default.
    FloorSame,
    /// The floor with the in-kernel irqchip only (what any Linux-capable x86 VMM needs).
    Floor,
    /// The floor with no irqchip: the physical limit.
    FloorBare,
    Qemu,
}

const PEERS: [Peer; 5] = [
    Peer::Polyvisor,
    Peer::FloorSame,
    Peer::Floor,
    Peer::FloorBare,
    Peer::Qemu,
];

/// The kernel objects `polyvisor run` creates for the bench guests (no virtio devices):
/// the identity map and the irqchip, and an irqfd for each platform device with an
/// interrupt (i8042 GSI 1, COM1 GSI 4, ACPI GED GSI 5). Keep in step with
/// arch/x86_64/src/layout.rs and vmm/src/device_manager.rs.
pub const POLYVISOR_OBJECTS: &str = "identity-map,irqchip,irqfd=1,irqfd=4,irqfd=5";

impl Peer {
    /// The floor's `--objects` list, for the floor peers.
    fn objects(self) -> Option<&'static str> {
        match self {
            Peer::FloorSame => Some(POLYVISOR_OBJECTS),
            Peer::Floor => Some("irqchip"),
            Peer::FloorBare => Some("bare"),
            Peer::Polyvisor | Peer::Qemu => None,
        }
    }
}

struct Options {
    runs: usize,
    exits: u32,
    polyvisor: PathBuf,
    qemu: Option<PathBuf>,
    json: PathBuf,
}

/// Entry point of the x86_64 binary; returns the exit code.
pub fn main(args: &[String]) -> Result<u8, String> {
    match args.first().map(String::as_str) {
        Some("floor") => floor_main(&args[1..]),
        Some("guest") => guest_main(&args[1..]),
        Some("io-engine") => crate::io_engine::main(&args[1..]),
        _ => bench_main(args),
    }
}

fn floor_main(args: &[String]) -> Result<u8, String> {
    let (mut kernel, mut mib) = (None, BOOT_MIB);
    let mut objects = crate::floor::Objects::parse("irqchip")?;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--kernel" => kernel = Some(value(args, &mut i, "--kernel")?.to_string()),
            "--objects" => {
                objects = crate::floor::Objects::parse(value(args, &mut i, "--objects")?)?
            }
            "--memory-mib" => mib = number(value(args, &mut i, "--memory-mib")?, "--memory-mib")?,
            a => return Err(format!("floor: unknown argument '{a}'")),
        }
        i += 1;
    }
    let kernel = kernel.ok_or("floor: --kernel PATH is required")?;
    let bytes = std::fs::read(&kernel).map_err(|e| format!("reading {kernel}: {e}"))?;
    crate::floor::run(&bytes, mib * MIB, &objects)
}

fn guest_main(args: &[String]) -> Result<u8, String> {
    let (Some(kind), Some(path)) = (args.first(), args.get(1)) else {
        return Err("guest: usage: guest boot|pio|mmio|spin|rng PATH [--exits K]".into());
    };
    let mut exits = 10_000;
    if args.get(2).map(String::as_str) == Some("--exits") {
        exits = number(args.get(3).ok_or("--exits needs a value")?, "--exits")?;
    }
    let work = match kind.as_str() {
        "boot" => Workload::Boot,
        "pio" => Workload::Pio { count: exits },
        "mmio" => Workload::Mmio { count: exits },
        "spin" => Workload::Spin {
            cycles: guests::SPIN_TSC_CYCLES,
        },
        "rng" => Workload::Rng {
            count: u16::try_from(exits).map_err(|_| "--exits: at most 65535 for rng")?,
        },
        k => {
            return Err(format!(
                "guest: unknown workload '{k}' (boot, pio, mmio, spin, rng)"
            ))
        }
    };
    std::fs::write(path, guests::guest_kernel(work)).map_err(|e| format!("writing {path}: {e}"))?;
    Ok(0)
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        runs: 20,
        exits: 10_000,
        polyvisor: PathBuf::from("target/release/polyvisor"),
        qemu: Some(PathBuf::from("qemu-system-x86_64")),
        json: PathBuf::from("polyvisor-bench.json"),
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--runs" => o.runs = number(value(args, &mut i, "--runs")?, "--runs")?,
            "--exits" => o.exits = number(value(args, &mut i, "--exits")?, "--exits")?,
            "--polyvisor" => o.polyvisor = value(args, &mut i, "--polyvisor")?.into(),
            "--qemu" => o.qemu = Some(value(args, &mut i, "--qemu")?.into()),
            "--no-qemu" => o.qemu = None,
            "--json" => o.json = value(args, &mut i, "--json")?.into(),
            a => return Err(format!("unknown argument '{a}' (see --help)")),
        }
        i += 1;
    }
    if o.runs == 0 || o.exits == 0 {
        return Err("--runs and --exits must be at least 1".into());
    }
    if !o.polyvisor.is_file() {
        return Err(format!(
            "no polyvisor binary at {} (build it with `cargo build --release -p vmm`, or pass --polyvisor)",
            o.polyvisor.display()
        ));
    }
    Ok(o)
}

struct Bench {
    opts: Options,
    dir: PathBuf,
    self_exe: PathBuf,
}

impl Bench {
    fn command(&self, peer: Peer, kernel: &Path, mib: u64) -> (Command, MarkSource, i32) {
        match peer {
            Peer::Polyvisor => {
                let mut c = Command::new(&self.opts.polyvisor);
                c.arg("run").arg("--kernel").arg(kernel).args([
                    "--memory",
                    &format!("{mib}M"),
                    "--cpus",
                    "1",
                    "--boot-timer",
                ]);
                if kernel.file_stem().is_some_and(|s| s == RNG_GUEST) {
                    c.arg("--rng");
                }
                (c, MarkSource::PolyvisorLog, 0)
            }
            Peer::FloorSame | Peer::Floor | Peer::FloorBare => {
                let mut c = Command::new(&self.self_exe);
                c.arg("floor")
                    .arg("--kernel")
                    .arg(kernel)
                    .args(["--memory-mib", &mib.to_string()])
                    .args(["--objects", peer.objects().unwrap_or("irqchip")]);
                (c, MarkSource::FloorLog, 0)
            }
            Peer::Qemu => {
                let mut c = Command::new(self.opts.qemu.as_ref().expect("qemu peer enabled"));
                // `-cpu host` alone aborts on this machine's software KVM: QEMU's write of
                // MSR_IA32_ARCH_CAPABILITIES (0x10a) is refused.
                c.args([
                    "-M",
                    "microvm",
                    "-accel",
                    "kvm",
                    "-cpu",
                    "host,-arch-capabilities",
                ])
                .args(["-m", &format!("{mib}M"), "-smp", "1"])
                .args(["-nodefaults", "-no-user-config", "-display", "none"])
                .args(["-serial", "none", "-monitor", "none", "-no-reboot"])
                .args(["-debugcon", "stdio"])
                .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x01"])
                .arg("-kernel")
                .arg(kernel);
                // isa-debug-exit: exit status (value << 1) | 1, and the guest writes 0.
                (c, MarkSource::Debugcon, 1)
            }
        }
    }

    fn kernel(&self, name: &str, work: Workload) -> Result<PathBuf, String> {
        let p = self.dir.join(format!("{name}.elf"));
        std::fs::write(&p, guests::guest_kernel(work))
            .map_err(|e| format!("writing {}: {e}", p.display()))?;
        Ok(p)
    }

    /// One run of `peer`; checks the exit status and that `need` marks arrived.
    fn run_once(
        &self,
        peer: Peer,
        kernel: &Path,
        mib: u64,
        probe: Option<MemProbe>,
        need: &[u8],
    ) -> Result<RunResult, String> {
        let (cmd, source, want) = self.command(peer, kernel, mib);
        self.checked(cmd, source, want, peer, probe, need)
    }

    /// Runs `cmd`; checks its exit status is `want` and that `need` marks arrived.
    fn checked(
        &self,
        cmd: Command,
        source: MarkSource,
        want: i32,
        peer: Peer,
        probe: Option<MemProbe>,
        need: &[u8],
    ) -> Result<RunResult, String> {
        let r = runner::run(cmd, source, probe, RUN_TIMEOUT)?;
        if r.status.code() != Some(want) {
            return Err(format!(
                "{peer:?} exited with {} (expected {want}); stderr:\n{}",
                r.status,
                runner::tail(&r.stderr)
            ));
        }
        if let Some(m) = need.iter().find(|m| !r.marks.contains_key(m)) {
            return Err(format!(
                "{peer:?}: the guest's mark {m} never arrived; stderr:\n{}",
                runner::tail(&r.stderr)
            ));
        }
        Ok(r)
    }
}

/// One virtio-blk row: its name, title, queue depth and whether the disk is `direct=on`.
struct BlkCase {
    name: &'static str,
    title: &'static str,
    depth: u32,
    direct: bool,
}

const BLK_CASES: [BlkCase; 3] = [
    BlkCase {
        name: "blk_4k_read_us",
        title: "virtio-blk: one 4 KiB read at queue depth 1 (notify → used ring, polled)",
        depth: 1,
        direct: false,
    },
    BlkCase {
        name: "blk_4k_read_direct_us",
        title: "virtio-blk direct=on: one 4 KiB read at queue depth 1, per request",
        depth: 1,
        direct: true,
    },
    BlkCase {
        name: "blk_4k_read_direct_qd4_us",
        title: "virtio-blk direct=on: 4 KiB reads 4 at a time (one notify), per request",
        depth: 4,
        direct: true,
    },
];

/// The cost of one virtio-blk request (polyvisor only: the floor has no device, and QEMU
/// microvm puts its virtio-mmio slots elsewhere), and its ratio to polyvisor's PIO exit
/// round trip measured in the same run. The image is a 1 MiB file in the temporary
/// directory (which must take O_DIRECT for the `direct=on` rows).
fn blk_figure(b: &Bench, pio: &Figure, case: &BlkCase) -> Result<Figure, String> {
    let mut f = Figure::new(case.name, case.title, "µs");
    let rounds = BLK_REQUESTS / case.depth;
    let kernel = b.kernel(
        case.name,
        Workload::BlkRead {
            count: rounds,
            depth: case.depth,
        },
    )?;
    let disk = b.dir.join("blk.img");
    std::fs::write(&disk, vec![0xa5u8; MIB as usize])
        .map_err(|e| format!("writing {}: {e}", disk.display()))?;
    for i in 0..b.opts.runs {
        eprint!(
            "\rpolyvisor-bench: virtio-blk runs {}/{}   ",
            i + 1,
            b.opts.runs
        );
        let (mut cmd, source, want) = b.command(Peer::Polyvisor, &kernel, BOOT_MIB);
        let direct = if case.direct { ",direct=on" } else { "" };
        cmd.arg("--disk")
            .arg(format!("path={}{direct}", disk.display()));
        match b.checked(
            cmd,
            source,
            want,
            Peer::Polyvisor,
            None,
            &[MARK_BEGIN, MARK_END],
        ) {
            Ok(r) => push(
                &mut f,
                Peer::Polyvisor,
                r.between_ms(MARK_BEGIN, MARK_END)
                    .map(|ms| ms * 1e3 / f64::from(rounds * case.depth)),
            ),
            Err(e) => {
                let first = e.lines().take(3).collect::<Vec<_>>().join(" / ");
                f.note = Some(format!("not measured: {first}"));
                break;
            }
        }
    }
    eprintln!();
    if let (Some(blk), Some(pio)) = (
        stats::summarize(&f.polyvisor),
        stats::summarize(&pio.polyvisor),
    ) {
        f.note = Some(format!(
            "polyvisor only (the floor has no device; QEMU microvm's virtio-mmio slots are \
             elsewhere): {:.1}× polyvisor's PIO exit round trip (median over median)",
            blk.median / pio.median
        ));
    }
    Ok(f)
}

fn push(f: &mut Figure, peer: Peer, v: Option<f64>) {
    let Some(v) = v else { return };
    match peer {
        Peer::Polyvisor => f.polyvisor.push(v),
        Peer::FloorSame => f.floor_same.push(v),
        Peer::Floor => f.floor.push(v),
        Peer::FloorBare => f.floor_bare.push(v),
        Peer::Qemu => f.qemu.push(v),
    }
}

fn bench_main(args: &[String]) -> Result<u8, String> {
    let opts = parse_options(args)?;
    if !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm is missing: the benchmarks need KVM".into());
    }
    let dir = std::env::temp_dir().join(format!("polyvisor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let self_exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut b = Bench {
        opts,
        dir,
        self_exe,
    };
    let result = measure(&mut b);
    let _ = std::fs::remove_dir_all(&b.dir);
    let (figures, meta, note) = result?;
    println!("{}", stats::markdown(&figures, note.as_deref()));
    let json = stats::json(&figures, &meta);
    if let Some(parent) = b.opts.json.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&b.opts.json, json)
        .map_err(|e| format!("writing {}: {e}", b.opts.json.display()))?;
    println!("JSON report: {}", b.opts.json.display());
    Ok(0)
}

/// The figures, the JSON metadata and a note for the table (why QEMU is missing).
type Report = (Vec<Figure>, Vec<(&'static str, String)>, Option<String>);

fn measure(b: &mut Bench) -> Result<Report, String> {
    let runs = b.opts.runs;
    let k = b.opts.exits;
    let boot = b.kernel("boot", Workload::Boot)?;
    let pio = b.kernel("pio", Workload::Pio { count: k })?;
    let mmio = b.kernel("mmio", Workload::Mmio { count: k })?;
    let spin = b.kernel(
        "spin",
        Workload::Spin {
            cycles: guests::SPIN_TSC_CYCLES,
        },
    )?;

    // Polyvisor and the floor must work; QEMU is a peer we report on either way.
    for peer in [
        Peer::Polyvisor,
        Peer::FloorSame,
        Peer::Floor,
        Peer::FloorBare,
    ] {
        b.run_once(peer, &boot, BOOT_MIB, None, &[MARK_FIRST, MARK_EXIT])?;
    }
    let mut qemu_note = None;
    if b.opts.qemu.is_some() {
        if let Err(e) = b.run_once(Peer::Qemu, &boot, BOOT_MIB, None, &[MARK_FIRST, MARK_EXIT]) {
            let first = e.lines().take(4).collect::<Vec<_>>().join(" / ");
            eprintln!(
                "polyvisor-bench: QEMU microvm could not run the guest, reporting without it: {e}"
            );
            qemu_note = Some(format!("QEMU microvm did not run the guest here: {first}"));
            b.opts.qemu = None;
        }
    } else {
        qemu_note = Some("QEMU not measured (--no-qemu)".into());
    }
    let peers: Vec<Peer> = PEERS
        .into_iter()
        .filter(|p| *p != Peer::Qemu || b.opts.qemu.is_some())
        .collect();

    let mut first = Figure::new(
        "start_to_first_instruction_ms",
        "process start → first guest instruction (128 MiB, 1 vCPU)",
        "ms",
    );
    let mut whole = Figure::new(
        "start_to_exit_ms",
        "process start → process exit, whole run (128 MiB, 1 vCPU)",
        "ms",
    );
    let mut teardown = Figure::new(
        "teardown_ms",
        "teardown: guest reset request → process exit",
        "ms",
    );
    let mut pio_f = Figure::new(
        "pio_exit_us",
        "PIO exit round trip (out to an unclaimed port)",
        "µs",
    );
    let mut mmio_f = Figure::new(
        "mmio_exit_us",
        "MMIO exit round trip (write to unclaimed MMIO)",
        "µs",
    );
    // The rng guest runs under polyvisor only (no peer has the device at that address).
    let rng_count = u16::try_from(k.min(RNG_REQUESTS_MAX)).unwrap_or(u16::MAX);
    let rng = b.kernel(RNG_GUEST, Workload::Rng { count: rng_count })?;
    let mut rng_f = Figure::new(
        "rng_request_us",
        "virtio-rng request, 64 bytes (notify → used, guest polling)",
        "µs",
    );
    let mut internal = Vec::new();

    for i in 0..runs {
        eprint!("\rpolyvisor-bench: boot and exit runs {}/{runs}   ", i + 1);
        for j in 0..peers.len() {
            // Rotate the order so no peer always runs right after another.
            let peer = peers[(i + j) % peers.len()];
            let r = b.run_once(peer, &boot, BOOT_MIB, None, &[MARK_FIRST, MARK_EXIT])?;
            push(&mut first, peer, r.mark_ms(MARK_FIRST));
            push(&mut whole, peer, Some(r.exit_ms()));
            push(
                &mut teardown,
                peer,
                r.mark_ms(MARK_EXIT).map(|m| r.exit_ms() - m),
            );
            if let Some(ms) = r.internal_ms.get(&MARK_FIRST) {
                internal.push(*ms);
            }
            let r = b.run_once(peer, &pio, BOOT_MIB, None, &[MARK_BEGIN, MARK_END])?;
            push(
                &mut pio_f,
                peer,
                r.between_ms(MARK_BEGIN, MARK_END)
                    .map(|ms| ms * 1e3 / f64::from(k)),
            );
            let r = b.run_once(peer, &mmio, BOOT_MIB, None, &[MARK_BEGIN, MARK_END])?;
            push(
                &mut mmio_f,
                peer,
                r.between_ms(MARK_BEGIN, MARK_END)
                    .map(|ms| ms * 1e3 / f64::from(k)),
            );
        }
    }
    for i in 0..runs {
        eprint!("\rpolyvisor-bench: rng runs {}/{runs}   ", i + 1);
        let r = b.run_once(
            Peer::Polyvisor,
            &rng,
            BOOT_MIB,
            None,
            &[MARK_BEGIN, MARK_END],
        )?;
        push(
            &mut rng_f,
            Peer::Polyvisor,
            r.between_ms(MARK_BEGIN, MARK_END)
                .map(|ms| ms * 1e3 / f64::from(rng_count)),
        );
    }
    eprintln!();
    let in_pio = stats::ratio(
        stats::summarize(&rng_f.polyvisor),
        stats::summarize(&pio_f.polyvisor),
    );
    rng_f.note = Some(match in_pio {
        Some(x) => format!(
            "{x:.1}× polyvisor's PIO exit round trip in the same run (the notify is an \
             ioeventfd, the request served on the device's thread); polyvisor only"
        ),
        None => "polyvisor only".into(),
    });
    let mut figures = vec![first, whole, teardown];
    for case in &BLK_CASES {
        figures.push(blk_figure(b, &pio_f, case)?);
    }
    figures.splice(3..3, [pio_f, mmio_f, rng_f]);

    for mib in MEM_SIZES_MIB {
        let size = if mib >= 1024 {
            format!("{} GiB", mib / 1024)
        } else {
            format!("{mib} MiB")
        };
        let mut rss = Figure::new(
            leak(format!("rss_{mib}m_mib")),
            leak(format!("RSS, whole process ({size} guest)")),
            "MiB",
        );
        let mut pss = Figure::new(
            leak(format!("pss_{mib}m_mib")),
            leak(format!("PSS, whole process ({size} guest)")),
            "MiB",
        );
        let mut grss = Figure::new(
            leak(format!("guest_rss_{mib}m_mib")),
            leak(format!("RSS of guest-memory mapping ({size} guest)")),
            "MiB",
        );
        let mut orss = Figure::new(
            leak(format!("other_rss_{mib}m_mib")),
            leak(format!("RSS of everything else ({size} guest)")),
            "MiB",
        );
        let mut opss = Figure::new(
            leak(format!("other_pss_{mib}m_mib")),
            leak(format!("PSS of everything else ({size} guest)")),
            "MiB",
        );
        let probe = MemProbe {
            after_mark: MARK_BEGIN,
            delay: Duration::from_millis(100),
            guest_bytes: mib * MIB,
        };
        let mem_runs = runs.min(MAX_MEM_RUNS);
        for i in 0..mem_runs {
            eprint!(
                "\rpolyvisor-bench: memory runs ({size}) {}/{mem_runs}   ",
                i + 1
            );
            for j in 0..peers.len() {
                let peer = peers[(i + j) % peers.len()];
                let r = b.run_once(peer, &spin, mib, Some(probe), &[MARK_BEGIN])?;
                let Some(m) = r.mem else {
                    eprintln!(
                        "\npolyvisor-bench: {peer:?}: no memory sample (the guest ended before it)"
                    );
                    continue;
                };
                let kib = |x: u64| Some(x as f64 / 1024.0);
                push(&mut rss, peer, kib(m.rss_kib));
                push(&mut pss, peer, kib(m.pss_kib));
                push(&mut grss, peer, kib(m.guest_rss_kib));
                push(&mut orss, peer, kib(m.other_rss_kib()));
                push(&mut opss, peer, kib(m.other_pss_kib()));
            }
        }
        eprintln!();
        figures.extend([rss, pss, grss, orss, opss]);
    }

    match density_figures(b, &peers) {
        Ok(f) => figures.extend(f),
        Err(e) => eprintln!("\npolyvisor-bench: no density figures: {e}"),
    }

    let internal =
        stats::summarize(&internal).map_or_else(|| "null".to_string(), |s| format!("{}", s.median));
    let meta = vec![
        ("runs", runs.to_string()),
        ("exits_per_run", k.to_string()),
        (
            "polyvisor",
            stats::json_string(&b.opts.polyvisor.display().to_string()),
        ),
        (
            "qemu",
            b.opts.qemu.as_ref().map_or_else(
                || "null".into(),
                |q| stats::json_string(&q.display().to_string()),
            ),
        ),
        (
            "qemu_note",
            qemu_note
                .as_deref()
                .map_or_else(|| "null".into(), stats::json_string),
        ),
        ("polyvisor_boot_timer_first_instruction_ms_median", internal),
        ("floor_same_objects", stats::json_string(POLYVISOR_OBJECTS)),
    ];
    Ok((figures, meta, qemu_note))
}

/// The rng guest's file name (polyvisor runs it with `--rng`).
const RNG_GUEST: &str = "rng";
/// At most this many rng requests per run (each costs several exits' worth).
const RNG_REQUESTS_MAX: u32 = 2000;

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Batch sizes of the density figures.
const DENSITY_N: [usize; 2] = [10, 50];
/// Batches per size and peer.
const DENSITY_ROUNDS: usize = 3;
/// How long a whole batch may take to reach its first instructions.
const DENSITY_TIMEOUT: Duration = Duration::from_secs(120);

/// Density (issue 19): N tiny VMs started at once, polyvisor and QEMU microvm alternating
/// (the floors are single-shot programs, not VMMs: not measured here).
fn density_figures(b: &Bench, peers: &[Peer]) -> Result<Vec<Figure>, String> {
    let halt = b.kernel("halt", Workload::Halt)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let peers: Vec<Peer> = peers
        .iter()
        .copied()
        .filter(|p| matches!(p, Peer::Polyvisor | Peer::Qemu))
        .collect();
    let mut out = Vec::new();
    for n in DENSITY_N {
        let mut rate = Figure::new(
            leak(format!("density_{n}_vms_per_s_per_core")),
            leak(format!(
                "density, {n} VMs at once: VMs started per second per core"
            )),
            "VMs/s/core",
        );
        let mut p50 = Figure::new(
            leak(format!("density_{n}_start_p50_ms")),
            leak(format!(
                "density, {n} VMs at once: start → first instruction, p50"
            )),
            "ms",
        );
        let mut p99 = Figure::new(
            leak(format!("density_{n}_start_p99_ms")),
            leak(format!(
                "density, {n} VMs at once: start → first instruction, p99"
            )),
            "ms",
        );
        let mut host = Figure::new(
            leak(format!("density_{n}_host_mib_per_vm")),
            leak(format!(
                "density, {n} VMs at once: host MemAvailable drop per VM"
            )),
            "MiB",
        );
        let mut pss = Figure::new(
            leak(format!("density_{n}_pss_mib_per_vm")),
            leak(format!("density, {n} VMs at once: PSS of one VMM process")),
            "MiB",
        );
        for round in 0..DENSITY_ROUNDS {
            for j in 0..peers.len() {
                let peer = peers[(round + j) % peers.len()];
                eprint!(
                    "\rpolyvisor-bench: density {n} VMs, round {}/{DENSITY_ROUNDS}, {peer:?}     ",
                    round + 1
                );
                let source = b.command(peer, &halt, BOOT_MIB).1;
                let batch = crate::density::batch(
                    n,
                    || b.command(peer, &halt, BOOT_MIB).0,
                    source,
                    DENSITY_TIMEOUT,
                )
                .map_err(|e| format!("density, {peer:?}: {e}"))?;
                push(
                    &mut rate,
                    peer,
                    Some(n as f64 / (batch.wall_ms / 1e3) / cores),
                );
                push(
                    &mut p50,
                    peer,
                    crate::density::percentile(&batch.start_ms, 50.0),
                );
                push(
                    &mut p99,
                    peer,
                    crate::density::percentile(&batch.start_ms, 99.0),
                );
                push(
                    &mut host,
                    peer,
                    Some(batch.host_growth_kib as f64 / 1024.0 / n as f64),
                );
                let mut v: Vec<f64> = batch.pss_kib.iter().map(|k| *k as f64 / 1024.0).collect();
                v.sort_by(f64::total_cmp);
                push(&mut pss, peer, crate::density::percentile(&v, 50.0));
            }
        }
        eprintln!();
        out.extend([rate, p50, p99, host, pss]);
    }
    Ok(out)
}
