//! The cloud message field tree: start line, headers (WSSE parts,
//! Authorization credentials), the XML body with element spans.

use super::*;

// ---------------------------------------------------------------------------
// Cloud

pub(super) fn describe_cloud(payload: &[u8], message: &Message, options: Options) -> Description {
    let mut d = base(Kind::Cloud, payload);
    let layout = message.layout();
    let mut detail = Map::new();
    let (start_field, mut summary) = match message {
        Message::Request(r) => request_line_field(r, &layout, &mut detail),
        Message::Response(r) => status_line_field(r, &layout, &mut detail),
    };
    let mut children = vec![start_field];
    children.extend(header_fields(
        message,
        &layout,
        options,
        &mut d.secrets,
        &mut detail,
    ));
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

    let body = message.body();
    if !body.is_empty() {
        let (body_field, body_json, secrets, summary_extra) =
            cloud_body(message, body, layout.body.clone(), options);
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

/// The request line's field (method, path, version, endpoint) and the
/// summary it starts.
fn request_line_field(
    r: &cloud::Request,
    layout: &cloud::Layout,
    detail: &mut Map<String, Value>,
) -> (Field, String) {
    let method = r.method.as_str();
    let [method_range, path_range, version_range] = layout.start_parts.clone();
    let endpoint = r.endpoint();
    let (endpoint_name, id_name, id) = endpoint_parts(&endpoint);
    let mut line_children = vec![
        Field::new(
            "cloud.method",
            "Method",
            method,
            json!(method),
            Some(method_range),
        ),
        Field::new(
            "cloud.path",
            "Path",
            &r.path,
            json!(r.path),
            Some(path_range),
        ),
        version_field(&r.version, version_range),
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
    let line = format!("{method} {} {}", r.path, r.version);
    let field = Field::new(
        "cloud.request_line",
        "Request Line",
        line,
        Value::Null,
        None,
    )
    .with_children(line_children);
    (field, format!("{method} {}", r.path))
}

/// The status line's field (version, code, reason) and the summary it
/// starts.
fn status_line_field(
    r: &cloud::Response,
    layout: &cloud::Layout,
    detail: &mut Map<String, Value>,
) -> (Field, String) {
    let [version_range, code_range, reason_range] = layout.start_parts.clone();
    let line_children = vec![
        version_field(&r.version, version_range),
        Field::number("cloud.code", "Status Code", r.code.into(), Some(code_range)),
        Field::new(
            "cloud.reason",
            "Reason Phrase",
            &r.reason,
            json!(r.reason),
            Some(reason_range),
        ),
    ];
    let mut response = Map::new();
    response.insert("version".into(), json!(r.version));
    response.insert("code".into(), json!(r.code));
    response.insert("reason".into(), json!(r.reason));
    detail.insert("response".into(), Value::Object(response));
    let line = format!("{} {:03} {}", r.version, r.code, r.reason);
    let field = Field::new(
        "cloud.status_line",
        "Status Line",
        line,
        Value::Null,
        Some(layout.start_line.clone()),
    )
    .with_children(line_children);
    (field, format!("{:03} {}", r.code, r.reason))
}

/// One field per header line; Authorization credentials redacted (their
/// ranges added to `secrets`), X-WSSE split into its parts.
fn header_fields(
    message: &Message,
    layout: &cloud::Layout,
    options: Options,
    secrets_out: &mut Vec<Range<usize>>,
    detail: &mut Map<String, Value>,
) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut headers_json = Vec::new();
    for (header, place) in message.headers().iter().zip(&layout.headers) {
        let value_start = place.value.start;
        let is_auth = rtsp::is_credentials_header(header.name.as_bytes());
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
        secrets_out.extend(secrets);
        let mut field = Field::new(
            "cloud.header",
            header.name.as_str(),
            &value,
            json!(value),
            Some(place.line.clone()),
        );
        if header.name.eq_ignore_ascii_case("X-WSSE") {
            field.children = wsse_fields(&header.value, value_start);
        }
        headers_json.push(json!([header.name, value]));
        fields.push(field);
    }
    detail.insert("headers".into(), Value::Array(headers_json));
    fields
}

/// The endpoint's name, and the name and value of its serial or token.
pub(super) fn endpoint_parts(
    endpoint: &Endpoint,
) -> (&'static str, Option<&'static str>, Option<&str>) {
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
pub(super) fn wsse_fields(value: &str, value_start: usize) -> Vec<Field> {
    let (Ok(wsse), Ok(at)) = (cloud::Wsse::parse(value), cloud::WsseRanges::locate(value)) else {
        return vec![Field::new(
            "cloud.wsse.error",
            "X-WSSE Error",
            "not a UsernameToken header",
            Value::Null,
            None,
        )];
    };
    let params = [
        (
            "Username",
            "cloud.wsse.username",
            &wsse.username,
            at.username,
        ),
        (
            "PasswordDigest",
            "cloud.wsse.password_digest",
            &wsse.password_digest,
            at.password_digest,
        ),
        ("Nonce", "cloud.wsse.nonce", &wsse.nonce, at.nonce),
        ("Created", "cloud.wsse.created", &wsse.created, at.created),
    ];
    params
        .into_iter()
        .map(|(name, key, text, range)| {
            let range = value_start + range.start..value_start + range.end;
            Field::new(key, name, text.as_str(), json!(text), Some(range))
        })
        .collect()
}

pub(super) type BodyParts = (Field, Value, Vec<Range<usize>>, String);

pub(super) fn cloud_body(
    message: &Message,
    body: &[u8],
    range: Range<usize>,
    options: Options,
) -> BodyParts {
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
pub(super) fn element_details(name: &str, text: &str, xml: &XmlBody) -> Vec<Field> {
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

pub(super) fn addr_list_field(key: String, label: &str, list: &[SocketAddrV4]) -> Field {
    let texts: Vec<String> = list.iter().map(SocketAddrV4::to_string).collect();
    Field::new(key, label, texts.join(", "), json!(texts), None)
}

/// The protocol version of a start line.
fn version_field(version: &str, range: std::ops::Range<usize>) -> Field {
    Field::new(
        "cloud.version",
        "Version",
        version,
        json!(version),
        Some(range),
    )
}
