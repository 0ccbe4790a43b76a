//! Requests in the two dialects of FIELD-NOTES §2.2 and the reference bodies
//! of DH-P2P §2.5/§4, byte-exact against DH-P2P §11.
//!
//! Everything variable is a parameter: CSeq, nonce and Created are the texts
//! that go on the wire, and DevAuth / encrypted LocalAddr come from
//! [`crate::codec::crypto`].

use std::fmt;
use std::str::FromStr;

use super::message::{wsse_header_value, Header, Method, Request};
use super::views::Identify;
use super::xml::{XmlBody, XmlElement};
use crate::codec::crypto::wsse_digest;

/// The `Authorization` value every authenticated request carries.
pub const AUTHORIZATION_WSSE: &str = "WSSE profile=\"UsernameToken\"";

/// Request dialect of a cloud (FIELD-NOTES §2.2, C9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// `DHGET`/`DHPOST`, CSeq first (easy4ip, the original clients).
    Legacy,
    /// `NFGET`/`NFPOST` with the app's version headers first (DMSS/Dolynk).
    Sdk,
}

impl Dialect {
    /// The request style dhp2p uses by default for this dialect: the legacy
    /// form with `Content-Type`/`Content-Length` (as mcw0 and the Python
    /// client send), and the DMSS 2.6.20 headers for the SDK dialect.
    pub fn default_style(self) -> RequestStyle {
        match self {
            Dialect::Legacy => RequestStyle::Legacy {
                content_headers: true,
            },
            Dialect::Sdk => RequestStyle::Sdk(SdkHeaders::dmss()),
        }
    }
}

impl FromStr for Dialect {
    type Err = String;

    /// `legacy` (or `dh`) and `sdk` (or `nf`), any case.
    fn from_str(text: &str) -> Result<Dialect, String> {
        match text.to_ascii_lowercase().as_str() {
            "legacy" | "dh" => Ok(Dialect::Legacy),
            "sdk" | "nf" => Ok(Dialect::Sdk),
            _ => Err(format!("unknown dialect {text:?}: want `legacy` or `sdk`")),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Legacy => "legacy",
            Dialect::Sdk => "sdk",
        })
    }
}

/// The app-identifying headers of the SDK dialect. The version header's name
/// differs between captures (`X-Sversion` vs `X-TSVersion`, FIELD-NOTES §8.16),
/// so both name and value are configurable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SdkHeaders {
    pub x_version: String,
    pub version_header: String,
    pub version_value: String,
    pub tou_type: String,
}

impl SdkHeaders {
    /// DMSS app 2.6.20 (DF capture): `X-Version: 6.7.15`, `X-Sversion: 1.1.0`.
    pub fn dmss() -> SdkHeaders {
        SdkHeaders {
            x_version: "6.7.15".to_owned(),
            version_header: "X-Sversion".to_owned(),
            version_value: "1.1.0".to_owned(),
            tou_type: "Client/Dmss_Android".to_owned(),
        }
    }

    /// EasyViewer Pro / DMSS Android (PR capture): `X-Version: 6.7.11`,
    /// `X-TSVersion: TS_1.1.4`.
    pub fn easyviewer() -> SdkHeaders {
        SdkHeaders {
            x_version: "6.7.11".to_owned(),
            version_header: "X-TSVersion".to_owned(),
            version_value: "TS_1.1.4".to_owned(),
            tou_type: "Client/Dmss_Android".to_owned(),
        }
    }
}

/// How to lay out a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestStyle {
    /// DH-P2P §2.2. `content_headers`: the Python form, which adds
    /// `Content-Type: ` (empty) and `Content-Length` when there is a body;
    /// the Rust form omits both.
    Legacy { content_headers: bool },
    /// FIELD-NOTES §2.2, DMSS app 2.6.20 header order.
    Sdk(SdkHeaders),
}

/// The WSSE inputs of one request. `nonce` and `created` are the wire texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsseAuth<'a> {
    pub username: &'a str,
    pub key: &'a str,
    pub nonce: &'a str,
    pub created: &'a str,
}

/// What varies per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestParams<'a> {
    pub path: &'a str,
    /// The body text; empty means no body (and a GET method).
    pub body: &'a str,
    /// `None` leaves out the `CSeq` line.
    pub cseq: Option<i64>,
    /// `None` leaves out `Authorization` and `X-WSSE`.
    pub auth: Option<WsseAuth<'a>>,
    /// `x-pcs-request-id` (SDK dialect only; DMSS sends it on p2p-channel).
    pub request_id: Option<&'a str>,
}

fn push_auth(headers: &mut Vec<Header>, auth: &WsseAuth<'_>) {
    let digest = wsse_digest(auth.nonce, auth.created, auth.username, auth.key);
    headers.push(Header::new("Authorization", AUTHORIZATION_WSSE));
    headers.push(Header::new(
        "X-WSSE",
        wsse_header_value(auth.username, &digest, auth.nonce, auth.created),
    ));
}

fn push_content_headers(headers: &mut Vec<Header>, body: &str) {
    headers.push(Header::new("Content-Type", ""));
    headers.push(Header::new("Content-Length", body.len().to_string()));
}

/// Builds a request. The method is the POST verb of the dialect iff the body
/// is non-empty (DH-P2P §2.2); `Content-*` lines only ever come with a body.
pub fn build_request(style: &RequestStyle, params: &RequestParams<'_>) -> Request {
    let has_body = !params.body.is_empty();
    let mut headers = Vec::new();
    let method = match style {
        RequestStyle::Legacy { content_headers } => {
            if let Some(cseq) = params.cseq {
                headers.push(Header::new("CSeq", cseq.to_string()));
            }
            if let Some(auth) = &params.auth {
                push_auth(&mut headers, auth);
            }
            if has_body && *content_headers {
                push_content_headers(&mut headers, params.body);
            }
            if has_body {
                Method::DhPost
            } else {
                Method::DhGet
            }
        }
        RequestStyle::Sdk(sdk) => {
            headers.push(Header::new("X-Version", sdk.x_version.as_str()));
            headers.push(Header::new(
                sdk.version_header.as_str(),
                sdk.version_value.as_str(),
            ));
            if let Some(id) = params.request_id {
                headers.push(Header::new("x-pcs-request-id", id));
            }
            headers.push(Header::new("X-ToUType", sdk.tou_type.as_str()));
            if let Some(cseq) = params.cseq {
                headers.push(Header::new("CSeq", cseq.to_string()));
            }
            if let Some(auth) = &params.auth {
                push_auth(&mut headers, auth);
            }
            if has_body {
                push_content_headers(&mut headers, params.body);
                Method::NfPost
            } else {
                Method::NfGet
            }
        }
    };
    let mut request = Request::new(method, params.path);
    request.headers = headers;
    request.body = params.body.as_bytes().to_vec();
    request
}

/// The DMSS warm-up `NFGET /online/stun`: only `X-ToUType`, no WSSE, no
/// version headers (FIELD-NOTES §2.2).
pub fn build_sdk_stun_warmup(tou_type: &str) -> Request {
    let mut request = Request::new(Method::NfGet, "/online/stun");
    request.headers.push(Header::new("X-ToUType", tou_type));
    request
}

/// The device-auth block (DH-P2P §4). `rand_salt: None` leaves `RandSalt`
/// out, as EW does for an empty salt; `Some("")` writes it empty, as MF and
/// DF do (FIELD-NOTES §3.3, §8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceAuthBlock<'a> {
    /// Unix seconds, decimal.
    pub create_date: &'a str,
    pub dev_auth: &'a str,
    /// Decimal nonce as signed into DevAuth.
    pub nonce: &'a str,
    pub rand_salt: Option<&'a str>,
    pub user_name: &'a str,
}

impl DeviceAuthBlock<'_> {
    fn push_elements(&self, elements: &mut Vec<XmlElement>) {
        elements.push(XmlElement::leaf("CreateDate", self.create_date));
        elements.push(XmlElement::leaf("DevAuth", self.dev_auth));
        elements.push(XmlElement::leaf("Nonce", self.nonce));
        if let Some(salt) = self.rand_salt {
            elements.push(XmlElement::leaf("RandSalt", salt));
        }
        elements.push(XmlElement::leaf("UserName", self.user_name));
    }
}

/// p2p-channel, type 0: `Identify`, `IpEncrpt`, `LocalAddr` =
/// `127.0.0.1:{local_port}` (the port of the socket that sends it), `version`.
pub fn p2p_channel_body(identify: &Identify, local_port: u16) -> String {
    XmlBody::from_pairs(&[
        ("Identify", identify.to_string()),
        ("IpEncrpt", "true".to_owned()),
        ("LocalAddr", format!("127.0.0.1:{local_port}")),
        ("version", "5.0.0".to_owned()),
    ])
    .as_str()
    .to_owned()
}

/// p2p-channel with device auth (DH-P2P §4, §11.5): the auth block, then
/// `Identify`, `IpEncrptV2`, the encrypted `LocalAddr`, `version`.
pub fn p2p_channel_auth_body(
    auth: &DeviceAuthBlock<'_>,
    identify: &Identify,
    encrypted_local_addr: &str,
) -> String {
    let mut elements = Vec::new();
    auth.push_elements(&mut elements);
    elements.push(XmlElement::leaf("Identify", identify.to_string()));
    elements.push(XmlElement::leaf("IpEncrptV2", "true"));
    elements.push(XmlElement::leaf("LocalAddr", encrypted_local_addr));
    elements.push(XmlElement::leaf("version", "5.0.0"));
    XmlBody::from_elements(elements).as_str().to_owned()
}

/// relay-channel, type 0: `<agentAddr>host:port</agentAddr>`.
pub fn relay_channel_body(agent_addr: &str) -> String {
    XmlBody::from_pairs(&[("agentAddr", agent_addr)])
        .as_str()
        .to_owned()
}

/// relay-channel with device auth: the block (with the device's nonce), then
/// `agentAddr`.
pub fn relay_channel_auth_body(auth: &DeviceAuthBlock<'_>, agent_addr: &str) -> String {
    let mut elements = Vec::new();
    auth.push_elements(&mut elements);
    elements.push(XmlElement::leaf("agentAddr", agent_addr));
    XmlBody::from_elements(elements).as_str().to_owned()
}

/// `/relay/start/{token}`: `<Client>:0</Client>`, then `<Dev>` when given
/// (the SDK sends it; key order as the SDK's sorted map, FIELD-NOTES C10).
pub fn relay_start_body(dev: Option<&str>) -> String {
    let mut pairs = vec![("Client", ":0")];
    if let Some(serial) = dev {
        pairs.push(("Dev", serial));
    }
    XmlBody::from_pairs(&pairs).as_str().to_owned()
}

/// `/relay/agent` in the SDK dialect: `<Dev>{SN}</Dev>`.
pub fn relay_agent_body(serial: &str) -> String {
    XmlBody::from_pairs(&[("Dev", serial)]).as_str().to_owned()
}
