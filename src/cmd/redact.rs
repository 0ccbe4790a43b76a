//! `dhp2p redact`: command-line flags and the file handling around
//! [`dhp2p::redact::Redactor`] (read the input twice, write the output through a
//! temporary file that only becomes OUT when everything went right).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pcap_file::TsResolution;
use sha2::{Digest, Sha256};

use dhp2p::capture::UdpPcapWriter;
use dhp2p::decode::pcap::{CaptureFormat, PcapReader};

use dhp2p::redact::{Counts, Redactor};

pub const REDACT_AFTER_HELP: &str = "\
What changes:
  serials, usernames, tokens    keyed pseudonyms of the same length and alphabet
  WSSE digests and nonces, DevAuth, Info and encrypted LocalAddr blobs,
  the agent's sign              keyed filler of the same length
  RTSP/HTTP Authorization and WWW-Authenticate values, URL userinfo
                                x's of the same length
  IPv4/IPv6 addresses           documentation addresses (192.0.2.0/24,
                                198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32),
                                the same in IP headers and in payloads;
                                loopback stays loopback
  --drop-media                  RTP payloads in interleaved frames zeroed
Everything else stays byte for byte: times, ports, counters, realm IDs.
The output is pcap (Ethernet, IPv4/IPv6, UDP), one frame per UDP datagram;
frames that are not UDP are left out.

Exit codes:
  0  written; what was replaced is listed on stderr
  1  refused (something could not be redacted safely) or I/O error; no
     output file is left behind
  2  usage error

Examples:
  dhp2p redact session.pcap -o session-public.pcap
  dhp2p redact a.pcapng -o a.pcap --key-env DHP2P_REDACT_KEY --drop-media";

#[derive(Debug, Clone, Args)]
pub struct RedactArgs {
    /// The capture to redact (pcap or pcapng).
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Where to write the redacted capture (pcap).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
    /// A file whose contents key the pseudonyms: the same key gives the
    /// same pseudonyms across files. Without a key, a random one per run.
    #[arg(long, value_name = "FILE", conflicts_with = "key_env")]
    pub key: Option<PathBuf>,
    /// Like --key, with the key in an environment variable.
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
    /// Zero the payload of RTP packets (headers kept): a small file that
    /// shows nothing of the picture.
    #[arg(long)]
    pub drop_media: bool,
}

/// Runs the command; returns the exit code.
pub fn run(args: &RedactArgs, quiet: bool) -> u8 {
    let partial = partial_path(&args.output);
    match redact_file(args, &partial) {
        Ok(counts) => {
            if let Err(e) = std::fs::rename(&partial, &args.output) {
                let _ = std::fs::remove_file(&partial);
                eprintln!("dhp2p redact: cannot write {}: {e}", args.output.display());
                return 1;
            }
            if !quiet {
                report(&args.output, &counts);
            }
            0
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            eprintln!("dhp2p redact: {e:#}");
            1
        }
    }
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    output.with_file_name(name)
}

fn report(output: &Path, counts: &Counts) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "dhp2p redact: wrote {}; replaced:", output.display());
    for (kind, n) in &counts.0 {
        let _ = writeln!(err, "  {kind:<32} {n}");
    }
}

fn key(args: &RedactArgs) -> anyhow::Result<[u8; 32]> {
    let material = if let Some(path) = &args.key {
        std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read the key file {}: {e}", path.display()))?
    } else if let Some(var) = &args.key_env {
        std::env::var(var)
            .map_err(|_| anyhow::anyhow!("the environment variable {var} is not set"))?
            .into_bytes()
    } else {
        return Ok(rand::random());
    };
    if material.is_empty() {
        anyhow::bail!("the key is empty");
    }
    Ok(Sha256::digest(&material).into())
}

fn open(path: &Path) -> anyhow::Result<PcapReader<BufReader<File>>> {
    let file =
        File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    PcapReader::new(BufReader::new(file)).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn progress(path: &Path, pass: &str) -> ProgressBar {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}") {
        bar.set_style(style);
    }
    bar.set_message(format!("redact: {pass}"));
    bar
}

fn redact_file(args: &RedactArgs, partial: &Path) -> anyhow::Result<Counts> {
    if args.input == args.output {
        anyhow::bail!("IN and OUT are the same file");
    }
    let mut redactor = Redactor::new(key(args)?, args.drop_media);
    let mut reader = open(&args.input)?;
    let bar = progress(&args.input, "reading");
    while let Some(record) = reader.next_record() {
        let record = record.map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
        redactor.observe(&record)?;
        bar.set_position(reader.offset());
    }
    bar.finish_and_clear();
    let skipped = reader.stats().skipped_non_udp + reader.stats().skipped_link_type;
    redactor.finish_observing()?;

    let mut reader = open(&args.input)?;
    let resolution = match reader.format() {
        CaptureFormat::Pcap {
            nanosecond: false, ..
        } => TsResolution::MicroSecond,
        _ => TsResolution::NanoSecond,
    };
    let file = File::create(partial)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", partial.display()))?;
    let mut writer = UdpPcapWriter::with_resolution(BufWriter::new(file), resolution)?;
    let bar = progress(&args.input, "writing");
    while let Some(record) = reader.next_record() {
        let record = record.map_err(|e| anyhow::anyhow!("{}: {e}", args.input.display()))?;
        let out = redactor.rewrite(&record)?;
        writer.write_udp_any(out.time, out.src, out.dst, &out.payload)?;
        bar.set_position(reader.offset());
    }
    bar.finish_and_clear();
    writer.into_inner().flush()?;
    let mut counts = redactor.counts().clone();
    counts.add("non-UDP frames left out", skipped);
    Ok(counts)
}
