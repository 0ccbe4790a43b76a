//! `tools/bench-decode`: `dhp2p decode` against tshark with `dh-p2p.lua` on
//! the same generated capture, in one run: MB/s, packets/s, the ratio, and
//! the peak memory (VmHWM) of each; then `dhp2p decode` on a capture twice
//! as big, to show its memory does not grow with the file.
//!
//!   cargo build --release --bin dhp2p --example decode_bench
//!   target/release/examples/decode_bench [--mb 200] [--no-tshark]
//!
//! Captures are generated (by `examples/gen_capture.rs`) into
//! `<target>/decode-bench/` when missing.

#[allow(dead_code)]
#[path = "gen_capture.rs"]
mod gen_capture;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Peak resident memory of a process in kB, from /proc (Linux).
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Run {
    seconds: f64,
    peak_kb: u64,
    ok: bool,
}

/// Runs `cmd` with stdout to /dev/null, polling its VmHWM until it exits.
fn measure(cmd: &mut Command) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = vm_hwm_kb(pid) {
            peak = peak.max(kb);
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    Run {
        seconds: started.elapsed().as_secs_f64(),
        peak_kb: peak,
        // decode exits 1 only when the file has no Dahua datagram or is damaged.
        ok: status.success(),
    }
}

fn ensure_capture(dir: &Path, megabytes: u64) -> (PathBuf, u64) {
    let path = dir.join(format!("capture-{megabytes}mb.pcap"));
    if !path.exists() {
        eprintln!("generating {} ...", path.display());
        let partial = path.with_extension("partial");
        gen_capture::generate(&partial, megabytes).expect("generate capture");
        std::fs::rename(&partial, &path).expect("rename capture");
    }
    (
        path.clone(),
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
    )
}

/// Frames in a capture, counted by dhp2p itself (its stderr summary).
fn frames_of(dhp2p: &Path, capture: &Path) -> u64 {
    let out = Command::new(dhp2p)
        .args(["decode", "--kind", "cloud"])
        .arg(capture)
        .stdout(Stdio::null())
        .output()
        .expect("run dhp2p");
    let err = String::from_utf8_lossy(&out.stderr);
    err.split(": ")
        .find_map(|part| part.split(" frames").next()?.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut megabytes = 200u64;
    let mut tshark = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mb" => megabytes = args.next().and_then(|m| m.parse().ok()).unwrap_or(200),
            "--no-tshark" => tshark = false,
            other => {
                eprintln!("unknown argument {other:?}; usage: decode_bench [--mb N] [--no-tshark]");
                std::process::exit(2);
            }
        }
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/release/examples/decode_bench → target/release/dhp2p
    let release = exe.parent().and_then(Path::parent).expect("target dir");
    let dhp2p = release.join("dhp2p");
    assert!(
        dhp2p.exists(),
        "build the release binary first: {}",
        dhp2p.display()
    );
    let dir = release.join("decode-bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));

    let (capture, size) = ensure_capture(&dir, megabytes);
    let frames = frames_of(&dhp2p, &capture);
    let mb = size as f64 / 1e6;
    println!(
        "capture: {} ({mb:.1} MB, {frames} frames)",
        capture.display()
    );
    println!();
    println!("| run | seconds | MB/s | packets/s | peak memory (VmHWM) |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, run: &Run, mb: f64, frames: u64| {
        println!(
            "| {name} | {:.2} | {:.1} | {:.0} | {:.1} MB |{}",
            run.seconds,
            mb / run.seconds,
            frames as f64 / run.seconds,
            run.peak_kb as f64 / 1024.0,
            if run.ok { "" } else { " (failed)" }
        );
    };
    let decode = measure(Command::new(&dhp2p).arg("decode").arg("-q").arg(&capture));
    row("dhp2p decode (summary lines)", &decode, mb, frames);
    let json = measure(
        Command::new(&dhp2p)
            .args(["decode", "-q", "--json"])
            .arg(&capture),
    );
    row("dhp2p decode --json", &json, mb, frames);
    let tshark_run = tshark.then(|| {
        let lua = repo.join("dh-p2p.lua");
        let run = measure(
            Command::new("tshark")
                .arg("-X")
                .arg(format!("lua_script:{}", lua.display()))
                .args(["-o", "udp.try_heuristic_first:TRUE", "-r"])
                .arg(&capture),
        );
        row("tshark -X lua_script:dh-p2p.lua", &run, mb, frames);
        run
    });

    let (double, double_size) = ensure_capture(&dir, megabytes * 2);
    let double_frames = frames_of(&dhp2p, &double);
    let bigger = measure(Command::new(&dhp2p).arg("decode").arg("-q").arg(&double));
    row(
        &format!("dhp2p decode, {:.0} MB file", double_size as f64 / 1e6),
        &bigger,
        double_size as f64 / 1e6,
        double_frames,
    );
    println!();
    if let Some(t) = tshark_run {
        println!(
            "dhp2p decode is {:.1}x tshark with dh-p2p.lua (target: 20x)",
            t.seconds / decode.seconds
        );
    }
    println!(
        "peak memory: {:.1} MB on {mb:.0} MB, {:.1} MB on {:.0} MB",
        decode.peak_kb as f64 / 1024.0,
        bigger.peak_kb as f64 / 1024.0,
        double_size as f64 / 1e6
    );
}
