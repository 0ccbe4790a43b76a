//! The emulated device's built-in RTSP service: a fake Dahua camera that
//! answers like real firmware (FIELD-NOTES.md §6) and plays a looping H.264
//! clip over RTP interleaved in the RTSP connection.
//!
//! Request handling ([`RtspSession`]) is plain code without I/O or clock;
//! [`serve_connection`] is the tokio driver that reads requests, writes
//! answers and paces the frames in real time.
//!
//! What it serves: `/cam/realmonitor?channel=N&subtype=M` (N ≥ 1, M 0..=2,
//! all the same clip), Digest authentication on every method but OPTIONS,
//! RTP over TCP only (a UDP SETUP gets 461 so clients fall back to TCP).

pub mod rtp;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec::rtsp::{next_client_frame, ClientFrame, DigestAuthorization, Request, Response};
use crate::emulator::clip::{Clip, FRAME_RATE};
use rtp::{interleave, nals_to_send, H264Packetizer, PAYLOAD_TYPE_H264};

/// `Server:` header of current Dahua firmware (older firmware: `Rtsp Server/2.0`).
pub const DEFAULT_SERVER_HEADER: &str = "Rtsp Server/3.0";
/// Session timeout announced in SETUP (`Session: …;timeout=60`), seconds.
pub const SESSION_TIMEOUT_SECS: u64 = 60;
/// A connection that is not playing and sends nothing for this long is
/// closed (twice the announced session timeout).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(2 * SESSION_TIMEOUT_SECS);
/// A client that accepts no bytes for this long is treated as gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time between frames at [`FRAME_RATE`].
pub const FRAME_INTERVAL: Duration = Duration::from_millis(1000 / FRAME_RATE as u64);
/// Methods listed in `Public:`, as Dahua lists them.
pub const PUBLIC_METHODS: &str =
    "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, TEARDOWN, SET_PARAMETER, GET_PARAMETER";

/// What the RTSP service serves and whom it lets in.
#[derive(Clone)]
pub struct RtspConfig {
    pub username: String,
    pub password: String,
    /// Digest realm; Dahua uses `Login to <serial>`.
    pub realm: String,
    pub clip: Arc<Clip>,
    /// Play the clip once, then close the connection (so a client sees EOF
    /// and can compare every frame); otherwise loop forever.
    pub clip_once: bool,
    pub server_header: String,
}

impl RtspConfig {
    /// The built-in clip, looping, with Dahua's `Server:` header.
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
        realm: impl Into<String>,
    ) -> Self {
        RtspConfig {
            username: username.into(),
            password: password.into(),
            realm: realm.into(),
            clip: Clip::builtin(),
            clip_once: false,
            server_header: DEFAULT_SERVER_HEADER.to_string(),
        }
    }
}

/// Never prints the password.
impl fmt::Debug for RtspConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtspConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .field("frames", &self.clip.frames().len())
            .field("clip_once", &self.clip_once)
            .field("server_header", &self.server_header)
            .finish()
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionEnd {
    /// The client closed its side.
    #[default]
    ClientClosed,
    /// The connection broke (reset, broken pipe) or stopped accepting bytes.
    ClientVanished,
    /// `clip_once`: every frame was sent, the server closed.
    ClipFinished,
    /// Garbage or an oversized request: 400 sent, then closed.
    BadRequest,
    /// Nothing received for [`IDLE_TIMEOUT`] while not playing.
    IdleTimeout,
}

/// What happened on one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionReport {
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// RTSP requests answered.
    pub requests: u64,
    /// Interleaved frames from the client (RTCP), skipped.
    pub interleaved_received: u64,
    /// Access units sent (counting every loop).
    pub frames_sent: u64,
    pub rtp_packets_sent: u64,
    pub ended_by: ConnectionEnd,
}

/// Where a request URI points: `/cam/realmonitor?channel=N&subtype=M`,
/// optionally followed by `/trackID=T` (the SETUP control URL built from
/// `Content-Base`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTarget {
    pub channel: u32,
    pub subtype: u8,
    pub track: Option<u32>,
}

/// Parses a request URI (absolute `rtsp://host[:port]/…` or a bare path).
/// `None` for anything but the realmonitor path with a valid channel
/// (≥ 1) and subtype (0..=2, default 0). Other query keys (`unicast`,
/// `proto`) are allowed and ignored.
pub fn parse_stream_uri(uri: &str) -> Option<StreamTarget> {
    let path_and_query = match uri.find("://") {
        Some(scheme_end) => {
            let scheme = uri.get(..scheme_end)?;
            if !scheme.eq_ignore_ascii_case("rtsp") && !scheme.eq_ignore_ascii_case("rtsps") {
                return None;
            }
            let rest = uri.get(scheme_end + 3..)?;
            rest.get(rest.find('/')?..)?
        }
        None if uri.starts_with('/') => uri,
        None => return None,
    };
    let mut rest = path_and_query;
    let mut track = None;
    if let Some(slash) = rest.rfind('/') {
        if let Some(id) = rest
            .get(slash + 1..)
            .and_then(|t| t.strip_prefix("trackID="))
        {
            track = Some(id.parse::<u32>().ok()?);
            rest = rest.get(..slash)?;
        }
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != "/cam/realmonitor" {
        return None;
    }
    let (mut channel, mut subtype) = (None, 0u8);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "channel" => channel = Some(value.parse::<u32>().ok().filter(|&c| c >= 1)?),
            "subtype" => subtype = value.parse::<u8>().ok().filter(|&s| s <= 2)?,
            _ => {}
        }
    }
    Some(StreamTarget {
        channel: channel?,
        subtype,
        track,
    })
}

/// What the driver must do after sending a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    /// Start (or resume) streaming frames.
    Play,
    /// Stop streaming, keep the session.
    Pause,
}

/// The RTP side of a set-up session.
#[derive(Debug, Clone)]
struct Transport {
    rtp_channel: u8,
    packetizer: H264Packetizer,
}

/// One connection's RTSP state, without I/O: requests in, responses and
/// actions out; frames out on demand.
#[derive(Debug)]
pub struct RtspSession {
    cfg: Arc<RtspConfig>,
    session_id: String,
    nonce: String,
    sdp_session_id: u64,
    transport: Option<Transport>,
    playing: bool,
    /// Index in the clip of the next frame to send.
    next_frame: usize,
    /// Frames sent since the first PLAY, across loops: drives timestamps.
    frames_sent: u64,
}

impl RtspSession {
    pub fn new(cfg: Arc<RtspConfig>) -> Self {
        let mut rng = rand::thread_rng();
        RtspSession {
            cfg,
            session_id: rng
                .gen_range(100_000_000_000u64..1_000_000_000_000)
                .to_string(),
            nonce: fresh_nonce(),
            sdp_session_id: rng.gen_range(1_000_000_000u64..10_000_000_000),
            transport: None,
            playing: false,
            next_frame: 0,
            frames_sent: 0,
        }
    }

    /// The 12-digit session identifier (announced from OPTIONS on, as Dahua does).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn is_playing(&self) -> bool {
        self.playing
    }

    pub fn frames_sent(&self) -> u64 {
        self.frames_sent
    }

    /// Answers one request.
    pub fn handle(&mut self, req: &Request) -> (Response, Action) {
        let base = match req.cseq() {
            Some(cseq) => Response::new(200).header("CSeq", cseq),
            None => Response::new(200),
        };
        match req.method.as_str() {
            "OPTIONS" => (
                base.header("Session", self.session_id.clone())
                    .header("Server", self.cfg.server_header.clone())
                    .header("Public", PUBLIC_METHODS),
                Action::None,
            ),
            "DESCRIBE" | "SETUP" | "PLAY" | "PAUSE" | "TEARDOWN" | "GET_PARAMETER"
            | "SET_PARAMETER" => {
                if !self.authorized(req) {
                    self.nonce = fresh_nonce();
                    let challenge = format!(
                        "Digest realm=\"{}\", nonce=\"{}\"",
                        self.cfg.realm, self.nonce
                    );
                    return (
                        with_status(base, 401).header("WWW-Authenticate", challenge),
                        Action::None,
                    );
                }
                self.handle_authorized(req, base)
            }
            "ANNOUNCE" | "RECORD" | "REDIRECT" => (
                with_status(base, 405).header(
                    "Allow",
                    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, SET_PARAMETER, GET_PARAMETER",
                ),
                Action::None,
            ),
            _ => (with_status(base, 501), Action::None),
        }
    }

    fn handle_authorized(&mut self, req: &Request, base: Response) -> (Response, Action) {
        let target = parse_stream_uri(&req.uri);
        let session_matches = req
            .header("Session")
            .map(|s| s.split(';').next().unwrap_or("").trim() == self.session_id);
        match req.method.as_str() {
            "DESCRIBE" => {
                if !matches!(target, Some(StreamTarget { track: None, .. })) {
                    return (with_status(base, 404), Action::None);
                }
                let sdp = self.sdp();
                (
                    base.header("x-Accept-Dynamic-Rate", "1")
                        .header("Content-Base", format!("{}/", req.uri))
                        .header("Cache-Control", "must-revalidate")
                        .body("application/sdp", sdp.into_bytes()),
                    Action::None,
                )
            }
            "SETUP" => {
                match target {
                    Some(StreamTarget {
                        track: None | Some(0),
                        ..
                    }) => {}
                    _ => return (with_status(base, 404), Action::None),
                }
                if session_matches == Some(false) {
                    return (with_status(base, 454), Action::None);
                }
                let Some((rtp_channel, rtcp_channel)) =
                    req.header("Transport").and_then(tcp_interleaved_channels)
                else {
                    return (with_status(base, 461), Action::None);
                };
                let transport = self.transport.get_or_insert_with(|| {
                    let mut rng = rand::thread_rng();
                    Transport {
                        rtp_channel,
                        packetizer: H264Packetizer::new(rng.gen(), rng.gen(), rng.gen()),
                    }
                });
                transport.rtp_channel = rtp_channel;
                let ssrc = transport.packetizer.ssrc();
                (
                    base.header(
                        "Session",
                        format!("{};timeout={SESSION_TIMEOUT_SECS}", self.session_id),
                    )
                    .header(
                        "Transport",
                        format!(
                            "RTP/AVP/TCP;unicast;interleaved={rtp_channel}-{rtcp_channel};ssrc={ssrc:08X}"
                        ),
                    )
                    .header("x-Dynamic-Rate", "1"),
                    Action::None,
                )
            }
            "PLAY" | "PAUSE" => {
                if target.is_none() {
                    return (with_status(base, 404), Action::None);
                }
                if session_matches == Some(false) {
                    return (with_status(base, 454), Action::None);
                }
                let Some(transport) = &self.transport else {
                    return (with_status(base, 455), Action::None);
                };
                if req.method == "PAUSE" {
                    self.playing = false;
                    return (
                        base.header("Session", self.session_id.clone()),
                        Action::Pause,
                    );
                }
                let seq = transport.packetizer.next_seq();
                let rtptime = transport.packetizer.timestamp_for(self.frames_sent);
                self.playing = true;
                (
                    base.header("Session", self.session_id.clone())
                        .header("Range", "npt=0.000000-")
                        .header(
                            "RTP-Info",
                            format!("url=trackID=0;seq={seq};rtptime={rtptime}"),
                        ),
                    Action::Play,
                )
            }
            "TEARDOWN" => {
                if session_matches == Some(false) {
                    return (with_status(base, 454), Action::None);
                }
                self.playing = false;
                self.transport = None;
                self.next_frame = 0;
                (
                    base.header("Session", self.session_id.clone()),
                    Action::Pause,
                )
            }
            // GET_PARAMETER / SET_PARAMETER: keep-alives.
            _ => (
                base.header("Session", self.session_id.clone()),
                Action::None,
            ),
        }
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(auth) = req
            .header("Authorization")
            .and_then(DigestAuthorization::parse)
        else {
            return false;
        };
        auth.verify(
            &req.method,
            &self.cfg.realm,
            &self.nonce,
            &self.cfg.username,
            &self.cfg.password,
        )
    }

    /// The SDP of the one video track, in Dahua's shape.
    pub fn sdp(&self) -> String {
        let clip = &self.cfg.clip;
        let id = self.sdp_session_id;
        format!(
            "v=0\r\n\
             o=- {id} {id} IN IP4 0.0.0.0\r\n\
             s=Media Server\r\n\
             c=IN IP4 0.0.0.0\r\n\
             t=0 0\r\n\
             a=control:*\r\n\
             a=packetization-supported:DH\r\n\
             a=rtppayload-supported:DH\r\n\
             a=range:npt=now-\r\n\
             m=video 0 RTP/AVP {pt}\r\n\
             a=control:trackID=0\r\n\
             a=framerate:{FRAME_RATE}.000000\r\n\
             a=rtpmap:{pt} H264/90000\r\n\
             a=fmtp:{pt} packetization-mode=1;profile-level-id={plid};sprop-parameter-sets={sprop}\r\n\
             a=recvonly\r\n",
            pt = PAYLOAD_TYPE_H264,
            plid = clip.profile_level_id(),
            sprop = clip.sprop_parameter_sets(),
        )
    }

    /// The interleaved RTP frames of the next access unit, its packet count,
    /// and whether it was the clip's last frame. `None` when not set up.
    pub fn next_frame_bytes(&mut self) -> Option<(Vec<u8>, u64, bool)> {
        let clip = self.cfg.clip.clone();
        let transport = self.transport.as_mut()?;
        let frame = clip.frames().get(self.next_frame)?;
        let timestamp = transport.packetizer.timestamp_for(self.frames_sent);
        let packets = transport
            .packetizer
            .packetize(&nals_to_send(frame, &clip), timestamp);
        let mut bytes = Vec::new();
        for packet in &packets {
            bytes.extend(interleave(transport.rtp_channel, packet)?);
        }
        self.frames_sent = self.frames_sent.saturating_add(1);
        self.next_frame += 1;
        let last = self.next_frame >= clip.frames().len();
        if last {
            self.next_frame = 0;
        }
        Some((bytes, packets.len() as u64, last))
    }
}

fn with_status(mut response: Response, status: u16) -> Response {
    response.status = status;
    response
}

fn fresh_nonce() -> String {
    hex::encode(rand::thread_rng().gen::<[u8; 16]>())
}

/// The interleaved channel pair of the first `RTP/AVP/TCP` transport the
/// client offers (default 0-1); `None` if it offers only UDP/multicast.
fn tcp_interleaved_channels(transport: &str) -> Option<(u8, u8)> {
    transport.split(',').find_map(|spec| {
        let mut params = spec.split(';').map(str::trim);
        if !params.next()?.eq_ignore_ascii_case("RTP/AVP/TCP") {
            return None;
        }
        let mut channels = (0u8, 1u8);
        for param in params {
            if let Some(value) = param.strip_prefix("interleaved=") {
                let (a, b) = match value.split_once('-') {
                    Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                    None => {
                        let a: u8 = value.parse().ok()?;
                        (a, a.checked_add(1)?)
                    }
                };
                channels = (a, b);
            }
        }
        Some(channels)
    })
}

/// Serves one RTSP connection until the client leaves, the clip ends
/// (`clip_once`) or the client misbehaves. A client vanishing mid-stream is
/// a normal end (`ConnectionEnd::ClientVanished`), not an error.
pub async fn serve_connection<S>(stream: S, cfg: Arc<RtspConfig>) -> io::Result<ConnectionReport>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut report = ConnectionReport::default();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let result = drive(&mut reader, &mut writer, cfg, &mut report).await;
    match result {
        Ok(end) => {
            report.ended_by = end;
            // Flush and send FIN so the client sees a clean EOF; it may
            // already be gone, which is fine.
            let _ = tokio::time::timeout(WRITE_TIMEOUT, writer.shutdown()).await;
            tracing::debug!(?report, "rtsp connection done");
            Ok(report)
        }
        Err(e) if is_disconnect(&e) => {
            report.ended_by = ConnectionEnd::ClientVanished;
            tracing::debug!(error = %e, ?report, "rtsp client vanished");
            Ok(report)
        }
        Err(e) => Err(e),
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
            | io::ErrorKind::TimedOut
    )
}

async fn write_counted<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    report: &mut ConnectionReport,
) -> io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(bytes)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading",
            ))
        }
    }
    report.bytes_sent = report.bytes_sent.saturating_add(bytes.len() as u64);
    Ok(())
}

async fn drive<R, W>(
    reader: &mut R,
    writer: &mut W,
    cfg: Arc<RtspConfig>,
    report: &mut ConnectionReport,
) -> io::Result<ConnectionEnd>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let clip_once = cfg.clip_once;
    let mut session = RtspSession::new(cfg);
    let mut inbuf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    // Frame n (counted since the first PLAY) is due at origin + n × interval.
    let mut origin: Option<Instant> = None;
    let mut last_input = Instant::now();
    loop {
        // Answer every complete request already buffered.
        loop {
            let (inbound, used) = match next_client_frame(&inbuf) {
                Ok(Some(found)) => found,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "rtsp bad request");
                    let answer = Response::new(400).to_bytes();
                    write_counted(writer, &answer, report).await?;
                    return Ok(ConnectionEnd::BadRequest);
                }
            };
            inbuf.drain(..used.min(inbuf.len()));
            let request = match inbound {
                ClientFrame::Interleaved(frame) => {
                    tracing::trace!(
                        channel = frame.channel,
                        len = frame.len,
                        "rtsp interleaved frame from client skipped"
                    );
                    report.interleaved_received += 1;
                    continue;
                }
                ClientFrame::Request(request) => request,
            };
            report.requests += 1;
            tracing::debug!(request = %request.redacted(), "rtsp request");
            let (response, action) = session.handle(&request);
            tracing::debug!(status = response.status, method = %request.method, "rtsp response");
            write_counted(writer, &response.to_bytes(), report).await?;
            match action {
                Action::Play => {
                    let elapsed = FRAME_INTERVAL
                        .saturating_mul(u32::try_from(session.frames_sent()).unwrap_or(u32::MAX));
                    let now = Instant::now();
                    origin = Some(now.checked_sub(elapsed).unwrap_or(now));
                }
                Action::Pause => origin = None,
                Action::None => {}
            }
        }

        let due = origin.map(|o| frame_due(o, session.frames_sent()));
        tokio::select! {
            read = reader.read(&mut chunk) => {
                let n = read?;
                if n == 0 {
                    return Ok(ConnectionEnd::ClientClosed);
                }
                report.bytes_received = report.bytes_received.saturating_add(n as u64);
                inbuf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                last_input = Instant::now();
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let Some((bytes, packets, last)) = session.next_frame_bytes() else {
                    origin = None;
                    continue;
                };
                write_counted(writer, &bytes, report).await?;
                report.frames_sent += 1;
                report.rtp_packets_sent += packets;
                if last && clip_once {
                    return Ok(ConnectionEnd::ClipFinished);
                }
            }
            _ = tokio::time::sleep_until(last_input + IDLE_TIMEOUT), if due.is_none() => {
                return Ok(ConnectionEnd::IdleTimeout);
            }
        }
    }
}

/// When frame `n` is due, counting from `origin`.
fn frame_due(origin: Instant, n: u64) -> Instant {
    let offset = FRAME_INTERVAL.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
    origin.checked_add(offset).unwrap_or(origin)
}

/// Listens on `addr` and serves each connection in its own task. Returns the
/// bound address (useful with port 0) and the accept loop's task.
pub async fn spawn_listener(
    addr: SocketAddr,
    cfg: Arc<RtspConfig>,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(%local, realm = %cfg.realm, "rtsp service listening");
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let cfg = cfg.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        match serve_connection(stream, cfg).await {
                            Ok(report) => tracing::debug!(%peer, ?report, "rtsp connection closed"),
                            Err(e) => tracing::warn!(%peer, error = %e, "rtsp connection failed"),
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "rtsp accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok((local, task))
}
