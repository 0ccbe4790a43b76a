//! Typed views of cloud bodies, the endpoint named by a request path, and the
//! small text formats inside bodies: `host:port`, the LocalAddr comma list,
//! `Identify` and the WSSE `Created` time.
//!
//! Views are read from the ordered element list of an [`XmlBody`]; that list
//! stays the source of truth, so unknown elements remain visible there. Every
//! field is the element text as written (`None` when absent): which ones are
//! required is the caller's decision.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Utc};

use super::xml::XmlBody;
use super::CloudError;

/// The endpoint a request path names (DH-P2P §2.5, FIELD-NOTES §2.4).
/// Serials and tokens are kept exactly as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ProbeP2pSrv,
    OnlineP2pSrv {
        serial: String,
    },
    ProbeDevice {
        serial: String,
    },
    InfoDevice {
        serial: String,
    },
    OnlineRelay,
    OnlineStun,
    P2pStunProbe,
    P2pChannel {
        serial: String,
    },
    RelayChannel {
        serial: String,
    },
    LocalChannel {
        serial: String,
    },
    TcpRelayChannel {
        serial: String,
    },
    TcpRelayClientBind,
    RelayAgent,
    RelayStart {
        token: String,
    },
    RelayUnbind {
        token: String,
    },
    /// Any other path, as written.
    Other(String),
}

impl Endpoint {
    /// The endpoint of `path`. A serial or token must be a non-empty segment.
    pub fn parse(path: &str) -> Endpoint {
        let Some(rest) = path.strip_prefix('/') else {
            return Endpoint::Other(path.to_owned());
        };
        let segments: Vec<&str> = rest.splitn(4, '/').collect();
        let id = |s: &str| s.to_owned();
        match segments.as_slice() {
            ["probe", "p2psrv"] => Endpoint::ProbeP2pSrv,
            ["online", "p2psrv", sn] if !sn.is_empty() => Endpoint::OnlineP2pSrv { serial: id(sn) },
            ["probe", "device", sn] if !sn.is_empty() => Endpoint::ProbeDevice { serial: id(sn) },
            ["info", "device", sn] if !sn.is_empty() => Endpoint::InfoDevice { serial: id(sn) },
            ["online", "relay"] => Endpoint::OnlineRelay,
            ["online", "stun"] => Endpoint::OnlineStun,
            ["p2p", "stun", "probe"] => Endpoint::P2pStunProbe,
            ["device", sn, "p2p-channel"] if !sn.is_empty() => {
                Endpoint::P2pChannel { serial: id(sn) }
            }
            ["device", sn, "relay-channel"] if !sn.is_empty() => {
                Endpoint::RelayChannel { serial: id(sn) }
            }
            ["device", sn, "local-channel"] if !sn.is_empty() => {
                Endpoint::LocalChannel { serial: id(sn) }
            }
            ["device", sn, "tcprelay-channel"] if !sn.is_empty() => {
                Endpoint::TcpRelayChannel { serial: id(sn) }
            }
            ["tcprelay", "client-bind"] => Endpoint::TcpRelayClientBind,
            ["relay", "agent"] => Endpoint::RelayAgent,
            ["relay", "start", token] if !token.is_empty() => {
                Endpoint::RelayStart { token: id(token) }
            }
            ["relay", "unbind", token] if !token.is_empty() => {
                Endpoint::RelayUnbind { token: id(token) }
            }
            _ => Endpoint::Other(path.to_owned()),
        }
    }

    /// The path: the inverse of [`Endpoint::parse`].
    pub fn path(&self) -> String {
        match self {
            Endpoint::ProbeP2pSrv => "/probe/p2psrv".to_owned(),
            Endpoint::OnlineP2pSrv { serial } => format!("/online/p2psrv/{serial}"),
            Endpoint::ProbeDevice { serial } => format!("/probe/device/{serial}"),
            Endpoint::InfoDevice { serial } => format!("/info/device/{serial}"),
            Endpoint::OnlineRelay => "/online/relay".to_owned(),
            Endpoint::OnlineStun => "/online/stun".to_owned(),
            Endpoint::P2pStunProbe => "/p2p/stun/probe".to_owned(),
            Endpoint::P2pChannel { serial } => format!("/device/{serial}/p2p-channel"),
            Endpoint::RelayChannel { serial } => format!("/device/{serial}/relay-channel"),
            Endpoint::LocalChannel { serial } => format!("/device/{serial}/local-channel"),
            Endpoint::TcpRelayChannel { serial } => format!("/device/{serial}/tcprelay-channel"),
            Endpoint::TcpRelayClientBind => "/tcprelay/client-bind".to_owned(),
            Endpoint::RelayAgent => "/relay/agent".to_owned(),
            Endpoint::RelayStart { token } => format!("/relay/start/{token}"),
            Endpoint::RelayUnbind { token } => format!("/relay/unbind/{token}"),
            Endpoint::Other(path) => path.clone(),
        }
    }
}

/// Declares a view: a struct of optional element texts and its `from_xml`.
macro_rules! body_view {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident => $element:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: Option<String>,)*
        }

        impl $name {
            /// Reads the first element of each name; absent ones are `None`.
            pub fn from_xml(xml: &XmlBody) -> $name {
                $name { $($field: xml.get($element).map(str::to_owned),)* }
            }
        }
    };
}

body_view! {
    /// Answer to `/online/p2psrv/{SN}` (FIELD-NOTES §2.3).
    P2pSrvInfo {
        /// `host:port` of the P2P server: the one to use.
        us => "US",
        ds => "DS",
    }
}

body_view! {
    /// Answer to `/online/relay`.
    RelayInfo { address => "Address" }
}

body_view! {
    /// Answer to `/relay/agent`.
    AgentInfo { token => "Token", agent => "Agent" }
}

body_view! {
    /// Answer to `/relay/start/{token}` (mcw0, FIELD-NOTES §2.3).
    RelayStartInfo { sid => "SID", time => "Time" }
}

body_view! {
    /// Body of `/relay/start/{token}`: `Client` is the literal `:0`.
    RelayStartRequest { client => "Client", dev => "Dev" }
}

body_view! {
    /// Body of `/relay/agent` in the SDK dialect.
    RelayAgentRequest { dev => "Dev" }
}

body_view! {
    /// Body of the channel requests (p2p-, relay-, local-, tcprelay-channel),
    /// the device-auth block included (DH-P2P §4, FIELD-NOTES §2.4, §3.2).
    ChannelRequest {
        create_date => "CreateDate",
        dev_auth => "DevAuth",
        nonce => "Nonce",
        rand_salt => "RandSalt",
        user_name => "UserName",
        identify => "Identify",
        ip_encrpt => "IpEncrpt",
        ip_encrpt_v2 => "IpEncrptV2",
        /// Plain `ip:port`, a comma list, or Base64 ciphertext with IpEncrptV2.
        local_addr => "LocalAddr",
        pub_addr => "PubAddr",
        agent_addr => "agentAddr",
        nat_value_t => "NatValueT",
        trans_type => "TransType",
        version => "version",
    }
}

body_view! {
    /// Final answer to p2p-channel (`200 Server Nat Info!`) and the agent
    /// notification.
    ChannelAnswer {
        pub_addr => "PubAddr",
        /// Plain, a comma list, or ciphertext to decrypt with `nonce`.
        local_addr => "LocalAddr",
        nonce => "Nonce",
        identify => "Identify",
        ip_encrpt => "IpEncrpt",
        nat_value_t => "NatValueT",
        relay => "Relay",
        version => "version",
    }
}

body_view! {
    /// Answer to `/info/device/{SN}`; `info` is Base64 ciphertext (FIELD-NOTES §3.1).
    InfoDeviceAnswer { dev_version => "DevVersion", info => "Info" }
}

body_view! {
    /// Error answer, e.g. 403 `DevPwd_InvalidSalt` (FIELD-NOTES §2.3).
    ErrorBody { err_code => "ErrCode", error => "Error", policy => "Policy" }
}

/// A body read as the view that fits its endpoint and direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedBody {
    P2pSrv(P2pSrvInfo),
    Relay(RelayInfo),
    Agent(AgentInfo),
    RelayStarted(RelayStartInfo),
    RelayStartRequest(RelayStartRequest),
    RelayAgentRequest(RelayAgentRequest),
    ChannelRequest(ChannelRequest),
    ChannelAnswer(ChannelAnswer),
    InfoDeviceAnswer(InfoDeviceAnswer),
    Error(ErrorBody),
    /// No view is known for this endpoint; read [`XmlBody::elements`].
    Unrecognised,
}

impl TypedBody {
    /// The view of a request body sent to `endpoint`.
    pub fn of_request(endpoint: &Endpoint, xml: &XmlBody) -> TypedBody {
        match endpoint {
            Endpoint::P2pChannel { .. }
            | Endpoint::RelayChannel { .. }
            | Endpoint::LocalChannel { .. }
            | Endpoint::TcpRelayChannel { .. } => {
                TypedBody::ChannelRequest(ChannelRequest::from_xml(xml))
            }
            Endpoint::RelayStart { .. } => {
                TypedBody::RelayStartRequest(RelayStartRequest::from_xml(xml))
            }
            Endpoint::RelayAgent => TypedBody::RelayAgentRequest(RelayAgentRequest::from_xml(xml)),
            _ => TypedBody::Unrecognised,
        }
    }

    /// The view of a response to a request sent to `endpoint`. A body with
    /// `ErrCode` or `Error` is an [`ErrorBody`] whatever the endpoint.
    pub fn of_response(endpoint: &Endpoint, xml: &XmlBody) -> TypedBody {
        if xml.get("ErrCode").is_some() || xml.get("Error").is_some() {
            return TypedBody::Error(ErrorBody::from_xml(xml));
        }
        match endpoint {
            Endpoint::OnlineP2pSrv { .. } => TypedBody::P2pSrv(P2pSrvInfo::from_xml(xml)),
            Endpoint::OnlineRelay => TypedBody::Relay(RelayInfo::from_xml(xml)),
            Endpoint::RelayAgent => TypedBody::Agent(AgentInfo::from_xml(xml)),
            Endpoint::RelayStart { .. } => TypedBody::RelayStarted(RelayStartInfo::from_xml(xml)),
            Endpoint::InfoDevice { .. } => {
                TypedBody::InfoDeviceAnswer(InfoDeviceAnswer::from_xml(xml))
            }
            Endpoint::P2pChannel { .. }
            | Endpoint::RelayChannel { .. }
            | Endpoint::LocalChannel { .. }
            | Endpoint::TcpRelayChannel { .. } => {
                TypedBody::ChannelAnswer(ChannelAnswer::from_xml(xml))
            }
            _ => TypedBody::Unrecognised,
        }
    }
}

/// `host:port` as found in `US`, `Address`, `Agent`, `agentAddr`, `PubAddr`.
/// The host is kept as text (it may be a name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl FromStr for HostPort {
    type Err = CloudError;

    fn from_str(text: &str) -> Result<HostPort, CloudError> {
        let bad = |reason| CloudError::BadAddress {
            text: text.to_owned(),
            reason,
        };
        let (host, port) = text.rsplit_once(':').ok_or(bad("no `:port`"))?;
        if host.is_empty() || host.contains([',', ' ']) {
            return Err(bad("empty host or a list where one address was expected"));
        }
        let port = parse_port(port).ok_or(bad("port is not a decimal number below 65536"))?;
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl HostPort {
    /// The address when the host is an IPv4 literal.
    pub fn to_socket_addr_v4(&self) -> Option<SocketAddrV4> {
        Some(SocketAddrV4::new(self.host.parse().ok()?, self.port))
    }
}

/// Parses a plain LocalAddr: one `ip:port`, or the comma list of FIELD-NOTES
/// C11 (`10.8.0.2,192.168.1.10,192.168.1.10:50000`), where bare IPv4
/// addresses take the port of the final `ip:port`. An item that carries its
/// own port keeps it.
pub fn parse_addr_list(text: &str) -> Result<Vec<SocketAddrV4>, CloudError> {
    let bad = |reason| CloudError::BadAddress {
        text: text.to_owned(),
        reason,
    };
    let items: Vec<&str> = text.split(',').collect();
    let last = items.last().copied().unwrap_or_default();
    let final_port = HostPort::from_str(last)
        .ok()
        .and_then(|hp| hp.to_socket_addr_v4())
        .ok_or(bad("the last item is not an IPv4 `ip:port`"))?
        .port();
    items
        .iter()
        .map(|item| {
            if let Ok(ip) = Ipv4Addr::from_str(item) {
                return Ok(SocketAddrV4::new(ip, final_port));
            }
            HostPort::from_str(item)
                .ok()
                .and_then(|hp| hp.to_socket_addr_v4())
                .ok_or(bad(
                    "an item is neither an IPv4 address nor an IPv4 `ip:port`",
                ))
        })
        .collect()
}

/// Writes the comma list form: every address bare, the port once at the end
/// (the inverse of [`parse_addr_list`] when all ports are equal).
pub fn format_addr_list(ips: &[Ipv4Addr], port: u16) -> String {
    let mut text = ips
        .iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(",");
    text.push(':');
    text.push_str(&port.to_string());
    text
}

/// The 8 random bytes a client picks per run, sent in `<Identify>` and echoed
/// in the STUN ICE-CONTROLLING/CONTROLLED attributes (DH-P2P §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identify(pub [u8; 8]);

impl fmt::Display for Identify {
    /// Lowercase hex without zero padding, joined by single spaces
    /// (`0x0a` → `a`), as the reference clients write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{byte:x}")?;
        }
        Ok(())
    }
}

impl FromStr for Identify {
    type Err = CloudError;

    /// Accepts padded or unpadded hex, either case, separated by whitespace.
    fn from_str(text: &str) -> Result<Identify, CloudError> {
        let bad = |reason| CloudError::BadIdentify {
            text: text.to_owned(),
            reason,
        };
        let mut bytes = [0u8; 8];
        let mut count = 0usize;
        for token in text.split_ascii_whitespace() {
            let slot = bytes.get_mut(count).ok_or(bad("more than 8 bytes"))?;
            if token.is_empty() || token.len() > 2 || !token.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(bad("a byte is not one or two hex digits"));
            }
            *slot = u8::from_str_radix(token, 16).map_err(|_| bad("a byte is not hex"))?;
            count = count.saturating_add(1);
        }
        if count != 8 {
            return Err(bad("fewer than 8 bytes"));
        }
        Ok(Identify(bytes))
    }
}

/// `Created` as the legacy dialect writes it: UTC, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_created_utc(unix_secs: i64) -> Result<String, CloudError> {
    let time = four_digit_year_time(unix_secs, 0)?;
    Ok(time
        .with_timezone(&Utc)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string())
}

/// `Created` with a numeric offset, as the DMSS app writes it
/// (`2026-09-06T10:18:35+03:00`, FIELD-NOTES §2.2).
pub fn format_created_offset(unix_secs: i64, offset_secs: i32) -> Result<String, CloudError> {
    let time = four_digit_year_time(unix_secs, offset_secs)?;
    Ok(time.format("%Y-%m-%dT%H:%M:%S%:z").to_string())
}

fn four_digit_year_time(
    unix_secs: i64,
    offset_secs: i32,
) -> Result<DateTime<FixedOffset>, CloudError> {
    let out_of_range = CloudError::TimeOutOfRange {
        secs: unix_secs,
        offset_secs,
    };
    let offset = FixedOffset::east_opt(offset_secs).ok_or(out_of_range.clone())?;
    let time = DateTime::from_timestamp(unix_secs, 0)
        .ok_or(out_of_range.clone())?
        .with_timezone(&offset);
    let year = chrono::Datelike::year(&time);
    if !(0..=9999).contains(&year) {
        return Err(out_of_range);
    }
    Ok(time)
}

/// Unix seconds of a `Created` text ending in `Z` or any `±hh:mm` offset
/// (what a fake cloud needs to check clock skew).
pub fn parse_created(text: &str) -> Result<i64, CloudError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|_| CloudError::BadCreated {
            text: text.to_owned(),
        })
}
