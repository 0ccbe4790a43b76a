//! One description of a datagram for every front end: a field tree with byte
//! ranges (for `-V` and the inspector's hex highlighting), a one-line summary
//! (a tshark Info column) and a stable JSON object (`--json`).
//!
//! Nothing here reads the wire: the codec decodes ([`classify`]) and this
//! module walks the decoded values. Byte ranges come from the codec's
//! layout tables and the encoded lengths of decoded parts:
//! - PTCP: `ptcp::field` (header, sub-header, BIND/STATUS fields, data);
//! - punch: `punch::field` for the STUN header, then each attribute in
//!   order taking `4 + value + padding` bytes, then the bytes after the
//!   declared length;
//! - cloud: the start line, each header line `name + separator + value +
//!   CRLF`, the empty line, then the body; XML elements where the XML
//!   reader found them ([`cloud::XmlBody::spans`]);
//! - RTSP credentials: [`rtsp::credential_ranges`].
//!
//! Secrets are redacted by default ([`Options::redact`]): DevAuth values and
//! the credentials of `Authorization: Digest`/`Basic` headers (in cloud heads
//! and in tunnelled RTSP). Text values show [`REDACTED`]; byte values (hex
//! strings) have the secret bytes replaced by `*`. The X-WSSE PasswordDigest
//! stays: it is a one-time digest of a public client key.
//!
//! Nothing here panics on any input, and every range lies inside the payload.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::ops::Range;

use serde_json::{json, Map, Value};

use crate::codec::classify::{classify, Datagram, Kind};
use crate::codec::cloud::{self, CloudError, Endpoint, Message, XmlBody};
use crate::codec::crypto;
use crate::codec::ptcp::{self, field, Body, Packet, PtcpError};
use crate::codec::punch::field as pfield;
use crate::codec::punch::{self, AddressValue, Attribute, PunchError, PunchMessage};
use crate::codec::rtsp;

mod cloud_tree;
mod ptcp_tree;
mod punch_tree;
mod redact;
mod render;
mod text;

use cloud_tree::*;
use ptcp_tree::*;
use punch_tree::*;
use redact::*;
use text::*;

pub use redact::redact_auth_text;
pub use render::{hex_dump, render_tree};

/// What a redacted text value reads as.
pub const REDACTED: &str = "<redacted>";

/// The byte that replaces a secret byte in hex output and masked payloads.
const MASK_BYTE: u8 = b'*';

/// Longest text preview put in a tree value; JSON carries the whole text.
const MAX_PREVIEW_CHARS: usize = 160;

/// Body elements worth a place in a cloud summary line, in display order.
const SUMMARY_ELEMENTS: [&str; 10] = [
    "US",
    "Address",
    "Token",
    "Agent",
    "PubAddr",
    "LocalAddr",
    "SID",
    "ErrCode",
    "Error",
    "DevVersion",
];

/// One node of the field tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Stable dotted name, e.g. `ptcp.sent`, `cloud.body.PubAddr`,
    /// `punch.attr.identify`. Several fields may share a key (headers,
    /// attributes). Listed in docs/DECODE.md.
    pub key: String,
    /// Human name, as the tree shows it.
    pub label: String,
    /// Display value; empty for pure containers.
    pub value: String,
    /// Typed value for JSON consumers (`Null` for containers).
    pub json: Value,
    /// The bytes of the datagram this field was read from; `None` for
    /// generated fields (a computed address, a decrypted text).
    pub range: Option<Range<usize>>,
    pub children: Vec<Field>,
}

impl Field {
    fn new(
        key: impl Into<String>,
        label: impl Into<String>,
        value: impl Into<String>,
        json: Value,
        range: Option<Range<usize>>,
    ) -> Field {
        Field {
            key: key.into(),
            label: label.into(),
            value: value.into(),
            json,
            range,
            children: Vec::new(),
        }
    }

    /// A numeric field shown in decimal.
    fn number(key: &str, label: &str, value: u64, range: Option<Range<usize>>) -> Field {
        Field::new(key, label, value.to_string(), json!(value), range)
    }

    fn with_children(mut self, children: Vec<Field>) -> Field {
        self.children = children;
        self
    }

    /// This field and its descendants, depth first.
    pub fn walk(&self) -> Vec<&Field> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(field) = stack.pop() {
            out.push(field);
            stack.extend(field.children.iter().rev());
        }
        out
    }
}

/// How to describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Replace secrets (DevAuth, Authorization credentials) in every output.
    pub redact: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { redact: true }
    }
}

/// A described datagram.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    pub kind: Kind,
    /// One line, like a tshark Info column.
    pub summary: String,
    /// The field tree: one root per datagram (`ptcp`, `cloud`, `punch`,
    /// `data`), the decoded fields below it.
    pub fields: Vec<Field>,
    /// The decoder's error (with its offset) when the datagram looked like
    /// `kind` but did not decode.
    pub error: Option<String>,
    /// Payload length in bytes.
    pub length: usize,
    /// Byte ranges holding secrets, whether or not they were redacted; what
    /// [`Description::masked`] overwrites.
    pub secrets: Vec<Range<usize>>,
    /// Whether secrets were redacted in the values above.
    pub redacted: bool,
    /// The kind-specific JSON object (`"ptcp": {…}`), `Null` when none.
    detail: Value,
}

impl Description {
    /// The stable JSON object (schema in docs/DECODE.md): `kind`, `summary`,
    /// `length`, then `error` for malformed datagrams and the kind-specific
    /// object under the kind's name.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("kind".into(), json!(self.kind.as_str()));
        object.insert("summary".into(), json!(self.summary));
        object.insert("length".into(), json!(self.length));
        if let Some(error) = &self.error {
            object.insert("error".into(), json!(error));
        }
        if !self.detail.is_null() {
            object.insert(self.kind.as_str().into(), self.detail.clone());
        }
        Value::Object(object)
    }

    /// Whether the datagram decoded as one of the protocol's kinds.
    pub fn is_decoded(&self) -> bool {
        self.error.is_none() && self.kind != Kind::Unknown
    }

    /// Every field, depth first.
    pub fn walk(&self) -> Vec<&Field> {
        self.fields.iter().flat_map(Field::walk).collect()
    }

    /// The first field with `key`, depth first.
    pub fn find(&self, key: &str) -> Option<&Field> {
        self.walk().into_iter().find(|f| f.key == key)
    }

    /// Every field with `key`, depth first.
    pub fn find_all(&self, key: &str) -> Vec<&Field> {
        self.walk().into_iter().filter(|f| f.key == key).collect()
    }

    /// The innermost field whose range holds byte `offset` (what a hex pane
    /// highlights when the cursor sits on a byte).
    pub fn field_at(&self, offset: usize) -> Option<&Field> {
        self.walk()
            .into_iter()
            .filter(|f| f.range.as_ref().is_some_and(|r| r.contains(&offset)))
            .min_by_key(|f| f.range.as_ref().map_or(usize::MAX, |r| r.len()))
    }

    /// `payload` with the secret bytes replaced by `*` when this description
    /// was made with redaction, unchanged otherwise. Feed this, not the raw
    /// payload, to [`hex_dump`].
    pub fn masked<'a>(&self, payload: &'a [u8]) -> Cow<'a, [u8]> {
        if !self.redacted || self.secrets.is_empty() {
            return Cow::Borrowed(payload);
        }
        Cow::Owned(mask(payload, &self.secrets))
    }
}

/// Describes a UDP payload with the default options (secrets redacted).
pub fn describe(payload: &[u8]) -> Description {
    describe_with(payload, Options::default())
}

/// Describes a UDP payload.
pub fn describe_with(payload: &[u8], options: Options) -> Description {
    let mut description = match classify(payload) {
        Datagram::Ptcp(Ok(packet)) => describe_ptcp(payload, &packet, options),
        Datagram::Ptcp(Err(error)) => malformed_ptcp(payload, &error),
        Datagram::Cloud(Ok(message)) => describe_cloud(payload, &message, options),
        Datagram::Cloud(Err(error)) => malformed_cloud(payload, &error),
        Datagram::Punch(Ok(message)) => describe_punch(payload, &message),
        Datagram::Punch(Err(error)) => malformed_punch(payload, &error),
        Datagram::Unknown => describe_unknown(payload),
    };
    description.redacted = options.redact;
    // The inspector slices the payload with these; keep them inside it.
    for field in &mut description.fields {
        clamp_ranges(field, payload.len());
    }
    description
        .secrets
        .retain(|r| r.start < r.end && r.end <= payload.len());
    description
}

fn clamp_ranges(field: &mut Field, len: usize) {
    if let Some(range) = &mut field.range {
        range.end = range.end.min(len);
        range.start = range.start.min(range.end);
    }
    for child in &mut field.children {
        clamp_ranges(child, len);
    }
}

fn base(kind: Kind, payload: &[u8]) -> Description {
    Description {
        kind,
        summary: String::new(),
        fields: Vec::new(),
        error: None,
        length: payload.len(),
        secrets: Vec::new(),
        redacted: true,
        detail: Value::Null,
    }
}

fn root(key: &str, label: &str, payload: &[u8], children: Vec<Field>) -> Field {
    Field::new(key, label, "", Value::Null, Some(0..payload.len())).with_children(children)
}

const PTCP_LABEL: &str = "Phony TCP (Dahua P2P)";
const CLOUD_LABEL: &str = "Dahua HTTP (Easy4IPCloud signalling)";
const PUNCH_LABEL: &str = "Inverted STUN (Dahua P2P hole punch)";

// ---------------------------------------------------------------------------
// Unknown and malformed

fn describe_unknown(payload: &[u8]) -> Description {
    let mut d = base(Kind::Unknown, payload);
    d.summary = format!(
        "{} bytes, not PTCP, cloud or punch (first bytes {})",
        payload.len(),
        spaced_hex(payload.get(..payload.len().min(8)).unwrap_or_default())
    );
    d.fields = vec![Field::new(
        "data",
        "Data",
        format!("{} bytes", payload.len()),
        json!(hex::encode(payload)),
        Some(0..payload.len()),
    )];
    d
}

fn malformed_field(key: &str, error: &str) -> Field {
    Field::new(key, "Malformed", error, json!(error), None)
}

fn malformed_ptcp(payload: &[u8], error: &PtcpError) -> Description {
    let mut d = base(Kind::Ptcp, payload);
    let text = error.to_string();
    let mut children = Vec::new();
    // A header that decodes is still worth showing next to the body error.
    if let Ok(header) = ptcp::Header::decode(payload) {
        children = ptcp_header_fields(&header);
        d.detail = Value::Object(ptcp_header_json(&header));
    }
    children.push(malformed_field("ptcp.malformed", &text));
    d.summary = format!("[malformed] {text}");
    d.fields = vec![root("ptcp", PTCP_LABEL, payload, children)];
    d.error = Some(text);
    d
}

fn malformed_cloud(payload: &[u8], error: &CloudError) -> Description {
    let mut d = base(Kind::Cloud, payload);
    let text = error.to_string();
    d.summary = format!("[malformed] {text}");
    d.fields = vec![root(
        "cloud",
        CLOUD_LABEL,
        payload,
        vec![malformed_field("cloud.malformed", &text)],
    )];
    d.error = Some(text);
    d
}

fn malformed_punch(payload: &[u8], error: &PunchError) -> Description {
    let mut d = base(Kind::Punch, payload);
    let text = error.to_string();
    d.summary = format!("[malformed] {text}");
    d.fields = vec![root(
        "punch",
        PUNCH_LABEL,
        payload,
        vec![malformed_field("punch.malformed", &text)],
    )];
    d.error = Some(text);
    d
}
