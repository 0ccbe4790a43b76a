//! The cloud messages: HTTP-like requests and responses carried one per UDP
//! datagram (DH-P2P.md §2, FIELD-NOTES.md §2), and their XML bodies.
//!
//! - [`message`]: the head (request/status line, headers in wire order) and the
//!   raw body. [`decode`] and [`Message::encode`] are exact inverses.
//! - [`xml`]: the `<body>` XML as an ordered list of elements, parsed on
//!   demand so a message with a broken body still decodes.
//! - [`views`]: typed views of the bodies per endpoint, the endpoint of a
//!   request path, addresses, `Identify` and `Created` times.
//! - [`builder`]: requests in the legacy (DH*) and SDK (NF*) dialects and the
//!   reference bodies, byte-exact against the vectors of DH-P2P.md §11.
//!
//! Nothing here decrypts: DevAuth and encrypted LocalAddr texts come from
//! [`crate::codec::crypto`] and are passed in as text.

pub mod builder;
pub mod message;
pub mod views;
pub mod xml;

pub use builder::{
    build_request, build_sdk_stun_warmup, p2p_channel_auth_body, p2p_channel_body,
    relay_agent_body, relay_channel_auth_body, relay_channel_body, relay_start_body,
    DeviceAuthBlock, Dialect, RequestParams, RequestStyle, SdkHeaders, WsseAuth,
    AUTHORIZATION_WSSE,
};
pub use message::{
    decode, looks_like_cloud, wsse_header_value, Header, HeaderLayout, Layout, Message, Method,
    Request, Response, Separator, Wsse, WsseRanges, MAX_HEADERS,
};
pub use views::{
    format_addr_list, format_created_offset, format_created_utc, parse_addr_list, parse_created,
    AgentInfo, ChannelAnswer, ChannelRequest, Endpoint, ErrorBody, HostPort, Identify,
    InfoDeviceAnswer, P2pSrvInfo, RelayAgentRequest, RelayInfo, RelayStartInfo, RelayStartRequest,
    TypedBody,
};
pub use xml::{ElementSpan, XmlBody, XmlElement, MAX_XML_DEPTH, MAX_XML_ELEMENTS};

/// Why a datagram, a body or a field of a cloud message was rejected.
///
/// Offsets count bytes from the start of the datagram (or of the text given
/// to a standalone parser such as [`XmlBody::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    #[error("not a cloud message: it starts with neither a method token and a space nor `HTTP/`")]
    NotCloud,
    #[error("head not terminated: no CRLFCRLF in {len} bytes")]
    HeadUnterminated { len: usize },
    #[error("head is not UTF-8 at offset {offset}")]
    NonUtf8Head { offset: usize },
    #[error("bare CR or LF inside a head line at offset {offset} (lines end in CRLF)")]
    BareLineBreak { offset: usize },
    #[error("bad request line at offset {offset}: {reason}")]
    BadRequestLine { offset: usize, reason: &'static str },
    #[error("bad status line at offset {offset}: {reason}")]
    BadStatusLine { offset: usize, reason: &'static str },
    #[error("bad status code {text:?} at offset {offset}: want three digits")]
    BadStatusCode { offset: usize, text: String },
    #[error("bad header line at offset {offset}: {reason}")]
    BadHeaderLine { offset: usize, reason: &'static str },
    #[error("more than {max} header lines")]
    TooManyHeaders { max: usize },
    #[error("body is not UTF-8 at offset {offset}")]
    NonUtf8Body { offset: usize },
    #[error("XML body at offset {offset}: {message}")]
    Xml { offset: usize, message: String },
    #[error("XML body at offset {offset}: root element is {found:?}, want <body>")]
    XmlRoot { offset: usize, found: String },
    #[error("XML body at offset {offset}: elements nested deeper than {max}")]
    XmlTooDeep { offset: usize, max: usize },
    #[error("XML body at offset {offset}: more than {max} elements")]
    TooManyXmlElements { offset: usize, max: usize },
    #[error("body element <{name}> missing")]
    MissingElement { name: String },
    #[error("bad X-WSSE header: {reason}")]
    BadWsse { reason: &'static str },
    #[error("bad address {text:?}: {reason}")]
    BadAddress { text: String, reason: &'static str },
    #[error("bad Identify {text:?}: {reason}")]
    BadIdentify { text: String, reason: &'static str },
    #[error("bad Created time {text:?}: want YYYY-MM-DDTHH:MM:SS followed by Z or +hh:mm")]
    BadCreated { text: String },
    #[error("time {secs} s (offset {offset_secs} s) cannot be written as a four-digit-year date")]
    TimeOutOfRange { secs: i64, offset_secs: i32 },
}
