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
use crate::codec::cloud::{self, CloudError, Endpoint, Message, Separator, XmlBody};
use crate::codec::crypto;
use crate::codec::ptcp::{self, field, Body, Packet, PtcpError};
use crate::codec::rtsp;
use crate::codec::punch::field as pfield;
use crate::codec::punch::{self, AddressValue, Attribute, PunchError, PunchMessage};

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

// ---------------------------------------------------------------------------
// PTCP

/// Offset of the body (and the sub-header) in a PTCP datagram.
const PTCP_BODY: usize = field::at_in_datagram(0);
/// Offset of the data after the sub-header.
const PTCP_DATA: usize = field::at_in_datagram(field::body::DATA);

fn ptcp_header_fields(h: &ptcp::Header) -> Vec<Field> {
    vec![
        Field::new("ptcp.magic", "Magic", "PTCP", json!("PTCP"), Some(field::MAGIC)),
        Field::number("ptcp.sent", "Bytes Sent", h.sent.into(), Some(field::SENT)),
        Field::number("ptcp.recv", "Bytes Received", h.recv.into(), Some(field::RECV)),
        Field::new(
            "ptcp.pid",
            "Package ID",
            format!("0x{:08x}", h.pid),
            json!(h.pid),
            Some(field::PID),
        ),
        Field::number("ptcp.lmid", "Local Message ID", h.lmid.into(), Some(field::LMID)),
        Field::number(
            "ptcp.rmid",
            "Remote Message ID",
            h.rmid.into(),
            Some(field::RMID),
        ),
    ]
}

fn ptcp_header_json(h: &ptcp::Header) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("sent".into(), json!(h.sent));
    object.insert("recv".into(), json!(h.recv));
    object.insert("pid".into(), json!(h.pid));
    object.insert("lmid".into(), json!(h.lmid));
    object.insert("rmid".into(), json!(h.rmid));
    object
}

fn describe_ptcp(payload: &[u8], packet: &Packet<'_>, options: Options) -> Description {
    let mut d = base(Kind::Ptcp, payload);
    d.summary = packet.to_string();
    let body = &packet.body;
    let body_len = body.encoded_len();
    let mut children = ptcp_header_fields(&packet.header);
    children.push(Field::number(
        "ptcp.body_len",
        "Body Length",
        body_len as u64,
        None,
    ));

    let mut body_json = Map::new();
    body_json.insert("type".into(), json!(body.name()));
    let mut body_children = Vec::new();
    if let Some(code) = body.body_type() {
        body_json.insert("type_code".into(), json!(code));
        body_children.extend(sub_header_fields(body, code, &mut body_json));
    }
    let data_range = PTCP_DATA..PTCP_DATA.saturating_add(body.command_data().len());
    match *body {
        Body::Empty => {}
        Body::Syn => body_children.push(Field::new(
            "ptcp.body.syn",
            "SYN",
            spaced_hex(&ptcp::SYN_BODY),
            json!(hex::encode(ptcp::SYN_BODY)),
            Some(PTCP_BODY..PTCP_BODY + ptcp::SYN_BODY.len()),
        )),
        Body::Data { payload: data, .. } => {
            let secrets = shift(rtsp::credential_ranges(data), PTCP_DATA);
            let field = bytes_field(
                "ptcp.body.payload",
                "Payload",
                data,
                data_range,
                &secrets,
                options,
                &mut body_json,
                "payload",
            );
            body_children.push(field);
            d.secrets.extend(secrets);
        }
        Body::Bind { port, ip, .. } => {
            body_children.push(Field::number(
                "ptcp.body.port",
                "Target Port",
                port.into(),
                Some(field::in_datagram(field::body::BIND_PORT)),
            ));
            body_children.push(Field::new(
                "ptcp.body.ip",
                "Target IPv4",
                ip.to_string(),
                json!(ip.to_string()),
                Some(field::in_datagram(field::body::BIND_IP)),
            ));
            let target = format!("{ip}:{port}");
            body_children.push(Field::new(
                "ptcp.body.target",
                "Target",
                &target,
                json!(target),
                None,
            ));
            body_json.insert("port".into(), json!(port));
            body_json.insert("ip".into(), json!(ip.to_string()));
            body_json.insert("target".into(), json!(target));
        }
        Body::Status {
            status, trailer, ..
        } => {
            body_children.push(Field::new(
                "ptcp.body.status",
                "Status",
                status.name(),
                json!(status.name()),
                Some(field::in_datagram(field::body::STATUS_WORD)),
            ));
            body_json.insert("status".into(), json!(status.name()));
            if !trailer.is_empty() {
                let start = field::at_in_datagram(field::body::STATUS_TRAILER);
                body_children.push(Field::new(
                    "ptcp.body.trailer",
                    "Status Trailer",
                    spaced_hex(trailer),
                    json!(hex::encode(trailer)),
                    Some(start..start.saturating_add(trailer.len())),
                ));
            }
            body_json.insert("trailer".into(), json!(hex::encode(trailer)));
        }
        Body::Sign { sign } | Body::Auth { sign } => {
            body_children.push(bytes_field(
                "ptcp.body.sign",
                "Sign",
                sign,
                data_range,
                &[],
                options,
                &mut body_json,
                "sign",
            ));
        }
        Body::AuthReply { .. } | Body::Unknown { .. } => {
            let data = body.command_data();
            if !data.is_empty() {
                body_children.push(bytes_field(
                    "ptcp.body.data",
                    "Data",
                    data,
                    data_range,
                    &[],
                    options,
                    &mut body_json,
                    "data",
                ));
            }
        }
        Body::Heartbeat | Body::SignRequest | Body::AuthConfirm => {}
    }
    let body_value = match body.body_type() {
        Some(code) => format!("{} (0x{code:02x})", body.name()),
        None => body.name().to_owned(),
    };
    let body_range = (body_len > 0).then(|| PTCP_BODY..PTCP_BODY.saturating_add(body_len));
    children.push(
        Field::new("ptcp.body", "Body", body_value, Value::Null, body_range)
            .with_children(body_children),
    );

    let mut detail = ptcp_header_json(&packet.header);
    detail.insert("body_len".into(), json!(body_len));
    detail.insert("body".into(), Value::Object(body_json));
    d.detail = Value::Object(detail);
    d.fields = vec![root("ptcp", PTCP_LABEL, payload, children)];
    d
}

/// Type, length, realm and padding of a body with a sub-header. Values come
/// from the decoded body; a known type only decodes when its fixed fields
/// are canonical, so they are known without reading the bytes again.
fn sub_header_fields(body: &Body<'_>, code: u8, json_out: &mut Map<String, Value>) -> Vec<Field> {
    let mut fields = vec![Field::new(
        "ptcp.body.type",
        "Type",
        format!("0x{code:02x} ({})", body.name()),
        json!(code),
        Some(field::in_datagram(field::body::TYPE)),
    )];
    let length = match *body {
        Body::Data { payload, .. } => Some(payload.len() as u64),
        Body::Bind { len_field, .. } => Some(len_field.into()),
        // Unknown bodies keep their raw bytes only; the length is not a
        // decoded value, so it is not shown.
        Body::Unknown { .. } => None,
        _ => Some(0),
    };
    if let Some(length) = length {
        fields.push(Field::number(
            "ptcp.body.length",
            "Length",
            length,
            Some(field::in_datagram(field::body::LEN)),
        ));
        json_out.insert("length".into(), json!(length));
    }
    let realm = body.realm().unwrap_or(0);
    fields.push(Field::new(
        "ptcp.body.realm",
        "Realm",
        format!("0x{realm:08x}"),
        json!(realm),
        Some(field::in_datagram(field::body::REALM)),
    ));
    json_out.insert("realm".into(), json!(realm));
    if !matches!(body, Body::Unknown { .. }) {
        fields.push(Field::new(
            "ptcp.body.padding",
            "Padding",
            "0x00000000",
            json!(0),
            Some(field::in_datagram(field::body::PADDING)),
        ));
        json_out.insert("padding".into(), json!(0));
    }
    if let Body::Unknown { bytes, .. } = body {
        fields.push(Field::number(
            "ptcp.body.raw_len",
            "Body Bytes",
            bytes.len() as u64,
            None,
        ));
        json_out.insert("raw".into(), json!(hex::encode(bytes)));
    }
    fields
}

/// A byte-string field (payload, sign, data): hex in JSON under `json_key`
/// and its text under `{json_key}_text` when it reads as text. `secrets` are
/// datagram ranges inside `range`.
#[allow(clippy::too_many_arguments)]
fn bytes_field(
    key: &str,
    label: &str,
    bytes: &[u8],
    range: Range<usize>,
    secrets: &[Range<usize>],
    options: Options,
    json_out: &mut Map<String, Value>,
    json_key: &str,
) -> Field {
    let local: Vec<Range<usize>> = secrets
        .iter()
        .map(|r| r.start.saturating_sub(range.start)..r.end.saturating_sub(range.start))
        .collect();
    let shown: Cow<'_, [u8]> = if options.redact && !local.is_empty() {
        Cow::Owned(mask(bytes, &local))
    } else {
        Cow::Borrowed(bytes)
    };
    json_out.insert(json_key.into(), json!(hex::encode(&shown)));
    json_out.insert(format!("{json_key}_len"), json!(bytes.len()));
    let text = readable_text(bytes).then(|| {
        if options.redact {
            redact_text(bytes, &local)
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        }
    });
    let mut children = Vec::new();
    let value = match &text {
        Some(text) => {
            json_out.insert(format!("{json_key}_text"), json!(text));
            children.push(Field::new(
                format!("{key}.text"),
                format!("{label} (text)"),
                preview(text),
                json!(text),
                Some(range.clone()),
            ));
            format!("{} bytes: {}", bytes.len(), preview(text))
        }
        None => format!("{} bytes: {}", bytes.len(), preview(&spaced_hex(&shown))),
    };
    Field::new(key, label, value, json!(hex::encode(&shown)), Some(range)).with_children(children)
}

// ---------------------------------------------------------------------------
// Cloud

fn describe_cloud(payload: &[u8], message: &Message, options: Options) -> Description {
    let mut d = base(Kind::Cloud, payload);
    let mut children = Vec::new();
    let mut detail = Map::new();
    let mut summary;

    // Start line.
    let (start_line_len, start_field) = match message {
        Message::Request(r) => {
            let method = r.method.as_str();
            let path_start = method.len() + 1;
            let version_start = path_start + r.path.len() + 1;
            let end = version_start + r.version.len();
            let endpoint = r.endpoint();
            let (endpoint_name, id_name, id) = endpoint_parts(&endpoint);
            let mut line_children = vec![
                Field::new(
                    "cloud.method",
                    "Method",
                    method,
                    json!(method),
                    Some(0..method.len()),
                ),
                Field::new(
                    "cloud.path",
                    "Path",
                    &r.path,
                    json!(r.path),
                    Some(path_start..version_start - 1),
                ),
                Field::new(
                    "cloud.version",
                    "Version",
                    &r.version,
                    json!(r.version),
                    Some(version_start..end),
                ),
                Field::new(
                    "cloud.endpoint",
                    "Endpoint",
                    endpoint_name,
                    json!(endpoint_name),
                    None,
                ),
            ];
            let mut request = Map::new();
            request.insert("method".into(), json!(method));
            request.insert("path".into(), json!(r.path));
            request.insert("version".into(), json!(r.version));
            request.insert("endpoint".into(), json!(endpoint_name));
            if let (Some(id_name), Some(id)) = (id_name, id) {
                let label = if id_name == "serial" {
                    "Serial"
                } else {
                    "Token"
                };
                line_children.push(Field::new(
                    format!("cloud.{id_name}"),
                    label,
                    id,
                    json!(id),
                    None,
                ));
                request.insert(id_name.into(), json!(id));
            }
            detail.insert("request".into(), Value::Object(request));
            summary = format!("{method} {}", r.path);
            let line = format!("{method} {} {}", r.path, r.version);
            (
                end,
                Field::new(
                    "cloud.request_line",
                    "Request Line",
                    line,
                    Value::Null,
                    None,
                )
                .with_children(line_children),
            )
        }
        Message::Response(r) => {
            let code_start = r.version.len() + 1;
            let reason_start = code_start + 4;
            let end = reason_start + r.reason.len();
            let line_children = vec![
                Field::new(
                    "cloud.version",
                    "Version",
                    &r.version,
                    json!(r.version),
                    Some(0..r.version.len()),
                ),
                Field::number(
                    "cloud.code",
                    "Status Code",
                    r.code.into(),
                    Some(code_start..code_start + 3),
                ),
                Field::new(
                    "cloud.reason",
                    "Reason Phrase",
                    &r.reason,
                    json!(r.reason),
                    Some(reason_start..end),
                ),
            ];
            let mut response = Map::new();
            response.insert("version".into(), json!(r.version));
            response.insert("code".into(), json!(r.code));
            response.insert("reason".into(), json!(r.reason));
            detail.insert("response".into(), Value::Object(response));
            summary = format!("{:03} {}", r.code, r.reason);
            let line = format!("{} {:03} {}", r.version, r.code, r.reason);
            (
                end,
                Field::new(
                    "cloud.status_line",
                    "Status Line",
                    line,
                    Value::Null,
                    Some(0..end),
                )
                .with_children(line_children),
            )
        }
    };
    children.push(start_field);

    // Headers, each `name + separator + value + CRLF`.
    let mut offset = start_line_len + 2;
    let mut headers_json = Vec::new();
    for header in message.headers() {
        let separator_len = match header.separator {
            Separator::ColonSpace => 2,
            Separator::Colon => 1,
        };
        let value_start = offset + header.name.len() + separator_len;
        let line_end = value_start + header.value.len();
        let is_auth = header.name.eq_ignore_ascii_case("Authorization")
            || header.name.eq_ignore_ascii_case("Proxy-Authorization");
        let secrets = if is_auth {
            shift(
                rtsp::parse_authorization(header.value.as_bytes())
                    .secret_ranges(header.value.as_bytes()),
                value_start,
            )
        } else {
            Vec::new()
        };
        let value = if options.redact && !secrets.is_empty() {
            let local: Vec<_> = secrets
                .iter()
                .map(|r| r.start - value_start..r.end - value_start)
                .collect();
            redact_text(header.value.as_bytes(), &local)
        } else {
            header.value.clone()
        };
        d.secrets.extend(secrets);
        let mut field = Field::new(
            "cloud.header",
            header.name.as_str(),
            &value,
            json!(value),
            Some(offset..line_end),
        );
        if header.name.eq_ignore_ascii_case("X-WSSE") {
            field.children = wsse_fields(&header.value, value_start);
        }
        headers_json.push(json!([header.name, value]));
        children.push(field);
        offset = line_end + 2;
    }
    detail.insert("headers".into(), Value::Array(headers_json));
    let cseq = message.cseq();
    detail.insert("cseq".into(), json!(cseq));
    if let Some(cseq_text) = message.header("CSeq") {
        summary.push_str(" CSeq=");
        summary.push_str(cseq_text);
    }
    if message.header("Content-Length").is_some() {
        detail.insert("content_length".into(), json!(message.content_length()));
        detail.insert(
            "content_length_matches".into(),
            json!(message.content_length_matches()),
        );
        if !message.content_length_matches() {
            children.push(Field::new(
                "cloud.content_length_mismatch",
                "Content-Length Mismatch",
                format!(
                    "header says {:?}, body is {} bytes",
                    message.header("Content-Length").unwrap_or_default(),
                    message.body().len()
                ),
                json!(false),
                None,
            ));
        }
    }
    if let Ok(Some(wsse)) = message.wsse() {
        detail.insert(
            "wsse".into(),
            json!({
                "username": wsse.username,
                "password_digest": wsse.password_digest,
                "nonce": wsse.nonce,
                "created": wsse.created,
            }),
        );
    }

    // Body.
    let body_start = offset + 2;
    let body = message.body();
    if !body.is_empty() {
        let body_range = body_start..body_start.saturating_add(body.len());
        let (body_field, body_json, secrets, summary_extra) =
            cloud_body(message, body, body_range, options);
        d.secrets.extend(secrets);
        children.push(body_field);
        detail.insert("body".into(), body_json);
        summary.push_str(&summary_extra);
    }

    d.summary = summary;
    d.detail = Value::Object(detail);
    d.fields = vec![root("cloud", CLOUD_LABEL, payload, children)];
    d
}

/// The endpoint's name, and the name and value of its serial or token.
fn endpoint_parts(endpoint: &Endpoint) -> (&'static str, Option<&'static str>, Option<&str>) {
    match endpoint {
        Endpoint::ProbeP2pSrv => ("probe-p2psrv", None, None),
        Endpoint::OnlineP2pSrv { serial } => ("online-p2psrv", Some("serial"), Some(serial)),
        Endpoint::ProbeDevice { serial } => ("probe-device", Some("serial"), Some(serial)),
        Endpoint::InfoDevice { serial } => ("info-device", Some("serial"), Some(serial)),
        Endpoint::OnlineRelay => ("online-relay", None, None),
        Endpoint::OnlineStun => ("online-stun", None, None),
        Endpoint::P2pStunProbe => ("p2p-stun-probe", None, None),
        Endpoint::P2pChannel { serial } => ("p2p-channel", Some("serial"), Some(serial)),
        Endpoint::RelayChannel { serial } => ("relay-channel", Some("serial"), Some(serial)),
        Endpoint::LocalChannel { serial } => ("local-channel", Some("serial"), Some(serial)),
        Endpoint::TcpRelayChannel { serial } => ("tcprelay-channel", Some("serial"), Some(serial)),
        Endpoint::TcpRelayClientBind => ("tcprelay-client-bind", None, None),
        Endpoint::RelayAgent => ("relay-agent", None, None),
        Endpoint::RelayStart { token } => ("relay-start", Some("token"), Some(token)),
        Endpoint::RelayUnbind { token } => ("relay-unbind", Some("token"), Some(token)),
        Endpoint::Other(_) => ("other", None, None),
    }
}

/// The four X-WSSE parameters, each with the range of its quoted value
/// inside the header line starting at `value_start`.
fn wsse_fields(value: &str, value_start: usize) -> Vec<Field> {
    let Ok(wsse) = cloud::Wsse::parse(value) else {
        return vec![Field::new(
            "cloud.wsse.error",
            "X-WSSE Error",
            "not a UsernameToken header",
            Value::Null,
            None,
        )];
    };
    let params = [
        ("Username", "cloud.wsse.username", &wsse.username),
        (
            "PasswordDigest",
            "cloud.wsse.password_digest",
            &wsse.password_digest,
        ),
        ("Nonce", "cloud.wsse.nonce", &wsse.nonce),
        ("Created", "cloud.wsse.created", &wsse.created),
    ];
    params
        .into_iter()
        .map(|(name, key, text)| {
            let range = value
                .find(&format!("{name}=\""))
                .map(|at| at + name.len() + 2)
                .map(|at| value_start + at..value_start + at + text.len());
            Field::new(key, name, text.as_str(), json!(text), range)
        })
        .collect()
}

type BodyParts = (Field, Value, Vec<Range<usize>>, String);

fn cloud_body(message: &Message, body: &[u8], range: Range<usize>, options: Options) -> BodyParts {
    let mut body_json = Map::new();
    body_json.insert("length".into(), json!(body.len()));
    let mut children = Vec::new();
    let mut secrets = Vec::new();
    let mut summary = String::new();
    let text = String::from_utf8_lossy(body);

    let xml = message.xml_body();
    match &xml {
        Ok(Some(xml)) => {
            let mut elements_json = Vec::new();
            for (element, span) in xml.elements().iter().zip(xml.spans()) {
                let outer = range.start + span.outer.start..range.start + span.outer.end;
                let inner = range.start + span.inner.start..range.start + span.inner.end;
                let secret = element.name == "DevAuth";
                if secret {
                    secrets.push(inner);
                }
                let shown = if secret && options.redact {
                    REDACTED.to_owned()
                } else {
                    element.text.clone()
                };
                elements_json.push(json!([element.name, shown]));
                let mut field = Field::new(
                    format!("cloud.body.{}", element.name),
                    element.name.as_str(),
                    preview(&shown),
                    json!(shown),
                    Some(outer),
                );
                field.children = element_details(&element.name, &element.text, xml);
                children.push(field);
            }
            body_json.insert("elements".into(), Value::Array(elements_json));
            // Requests are named by their line; answers by what they carry.
            let names: &[&str] = match message {
                Message::Request(_) => &[],
                Message::Response(_) => &SUMMARY_ELEMENTS,
            };
            for name in names {
                if let Some(value) = xml.get(name) {
                    let _ = write!(summary, " {name}={value}");
                }
            }
        }
        Ok(None) => {}
        Err(error) => {
            let error = error.to_string();
            body_json.insert("xml_error".into(), json!(error));
            children.push(Field::new(
                "cloud.body.xml_error",
                "XML Error",
                &error,
                json!(error),
                None,
            ));
            summary.push_str(" [bad XML body]");
        }
    }
    let shown_text = if options.redact && !secrets.is_empty() {
        let local: Vec<_> = secrets
            .iter()
            .map(|r| r.start.saturating_sub(range.start)..r.end.saturating_sub(range.start))
            .collect();
        redact_text(body, &local)
    } else {
        text.into_owned()
    };
    body_json.insert("text".into(), json!(shown_text));
    let field = Field::new(
        "cloud.body",
        "Body",
        format!("{} bytes", body.len()),
        Value::Null,
        Some(range),
    )
    .with_children(children);
    (field, Value::Object(body_json), secrets, summary)
}

/// Decoded readings of well-known elements, as generated children.
fn element_details(name: &str, text: &str, xml: &XmlBody) -> Vec<Field> {
    let key = |suffix: &str| format!("cloud.body.{name}.{suffix}");
    let mut out = Vec::new();
    match name {
        "Identify" => {
            if let Ok(identify) = text.parse::<cloud::Identify>() {
                let bytes = spaced_hex(&identify.0);
                out.push(Field::new(
                    key("bytes"),
                    "Identify Bytes",
                    &bytes,
                    json!(bytes),
                    None,
                ));
            }
        }
        "LocalAddr" => {
            if xml.get("IpEncrptV2") == Some("true") {
                out.push(Field::new(
                    key("encrypted"),
                    "Encrypted",
                    "AES-256-OFB with the device key (IpEncrptV2); needs the password",
                    json!(true),
                    None,
                ));
            } else {
                if let Ok(list) = crypto::addr_list_decode(text) {
                    out.push(addr_list_field(key("addresses"), "Addresses", &list));
                }
                // FIELD-NOTES §1 and DH-P2P §12 leave IpEncrpt open: both readings.
                if xml.get("IpEncrpt") == Some("true") {
                    if let Ok(list) = crypto::ip_encrpt_decode(text) {
                        out.push(addr_list_field(
                            key("ip_encrpt"),
                            "Addresses (IpEncrpt reading: octets 255 - x)",
                            &list,
                        ));
                    }
                }
            }
        }
        "CreateDate" => {
            if let Some(time) = text
                .parse::<i64>()
                .ok()
                .and_then(|secs| cloud::format_created_utc(secs).ok())
            {
                out.push(Field::new(key("utc"), "UTC", &time, json!(time), None));
            }
        }
        "Info" if !text.trim().is_empty() => match crypto::decrypt_info(text) {
            Ok(info) => {
                let map = info.to_json_map();
                let shown = map
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push(Field::new(
                    key("decrypted"),
                    "Decrypted",
                    shown,
                    Value::Object(map),
                    None,
                ));
            }
            Err(error) => out.push(Field::new(
                key("decrypt_error"),
                "Decrypt Error",
                error.to_string(),
                Value::Null,
                None,
            )),
        },
        _ => {}
    }
    out
}

fn addr_list_field(key: String, label: &str, list: &[SocketAddrV4]) -> Field {
    let texts: Vec<String> = list.iter().map(SocketAddrV4::to_string).collect();
    Field::new(key, label, texts.join(", "), json!(texts), None)
}

// ---------------------------------------------------------------------------
// Punch

fn describe_punch(payload: &[u8], message: &PunchMessage) -> Description {
    let mut d = base(Kind::Punch, payload);
    let type_code = message.message_type.to_u16();
    let type_name = message.message_type.name();
    let declared = message.declared_length();
    let mut children = vec![
        Field::new(
            "punch.type",
            "Message Type",
            format!("0x{type_code:04x} ({type_name})"),
            json!(type_code),
            Some(pfield::TYPE),
        ),
        Field::number(
            "punch.length",
            "Message Length",
            declared.into(),
            Some(pfield::LENGTH),
        ),
        Field::new(
            "punch.cookie",
            "Cookie",
            if message.has_magic_cookie() {
                format!("{} (magic)", hex::encode(message.cookie))
            } else {
                hex::encode(message.cookie)
            },
            json!(hex::encode(message.cookie)),
            Some(pfield::COOKIE),
        ),
        Field::new(
            "punch.transaction_id",
            "Transaction ID",
            hex::encode(message.transaction_id),
            json!(hex::encode(message.transaction_id)),
            Some(pfield::TRANSACTION_ID),
        ),
    ];
    let (attr_fields, attrs_json) = attribute_fields(&message.attributes, punch::HEADER_LEN);
    children.extend(attr_fields);

    let mut detail = Map::new();
    detail.insert(
        "type".into(),
        json!(if type_name == "unknown" {
            format!("0x{type_code:04x}")
        } else {
            type_name.to_owned()
        }),
    );
    detail.insert("type_code".into(), json!(type_code));
    detail.insert("length".into(), json!(declared));
    detail.insert("cookie".into(), json!(hex::encode(message.cookie)));
    detail.insert("magic_cookie".into(), json!(message.has_magic_cookie()));
    detail.insert(
        "transaction_id".into(),
        json!(hex::encode(message.transaction_id)),
    );
    detail.insert("attributes".into(), Value::Array(attrs_json));
    detail.insert("trailing".into(), json!(hex::encode(&message.trailing)));

    if !message.trailing.is_empty() {
        let start = punch::HEADER_LEN + usize::from(declared);
        let mut trailing = Field::new(
            "punch.trailing",
            "Bytes After Declared Length",
            format!(
                "{} bytes: {}",
                message.trailing.len(),
                spaced_hex(&message.trailing)
            ),
            json!(hex::encode(&message.trailing)),
            Some(start..start.saturating_add(message.trailing.len())),
        );
        // The [py] confirm carries an address attribute here.
        if let Ok(attrs) = message.trailing_attributes() {
            let (fields, json_attrs) = attribute_fields(&attrs, start);
            trailing.children = fields;
            detail.insert("trailing_attributes".into(), Value::Array(json_attrs));
        }
        children.push(trailing);
    }

    let mut summary = if type_name == "unknown" {
        format!("type 0x{type_code:04x}")
    } else {
        type_name.to_owned()
    };
    let _ = write!(summary, " txid={}", hex::encode(message.transaction_id));
    if !message.has_magic_cookie() {
        let _ = write!(summary, " cookie={}", hex::encode(message.cookie));
    }
    if let Some(identify) = message.identify() {
        let _ = write!(summary, " identify={}", cloud::Identify(identify));
    }
    if let Some(address) = message.address() {
        let _ = write!(summary, " addr={}", address.addr_inverted());
    }
    if !message.trailing.is_empty() {
        let _ = write!(summary, " trailing={}B", message.trailing.len());
    }
    d.summary = summary;
    d.detail = Value::Object(detail);
    d.fields = vec![root("punch", PUNCH_LABEL, payload, children)];
    d
}

/// Fields and JSON of attributes laid out from datagram offset `start`.
fn attribute_fields(attributes: &[Attribute], start: usize) -> (Vec<Field>, Vec<Value>) {
    let mut offset = start;
    let mut fields = Vec::new();
    let mut json_attrs = Vec::new();
    for attribute in attributes {
        let attr_type = attribute.attr_type();
        let name = punch::attribute_name(attr_type);
        let end = offset.saturating_add(attribute.encoded_len());
        let value_start = offset + pfield::attribute::VALUE;
        let mut attr_json = Map::new();
        attr_json.insert(
            "type".into(),
            json!(if name == "unknown" {
                format!("0x{attr_type:04x}")
            } else {
                name.to_owned()
            }),
        );
        attr_json.insert("type_code".into(), json!(attr_type));
        let mut children = vec![
            Field::new(
                "punch.attr.type",
                "Type",
                format!("0x{attr_type:04x} ({name})"),
                json!(attr_type),
                Some(pfield::at(offset, pfield::attribute::TYPE)),
            ),
            Field::number(
                "punch.attr.length",
                "Length",
                match attribute {
                    Attribute::Other { value, .. } => value.len() as u64,
                    _ => 8,
                },
                Some(pfield::at(offset, pfield::attribute::LENGTH)),
            ),
        ];
        let value = match attribute {
            Attribute::IceControlling(identify) | Attribute::IceControlled(identify) => {
                let text = cloud::Identify(*identify).to_string();
                children.push(Field::new(
                    "punch.attr.identify",
                    "Identify",
                    &text,
                    json!(text),
                    Some(pfield::at(value_start, pfield::IDENTIFY)),
                ));
                attr_json.insert("identify".into(), json!(text));
                text
            }
            Attribute::SourceAddress(address) => {
                children.extend(address_fields(address, value_start, &mut attr_json));
                address.addr_inverted().to_string()
            }
            Attribute::Other { value, padding, .. } => {
                children.push(Field::new(
                    "punch.attr.value",
                    "Value",
                    spaced_hex(value),
                    json!(hex::encode(value)),
                    Some(value_start..value_start.saturating_add(value.len())),
                ));
                if !padding.is_empty() {
                    let pad_start = value_start.saturating_add(value.len());
                    children.push(Field::new(
                        "punch.attr.padding",
                        "Padding",
                        spaced_hex(padding),
                        json!(hex::encode(padding)),
                        Some(pad_start..pad_start.saturating_add(padding.len())),
                    ));
                }
                attr_json.insert("value".into(), json!(hex::encode(value)));
                attr_json.insert("padding".into(), json!(hex::encode(padding)));
                format!("{} bytes", value.len())
            }
        };
        fields.push(
            Field::new(
                "punch.attr",
                name,
                value,
                Value::Object(attr_json.clone()),
                Some(offset..end),
            )
            .with_children(children),
        );
        json_attrs.push(Value::Object(attr_json));
        offset = end;
    }
    (fields, json_attrs)
}

/// SOURCE-ADDRESS: both readings are kept because the [py] client wrote the
/// address plain while inverting the rest (DH-P2P §5.1, §11.6).
fn address_fields(
    address: &AddressValue,
    value_start: usize,
    json_out: &mut Map<String, Value>,
) -> Vec<Field> {
    let inverted = address.addr_inverted();
    let plain = address.addr_plain();
    json_out.insert("family".into(), json!(address.family()));
    json_out.insert("address".into(), json!(inverted.to_string()));
    json_out.insert("address_plain".into(), json!(plain.to_string()));
    vec![
        Field::number(
            "punch.attr.family",
            "Family",
            address.family().into(),
            Some(pfield::at(value_start, pfield::address::FAMILY)),
        ),
        Field::number(
            "punch.attr.port",
            "Port",
            inverted.port().into(),
            Some(pfield::at(value_start, pfield::address::PORT)),
        ),
        Field::new(
            "punch.attr.ip",
            "IPv4",
            inverted.ip().to_string(),
            json!(inverted.ip().to_string()),
            Some(pfield::at(value_start, pfield::address::IP)),
        ),
        Field::new(
            "punch.attr.address",
            "Address",
            inverted.to_string(),
            json!(inverted.to_string()),
            Some(pfield::at(value_start, pfield::address::PORT_IP)),
        ),
        Field::new(
            "punch.attr.address_plain",
            "Address (if written plain, [py])",
            plain.to_string(),
            json!(plain.to_string()),
            None,
        ),
    ]
}

// ---------------------------------------------------------------------------
// Secrets

fn shift(ranges: Vec<Range<usize>>, by: usize) -> Vec<Range<usize>> {
    ranges
        .into_iter()
        .map(|r| r.start.saturating_add(by)..r.end.saturating_add(by))
        .collect()
}

/// `bytes` with every byte inside `ranges` replaced by `*`.
fn mask(bytes: &[u8], ranges: &[Range<usize>]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for range in ranges {
        let end = range.end.min(out.len());
        let start = range.start.min(end);
        if let Some(slice) = out.get_mut(start..end) {
            slice.fill(MASK_BYTE);
        }
    }
    out
}

/// `text` (an RTSP or HTTP head) with the credentials of its
/// `Authorization` lines replaced by [`REDACTED`]: the one redaction rule
/// that `describe`, `decode --follow --rtsp` and the inspector share.
pub fn redact_auth_text(text: &[u8]) -> String {
    redact_text(text, &rtsp::credential_ranges(text))
}

/// `bytes` as text with each range (sorted, disjoint) replaced by [`REDACTED`].
fn redact_text(bytes: &[u8], ranges: &[Range<usize>]) -> String {
    let mut sorted: Vec<&Range<usize>> = ranges.iter().collect();
    sorted.sort_by_key(|r| r.start);
    let mut out = String::new();
    let mut at = 0usize;
    for range in sorted {
        let start = range.start.clamp(at, bytes.len());
        let end = range.end.clamp(start, bytes.len());
        out.push_str(&String::from_utf8_lossy(
            bytes.get(at..start).unwrap_or_default(),
        ));
        if start < end {
            out.push_str(REDACTED);
        }
        at = end;
    }
    out.push_str(&String::from_utf8_lossy(
        bytes.get(at..).unwrap_or_default(),
    ));
    out
}

// ---------------------------------------------------------------------------
// Text helpers

/// Whether bytes read as text: printable ASCII, tabs and line breaks, and
/// a printable first byte (the same test as `dh-p2p.lua`, made stricter).
fn readable_text(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.first().is_some_and(|b| (0x20..0x7f).contains(b))
        && bytes
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) || matches!(b, b'\r' | b'\n' | b'\t'))
}

/// A one-line preview: line breaks escaped, long text cut with `…`.
fn preview(text: &str) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count >= MAX_PREVIEW_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn spaced_hex(bytes: &[u8]) -> String {
    // A table lookup per byte: this runs for every payload in `--json`.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(3));
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
    String::from_utf8(out).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Renderers

/// Appends the field tree, indented like `tshark -V`: `label: value`, four
/// spaces per level, a `[Malformed: …]` line for a decoder error.
pub fn render_tree(desc: &Description, out: &mut String) {
    for field in &desc.fields {
        render_field(field, 0, out);
    }
}

fn render_field(field: &Field, depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("    ");
    }
    out.push_str(&field.label);
    if !field.value.is_empty() {
        out.push_str(": ");
        out.push_str(&field.value);
    }
    out.push('\n');
    for child in &field.children {
        render_field(child, depth + 1, out);
    }
}

/// A hex dump in the reference files' form: offset, 16 bytes, ASCII.
///
/// ```text
/// 0000  50 54 43 50 00 00 00 00 00 00 00 00 00 02 ff ff  |PTCP............|
/// ```
pub fn hex_dump(payload: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in payload.chunks(16).enumerate() {
        let _ = write!(out, "{:04x}  ", line.saturating_mul(16));
        let hex = spaced_hex(chunk);
        let _ = write!(out, "{hex:<47}  |");
        for &byte in chunk {
            out.push(if (0x20..0x7f).contains(&byte) {
                char::from(byte)
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    out
}
