//! The PTCP field tree: header, sub-header and body fields at the
//! offsets of `ptcp::field`.

use super::*;

// ---------------------------------------------------------------------------
// PTCP

/// Offset of the body (and the sub-header) in a PTCP datagram.
pub(super) const PTCP_BODY: usize = field::at_in_datagram(0);
/// Offset of the data after the sub-header.
pub(super) const PTCP_DATA: usize = field::at_in_datagram(field::body::DATA);

pub(super) fn ptcp_header_fields(h: &ptcp::Header) -> Vec<Field> {
    vec![
        Field::new(
            "ptcp.magic",
            "Magic",
            "PTCP",
            json!("PTCP"),
            Some(field::MAGIC),
        ),
        Field::number("ptcp.sent", "Bytes Sent", h.sent.into(), Some(field::SENT)),
        Field::number(
            "ptcp.recv",
            "Bytes Received",
            h.recv.into(),
            Some(field::RECV),
        ),
        Field::new(
            "ptcp.pid",
            "Package ID",
            format!("0x{:08x}", h.pid),
            json!(h.pid),
            Some(field::PID),
        ),
        Field::number(
            "ptcp.lmid",
            "Local Message ID",
            h.lmid.into(),
            Some(field::LMID),
        ),
        Field::number(
            "ptcp.rmid",
            "Remote Message ID",
            h.rmid.into(),
            Some(field::RMID),
        ),
    ]
}

pub(super) fn ptcp_header_json(h: &ptcp::Header) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("sent".into(), json!(h.sent));
    object.insert("recv".into(), json!(h.recv));
    object.insert("pid".into(), json!(h.pid));
    object.insert("lmid".into(), json!(h.lmid));
    object.insert("rmid".into(), json!(h.rmid));
    object
}

pub(super) fn describe_ptcp(payload: &[u8], packet: &Packet<'_>, options: Options) -> Description {
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
pub(super) fn sub_header_fields(
    body: &Body<'_>,
    code: u8,
    json_out: &mut Map<String, Value>,
) -> Vec<Field> {
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
pub(super) fn bytes_field(
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
