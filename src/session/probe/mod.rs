//! `dhp2p probe`'s look-up of one serial, sans-IO: which cloud knows the
//! device (`/online/p2psrv/{SN}` on each cloud in turn), whether it is online
//! (`/probe/device/{SN}` at the P2P server that cloud names) and, when it is,
//! its firmware and service ports (`/info/device/{SN}`: `DevVersion`, the
//! decrypted `Info`).
//!
//! One request at a time, so that a probe never has more than one datagram
//! of its own in flight. Each request is resent (same CSeq, fresh WSSE nonce
//! and `Created`) after `first_wait`, doubling up to `max_wait`, at most
//! `attempts` times; the whole probe ends at `deadline`.
//!
//! The driver asks [`Probe::wants_to_send`] which cloud the next request
//! counts against, waits for its turn at that cloud's [`RateLimiter`], and
//! only then calls [`Probe::poll_transmit`], which builds the request and
//! arms its resend timer: a request delayed by the limit is not resent early.
//!
//! No sockets, no clock: `now` and the Unix time come with every call, and
//! nonces and CSeqs come from a generator seeded at construction.

mod rate;
mod report;

pub use rate::RateLimiter;
pub use report::{CloudAnswer, DeepReport, ProbeReport, ServicePorts, Verdict};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::codec::cloud::{
    self, build_request, format_created_offset, format_created_utc, Endpoint, ErrorBody, HostPort,
    InfoDeviceAnswer, Message, P2pSrvInfo, RequestParams, Response, WsseAuth, XmlBody,
};
use crate::codec::crypto;
use crate::codec::identity::{CloudProfile, Dialect};

use super::handshake::peer_text;

/// One cloud to ask, already resolved by the driver.
#[derive(Debug, Clone)]
pub struct ProbeCloud {
    pub profile: CloudProfile,
    pub addr: SocketAddr,
}

/// What a probe asks and how patiently.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub serial: String,
    /// Asked in this order; the first that knows the serial is used.
    pub clouds: Vec<ProbeCloud>,
    /// First resend wait; doubles per resend up to `max_wait`.
    pub first_wait: Duration,
    pub max_wait: Duration,
    /// Sends of one request before it counts as unanswered.
    pub attempts: u32,
    /// The whole probe, from construction.
    pub timeout: Duration,
}

impl ProbeConfig {
    /// dhp2p's defaults: 500 ms first wait, 2 s at most, 4 sends, 20 s in all.
    pub fn new(serial: impl Into<String>, clouds: Vec<ProbeCloud>) -> ProbeConfig {
        ProbeConfig {
            serial: serial.into(),
            clouds,
            first_wait: Duration::from_millis(500),
            max_wait: Duration::from_secs(2),
            attempts: 4,
            timeout: Duration::from_secs(20),
        }
    }
}

/// A request the probe wants sent: to `to`, counted against the rate limit
/// of cloud `bucket` (a profile name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTransmit {
    pub to: SocketAddr,
    pub bucket: String,
    pub payload: Vec<u8>,
}

/// Which request is outstanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `/online/p2psrv` at cloud number `.0`.
    P2pSrv(usize),
    ProbeDevice,
    InfoDevice,
}

/// The outstanding request.
#[derive(Debug, Clone)]
struct Pending {
    step: Step,
    to: SocketAddr,
    cloud: usize,
    cseq: i64,
    sends: u32,
    wait: Duration,
    /// Set when sent: until then the driver holds it for the rate limit.
    resend_at: Option<Instant>,
}

/// The probe of one serial. See the module documentation.
pub struct Probe {
    config: ProbeConfig,
    start: Instant,
    deadline: Instant,
    rng: SmallRng,
    next_cseq: i64,
    /// Server time minus ours, learnt from a 401's `<Time>`.
    clock_offset: i64,
    pending: Option<Pending>,
    report: ProbeReport,
    done: bool,
}

impl Probe {
    /// Starts a probe: the first request waits to be polled.
    pub fn new(config: ProbeConfig, now: Instant, seed: u64) -> Probe {
        let report = ProbeReport::new(&config.serial);
        let deadline = now + config.timeout;
        let mut probe = Probe {
            config,
            start: now,
            deadline,
            rng: SmallRng::seed_from_u64(seed),
            next_cseq: 1,
            clock_offset: 0,
            pending: None,
            report,
            done: false,
        };
        probe.ask_cloud(0);
        probe
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// What was found so far; final once [`Probe::is_done`].
    pub fn report(&self) -> &ProbeReport {
        &self.report
    }

    pub fn into_report(self) -> ProbeReport {
        self.report
    }

    /// The cloud (profile name) the next request counts against, when one
    /// is waiting to be sent.
    pub fn wants_to_send(&self) -> Option<&str> {
        let pending = self.pending.as_ref().filter(|p| p.resend_at.is_none())?;
        self.config
            .clouds
            .get(pending.cloud)
            .map(|c| c.profile.name.as_str())
    }

    /// Builds the waiting request (fresh nonce and `Created`) and arms its
    /// resend timer from `now`.
    pub fn poll_transmit(&mut self, now: Instant, unix: i64) -> Option<ProbeTransmit> {
        if self.done {
            return None;
        }
        let pending = self.pending.clone().filter(|p| p.resend_at.is_none())?;
        let payload = self.build(&pending, unix);
        let bucket = self.config.clouds.get(pending.cloud)?.profile.name.clone();
        self.report.requests = self.report.requests.saturating_add(1);
        if let Some(p) = self.pending.as_mut() {
            p.sends += 1;
            p.resend_at = Some(now + p.wait);
            p.wait = (p.wait * 2).min(self.config.max_wait.max(self.config.first_wait));
        }
        Some(ProbeTransmit {
            to: pending.to,
            bucket,
            payload,
        })
    }

    /// When [`Probe::handle_timeout`] wants to run: the resend or the deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let resend = self.pending.as_ref().and_then(|p| p.resend_at);
        Some(resend.map_or(self.deadline, |r| r.min(self.deadline)))
    }

    /// Resends, gives up on a request sent `attempts` times, or ends the
    /// whole probe at its deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done {
            return;
        }
        if now >= self.deadline {
            let what = self.pending.as_ref().map(|p| self.describe(p.step));
            let detail = match what {
                Some(w) => format!("timed out after {:?} waiting for {w}", self.config.timeout),
                None => format!("timed out after {:?}", self.config.timeout),
            };
            return self.finish(Verdict::Failed, Some(detail));
        }
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        if pending.resend_at.is_none_or(|at| at > now) {
            return;
        }
        if pending.sends < self.config.attempts {
            // Ready to send again: the driver takes its rate-limit turn first.
            pending.resend_at = None;
            return;
        }
        let step = pending.step;
        let sends = pending.sends;
        let detail = format!("no answer to {} after {sends} sends", self.describe(step));
        self.step_failed(step, CloudAnswer::NoAnswer, detail);
    }

    /// An answer from `from`. Anything that does not answer the outstanding
    /// request (stale, noise, undecodable) is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, unix: i64, from: SocketAddr, bytes: &[u8]) {
        if self.done {
            return;
        }
        let response = match cloud::decode(bytes) {
            Ok(Message::Response(r)) => r,
            Ok(Message::Request(_)) | Err(_) => {
                self.report.skipped = self.report.skipped.saturating_add(1);
                return;
            }
        };
        let Some(pending) = self.pending.clone() else {
            self.report.skipped = self.report.skipped.saturating_add(1);
            return;
        };
        let matches = pending.to == from
            && pending.resend_at.is_some()
            && response.cseq().is_none_or(|c| c == pending.cseq);
        if !matches {
            self.report.skipped = self.report.skipped.saturating_add(1);
            return;
        }
        let xml = response.xml_body().ok().flatten();
        if response.code == 401 && self.correct_clock(unix, xml.as_ref()) {
            // Retry under a new CSeq with the corrected clock.
            self.start_step(pending.step, pending.to, pending.cloud);
            return;
        }
        if response.code < 200 {
            // `100 Trying`: keep waiting.
            return;
        }
        self.report.elapsed = now.saturating_duration_since(self.start);
        match pending.step {
            Step::P2pSrv(i) => self.on_p2psrv(i, &response, xml.as_ref()),
            Step::ProbeDevice => self.on_probe_device(&response),
            Step::InfoDevice => self.on_info(&response, xml.as_ref()),
        }
    }

    // -----------------------------------------------------------------
    // Steps

    fn ask_cloud(&mut self, index: usize) {
        match self.config.clouds.get(index) {
            Some(cloud) => {
                let to = cloud.addr;
                self.start_step(Step::P2pSrv(index), to, index);
            }
            None => self.no_cloud_knows(),
        }
    }

    fn start_step(&mut self, step: Step, to: SocketAddr, cloud: usize) {
        let cseq = self.new_cseq(cloud);
        self.pending = Some(Pending {
            step,
            to,
            cloud,
            cseq,
            sends: 0,
            wait: self.config.first_wait,
            resend_at: None,
        });
    }

    fn on_p2psrv(&mut self, index: usize, response: &Response, xml: Option<&XmlBody>) {
        let name = self.cloud_name(index);
        if response.code == 404 {
            self.report.clouds.push((name, CloudAnswer::NotFound));
            return self.ask_cloud(index + 1);
        }
        if response.code >= 300 {
            let answer = CloudAnswer::Refused(status_text(response, xml));
            self.report.clouds.push((name, answer));
            return self.ask_cloud(index + 1);
        }
        let us = xml
            .map(P2pSrvInfo::from_xml)
            .and_then(|info| info.us)
            .and_then(|text| text.trim().parse::<HostPort>().ok())
            .and_then(|hp| hp.to_socket_addr_v4())
            .filter(|a| a.port() != 0);
        let Some(us) = us else {
            let answer = CloudAnswer::Refused("200 without a usable <US>".to_owned());
            self.report.clouds.push((name, answer));
            return self.ask_cloud(index + 1);
        };
        self.report.clouds.push((name.clone(), CloudAnswer::Known));
        self.report.cloud = Some(name);
        self.report.p2psrv = Some(SocketAddr::V4(us));
        self.start_step(Step::ProbeDevice, SocketAddr::V4(us), index);
    }

    fn on_probe_device(&mut self, response: &Response) {
        match response.code {
            200..=299 => {
                let (to, cloud) = match &self.pending {
                    Some(p) => (p.to, p.cloud),
                    None => return,
                };
                self.report.verdict = Verdict::Online;
                self.start_step(Step::InfoDevice, to, cloud);
            }
            404 => self.finish(Verdict::Offline, None),
            _ => {
                let detail = format!("/probe/device answered {}", status_text(response, None));
                self.finish(Verdict::Failed, Some(detail))
            }
        }
    }

    /// Firmware and ports; an answer without them still leaves the device
    /// online (the probe already said so).
    fn on_info(&mut self, response: &Response, xml: Option<&XmlBody>) {
        if response.code < 300 {
            let answer = xml.map(InfoDeviceAnswer::from_xml).unwrap_or_default();
            self.report.firmware = answer
                .dev_version
                .map(|v| peer_text(v.trim()))
                .filter(|v| !v.is_empty());
            let info = answer
                .info
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .and_then(|t| crypto::decrypt_info(t).ok());
            self.report.ports = info.as_ref().map(ServicePorts::from_info);
        } else {
            let note = format!("/info/device answered {}", status_text(response, xml));
            self.report.note = Some(note);
        }
        self.finish(Verdict::Online, None);
    }

    /// The request of `step` failed without an answer that decides anything.
    fn step_failed(&mut self, step: Step, answer: CloudAnswer, detail: String) {
        match step {
            Step::P2pSrv(i) => {
                let name = self.cloud_name(i);
                self.report.clouds.push((name, answer));
                self.ask_cloud(i + 1);
            }
            Step::ProbeDevice => self.finish(Verdict::Failed, Some(detail)),
            // Online was already established: the missing details are a note.
            Step::InfoDevice => {
                self.report.note = Some(detail);
                self.finish(Verdict::Online, None);
            }
        }
    }

    /// Every cloud was asked and none knows the serial: unknown when they
    /// all said 404, failed when one of them could not be asked.
    fn no_cloud_knows(&mut self) {
        let all_404 = self
            .report
            .clouds
            .iter()
            .all(|(_, a)| *a == CloudAnswer::NotFound);
        if all_404 && !self.report.clouds.is_empty() {
            return self.finish(Verdict::Unknown, None);
        }
        let problems: Vec<String> = self
            .report
            .clouds
            .iter()
            .filter(|(_, a)| *a != CloudAnswer::NotFound)
            .map(|(name, a)| format!("{name}: {a}"))
            .collect();
        let detail = if problems.is_empty() {
            "no cloud to ask".to_owned()
        } else {
            problems.join("; ")
        };
        self.finish(Verdict::Failed, Some(detail));
    }

    fn finish(&mut self, verdict: Verdict, error: Option<String>) {
        self.report.verdict = verdict;
        if error.is_some() {
            self.report.error = error;
        }
        self.pending = None;
        self.done = true;
    }

    // -----------------------------------------------------------------
    // Requests

    fn sdk(&self, cloud: usize) -> bool {
        self.config
            .clouds
            .get(cloud)
            .is_some_and(|c| c.profile.dialect == Dialect::Sdk)
    }

    /// Legacy: a counter from 1; SDK: a random signed int32 (FIELD-NOTES §2.2).
    fn new_cseq(&mut self, cloud: usize) -> i64 {
        if self.sdk(cloud) {
            return i64::from(self.rng.gen::<i32>());
        }
        let c = self.next_cseq;
        self.next_cseq = c.wrapping_add(1);
        c
    }

    fn build(&mut self, pending: &Pending, unix: i64) -> Vec<u8> {
        let sdk = self.sdk(pending.cloud);
        let unix = unix.saturating_add(self.clock_offset);
        let created = if sdk {
            format_created_offset(unix, 0)
        } else {
            format_created_utc(unix)
        }
        .unwrap_or_default();
        let nonce = if sdk {
            self.rng.gen::<i32>().to_string()
        } else {
            self.rng.gen_range(0..=i32::MAX).to_string()
        };
        let serial = self.config.serial.clone();
        let path = match pending.step {
            Step::P2pSrv(_) => Endpoint::OnlineP2pSrv { serial },
            Step::ProbeDevice => Endpoint::ProbeDevice { serial },
            Step::InfoDevice => Endpoint::InfoDevice { serial },
        }
        .path();
        let Some(cloud) = self.config.clouds.get(pending.cloud) else {
            return Vec::new();
        };
        let profile = &cloud.profile;
        build_request(
            &profile.request_style(),
            &RequestParams {
                path: &path,
                body: "",
                cseq: Some(pending.cseq),
                auth: Some(WsseAuth {
                    username: &profile.username,
                    key: &profile.key,
                    nonce: &nonce,
                    created: &created,
                }),
                request_id: None,
            },
        )
        .encode()
    }

    /// A 401 carrying the server's `<Time>` corrects our clock once.
    fn correct_clock(&mut self, unix: i64, xml: Option<&XmlBody>) -> bool {
        if self.clock_offset != 0 {
            return false;
        }
        let server = xml
            .and_then(|x| x.get("Time"))
            .and_then(|t| t.trim().parse::<i64>().ok());
        match server {
            Some(t) if t != unix => {
                self.clock_offset = t.saturating_sub(unix);
                true
            }
            _ => false,
        }
    }

    fn cloud_name(&self, index: usize) -> String {
        self.config
            .clouds
            .get(index)
            .map_or_else(String::new, |c| c.profile.name.clone())
    }

    fn describe(&self, step: Step) -> String {
        match step {
            Step::P2pSrv(i) => format!("/online/p2psrv at the {} cloud", self.cloud_name(i)),
            Step::ProbeDevice => "/probe/device".to_owned(),
            Step::InfoDevice => "/info/device".to_owned(),
        }
    }
}

/// `403 DevPwd_InvalidSalt`: the code and the `<Error>` text, cut short.
fn status_text(response: &Response, xml: Option<&XmlBody>) -> String {
    let error = xml
        .map(ErrorBody::from_xml)
        .and_then(|e| e.error.or(e.err_code));
    match error {
        Some(e) => format!("{} {}", response.code, peer_text(&e)),
        None => format!("{} {}", response.code, peer_text(&response.reason)),
    }
}

#[cfg(test)]
mod tests;
