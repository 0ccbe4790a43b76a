//! Where records come from: a capture file, a live pcap stream on stdin, or
//! a `--tap` of a running tunnel or emulator (reconnecting when it goes
//! away). Each source reads on its own thread with the decode layer's
//! streaming [`PcapReader`] and sends [`SourceEvent`]s over a bounded
//! channel, so a fast source waits for the inspector instead of filling
//! memory, and the terminal loop never blocks on I/O.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;
use std::time::Duration;

use crate::decode::pcap::PcapReader;

use super::app::SourceState;
use super::SourceEvent;

/// Events buffered between a source thread and the inspector.
pub const CHANNEL_CAPACITY: usize = 10_000;
/// Pause between attempts to reach a tap.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// How long one connection attempt to a tap may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A source the inspector can follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A pcap or pcapng file, read to its end.
    File(PathBuf),
    /// A live pcap stream on stdin (`tcpdump -w - | dhp2p inspect -`).
    Stdin,
    /// The pcap-over-TCP stream of `--tap ADDR`.
    Tap(SocketAddr),
}

impl Input {
    /// What the status line calls the source.
    pub fn label(&self) -> String {
        match self {
            Input::File(path) => path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            Input::Stdin => "stdin".to_owned(),
            Input::Tap(addr) => format!("tap {addr}"),
        }
    }

    /// Whether the source keeps delivering (the inspector then starts in
    /// follow mode).
    pub fn is_live(&self) -> bool {
        !matches!(self, Input::File(_))
    }
}

/// Opens a capture file and reads its header, so a missing or broken file
/// is reported before the terminal is taken over.
pub fn open_file(path: &PathBuf) -> io::Result<PcapReader<BufReader<File>>> {
    let file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    PcapReader::new(BufReader::new(file)).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Starts reading a file whose header [`open_file`] already read.
pub fn spawn_file(reader: PcapReader<BufReader<File>>) -> Receiver<SourceEvent> {
    spawn(move |tx| {
        let _ = tx.send(SourceEvent::State(SourceState::Live));
        finish(&tx, pump(reader, &tx));
    })
}

/// Starts reading a live pcap stream from stdin.
pub fn spawn_stdin() -> Receiver<SourceEvent> {
    spawn(move |tx| {
        let stdin = io::stdin();
        match PcapReader::new(stdin.lock()) {
            Ok(reader) => {
                let _ = tx.send(SourceEvent::State(SourceState::Live));
                finish(&tx, pump(reader, &tx));
            }
            Err(e) => {
                let _ = tx.send(SourceEvent::State(SourceState::Failed(format!(
                    "stdin: {e}"
                ))));
            }
        }
    })
}

/// Follows a tap, reconnecting (every [`RECONNECT_DELAY`]) whenever it is
/// not there or goes away, until the inspector quits.
pub fn spawn_tap(addr: SocketAddr) -> Receiver<SourceEvent> {
    spawn(move |tx| loop {
        let why = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => match PcapReader::new(stream) {
                Ok(reader) => {
                    if tx.send(SourceEvent::State(SourceState::Live)).is_err() {
                        return;
                    }
                    match pump(reader, &tx) {
                        Ok(Flow::Stopped) => return,
                        Ok(Flow::Ended) => format!("tap {addr} closed the stream"),
                        Err(e) => format!("tap {addr}: {e}"),
                    }
                }
                Err(e) => format!("tap {addr}: {e}"),
            },
            Err(e) => format!("cannot connect to tap {addr}: {e}"),
        };
        if tx
            .send(SourceEvent::State(SourceState::Reconnecting(why)))
            .is_err()
        {
            return;
        }
        thread::sleep(RECONNECT_DELAY);
    })
}

fn spawn(body: impl FnOnce(SyncSender<SourceEvent>) + Send + 'static) -> Receiver<SourceEvent> {
    let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
    thread::Builder::new()
        .name("inspect-source".into())
        .spawn(move || body(tx))
        .expect("spawn the source thread");
    rx
}

/// How a stream stopped without an error.
enum Flow {
    /// The input ended.
    Ended,
    /// The inspector is gone.
    Stopped,
}

/// Sends every record of `reader` until it ends, fails, or nobody listens.
fn pump<R: Read>(reader: PcapReader<R>, tx: &SyncSender<SourceEvent>) -> Result<Flow, String> {
    for record in reader {
        let record = record.map_err(|e| e.to_string())?;
        if tx.send(SourceEvent::Record(record)).is_err() {
            return Ok(Flow::Stopped);
        }
    }
    Ok(Flow::Ended)
}

fn finish(tx: &SyncSender<SourceEvent>, result: Result<Flow, String>) {
    let state = match result {
        Ok(_) => SourceState::Ended,
        Err(e) => SourceState::Failed(e),
    };
    let _ = tx.send(SourceEvent::State(state));
}
