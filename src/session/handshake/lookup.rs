//! The look-up leg at the main server and `US`: warm-up,
//! `/online/p2psrv/{SN}`, then `/probe/device/{SN}` and `/info/device/{SN}`
//! side by side (docs/PROTOCOL.md §1.2). It finds out whether the device
//! exists and is online, and its salt and ports.

use std::net::SocketAddr;
use std::time::Instant;

use crate::codec::cloud::{HostPort, InfoDeviceAnswer, P2pSrvInfo, Response, XmlBody};
use crate::codec::crypto;

use super::cloud::{status_text, Req};
use super::types::{HandshakeError, Stage};
use super::{peer_text, Handshake};

impl Handshake {
    pub(super) fn on_warmup(&mut self, now: Instant, unix: i64, response: &Response) {
        if response.code >= 400 {
            return self.fail(error_for(Stage::Warmup, response, &self.config.serial));
        }
        let detail = format!("cloud {} answered {}", self.config.cloud, response.code);
        self.stage_done(now, Stage::Warmup, detail);
        let cloud = self.config.cloud;
        self.start_request(Req::P2pSrv, cloud, now, unix);
    }

    pub(super) fn on_p2psrv(
        &mut self,
        now: Instant,
        unix: i64,
        response: &Response,
        xml: Option<XmlBody>,
    ) {
        if response.code >= 300 {
            return self.fail(error_for(Stage::P2pServer, response, &self.config.serial));
        }
        let info = xml.as_ref().map(P2pSrvInfo::from_xml).unwrap_or_default();
        let us = match address(Stage::P2pServer, "US", info.us.as_deref()) {
            Ok((addr, _)) => addr,
            Err(e) => return self.fail(e),
        };
        self.facts.p2psrv = Some(us);
        self.stage_done(now, Stage::P2pServer, format!("p2psrv US={us}"));
        self.start_request(Req::ProbeDevice, us, now, unix);
        self.start_request(Req::InfoDevice, us, now, unix);
    }

    pub(super) fn on_probe_device(&mut self, now: Instant, response: &Response) {
        if response.code >= 300 {
            return self.fail(error_for(Stage::DeviceProbe, response, &self.config.serial));
        }
        let serial = self.config.serial.clone();
        self.facts.online = true;
        self.stage_done(now, Stage::DeviceProbe, format!("device {serial} online"));
    }

    /// The salt and ports; an empty or undecryptable `Info` means no salt
    /// (FIELD-NOTES §3.1 item 5, §3.3), never an error.
    pub(super) fn on_info(&mut self, now: Instant, response: &Response, xml: Option<XmlBody>) {
        if response.code == 404 {
            return self.fail(error_for(Stage::DeviceInfo, response, &self.config.serial));
        }
        let answer = xml
            .as_ref()
            .map(InfoDeviceAnswer::from_xml)
            .unwrap_or_default();
        let info = answer
            .info
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .and_then(|t| crypto::decrypt_info(t).ok());
        let detail = match &info {
            Some(i) => format!(
                "device info: rtspport {}, {}",
                i.rtspport
                    .map_or_else(|| "not given (554)".to_owned(), |p| p.to_string()),
                if i.salt().is_empty() {
                    "no salt"
                } else {
                    "salt present"
                }
            ),
            None if response.code >= 300 => {
                format!("device info: {}; no salt", status_text(response))
            }
            None => "device info: no usable Info; no salt".to_owned(),
        };
        let salt = info
            .as_ref()
            .map(|i| i.salt().to_owned())
            .unwrap_or_default();
        if let Some((user, password)) = &self.config.credentials {
            self.facts.key = Some(crypto::device_key(user, &salt, password));
        }
        self.facts.salt = Some(salt);
        self.facts.info = info;
        self.stage_done(now, Stage::DeviceInfo, detail);
    }
}

/// `host:port` of a cloud answer as a socket address. Names are not
/// resolved here (that needs I/O); every known cloud answers with IPv4.
pub(super) fn address(
    stage: Stage,
    element: &str,
    text: Option<&str>,
) -> Result<(SocketAddr, String), HandshakeError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(HandshakeError::Protocol {
            stage,
            detail: format!("the answer has no <{element}>"),
        });
    };
    let parsed = text
        .parse::<HostPort>()
        .ok()
        .and_then(|hp| hp.to_socket_addr_v4());
    match parsed {
        Some(addr) if addr.port() != 0 => Ok((SocketAddr::V4(addr), text.to_owned())),
        _ => Err(HandshakeError::Protocol {
            stage,
            detail: format!("<{element}> is {:?}, not an IPv4 ip:port", peer_text(text)),
        }),
    }
}

/// The error for a failed answer outside the special cases.
pub(super) fn error_for(stage: Stage, response: &Response, serial: &str) -> HandshakeError {
    match response.code {
        404 => HandshakeError::NotFound {
            serial: serial.to_owned(),
            stage,
        },
        403 => HandshakeError::Forbidden {
            stage,
            error: status_text(response),
        },
        _ => HandshakeError::Protocol {
            stage,
            detail: format!("unexpected answer {}", status_text(response)),
        },
    }
}
